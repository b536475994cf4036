"""credlet.aio.Client against the real agent (credlet-agent dev)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import unittest
from datetime import datetime

import credlet
import credlet.aio

from . import agent as agentmod

AGENT: agentmod.DevAgent


def setUpModule() -> None:
    global AGENT
    AGENT = agentmod.DevAgent()


def tearDownModule() -> None:
    AGENT.close()


def fast(sock=None, **kw):
    kw.setdefault("backoff", (0.01, 0.05))
    return credlet.aio.Client(sock or AGENT.socket, **kw)


class AsyncClient(unittest.IsolatedAsyncioTestCase):
    async def test_get_list_health(self) -> None:
        async with fast() as c:
            cred = await c.get("broker-oauth")
            infos = await c.list()
            h = await c.health()
            self.assertEqual(len(c._idle), 1, "one kept-alive connection for three requests")
        self.assertEqual((cred.name, cred.version), ("broker-oauth", 1))
        self.assertEqual(cred.fields, {"refresh_token": "FAKE-demo-refresh-token-v1"})
        self.assertIsInstance(cred.fetched_at, datetime)
        self.assertEqual([i.name for i in infos], ["broker-oauth", "exchange"])
        self.assertTrue(h.ready)
        self.assertEqual(h.credentials["broker-oauth"].version, 1)
        self.assertNotIn("FAKE", repr(cred) + str(cred) + repr(infos) + repr(h))

    async def test_get_previous(self) -> None:
        other = AGENT.run_agent("previous-aio")
        try:
            async with fast(other.socket) as c:
                with self.assertRaises(credlet.NotFound):
                    await c.get_previous("exchange")
                before = await c.get("exchange")
                AGENT.rotate(api_key="FAKE-previous-aio-%d" % (before.version + 1))
                deadline = time.monotonic() + 15
                while (await c.get("exchange")).version == before.version:
                    if time.monotonic() > deadline:
                        self.fail("the rotation did not reach the agent in 15 s")
                    await asyncio.sleep(0.05)
                prev = await c.get_previous("exchange")
                self.assertEqual((prev.version, prev.fields), (before.version, before.fields))
        finally:
            other.stop()

    async def test_concurrent_requests(self) -> None:
        async with fast() as c:
            creds = await asyncio.gather(*(c.get("broker-oauth") for _ in range(40)))
        self.assertEqual({x.version for x in creds}, {1})

    async def test_stale_connections_after_a_restart(self) -> None:
        # Kept-alive connections the old agent closed are replaced without
        # using up a try (attempts=1).
        async with fast(attempts=1) as c:
            await asyncio.gather(*(c.get("broker-oauth") for _ in range(3)))
            self.assertGreaterEqual(len(c._idle), 2)
            await asyncio.to_thread(AGENT.restart)
            self.assertEqual((await c.get("broker-oauth")).version, 1)

    async def test_errors(self) -> None:
        async with fast(attempts=4, backoff=(0.2, 0.2)) as c:
            for name, cls, status, code in (("nope", credlet.NotFound, 404, "not_found"),
                                            ("Not A Name", credlet.BadRequest, 400, "bad_request")):
                start = time.monotonic()
                with self.assertRaises(cls) as cm:
                    await c.get(name)
                self.assertLess(time.monotonic() - start, 0.1, "%s must not be retried" % code)
                self.assertEqual((cm.exception.status, cm.exception.code), (status, code))
                self.assertTrue(cm.exception.message)

    async def test_forbidden(self) -> None:
        other = await asyncio.to_thread(AGENT.run_agent, "aforbid", "--allow-uid", str(os.getuid() + 1))
        try:
            async with fast(other.socket, attempts=4, backoff=(0.2, 0.2)) as c:
                start = time.monotonic()
                with self.assertRaises(credlet.Forbidden) as cm:
                    await c.get("exchange")
                self.assertLess(time.monotonic() - start, 0.1)
                with self.assertRaises(credlet.Forbidden):
                    await asyncio.wait_for(c.watch("exchange").__anext__(), 5)
        finally:
            await asyncio.to_thread(other.stop)
        self.assertEqual((cm.exception.status, cm.exception.code), (403, "forbidden"))

    async def test_not_ready(self) -> None:
        other = await asyncio.to_thread(AGENT.run_agent, "apending", "--credential", "pending=secret/demo/pending;optional",
                                        "--credential", "exchange=secret/demo/exchange")
        try:
            async with fast(other.socket, attempts=4, backoff=(0.04, 0.04)) as c:
                start = time.monotonic()
                with self.assertRaises(credlet.NotReady) as cm:
                    await c.get("pending")
                self.assertGreaterEqual(time.monotonic() - start, 0.06, "not_ready must be retried")
        finally:
            await asyncio.to_thread(other.stop)
        self.assertEqual((cm.exception.status, cm.exception.code), (503, "not_ready"))

    async def test_unavailable(self) -> None:
        sock = os.path.join(AGENT.dir, "absent.sock")
        async with fast(sock, attempts=3, backoff=(0.04, 0.04)) as c:
            start = time.monotonic()
            with self.assertRaises(credlet.Unavailable) as cm:
                await c.get("exchange")
            self.assertGreaterEqual(time.monotonic() - start, 0.04)
        self.assertEqual((cm.exception.status, cm.exception.code), (0, "unavailable"))
        self.assertIn(sock, cm.exception.message)

    async def test_watch_rotation_and_restart(self) -> None:
        c = fast(wait_timeout=2)
        got: asyncio.Queue = asyncio.Queue()

        async def run() -> None:
            async for cred in c.watch("exchange"):
                await got.put(cred)

        with self.assertLogs("credlet", logging.WARNING) as logs:
            task = asyncio.ensure_future(run())
            try:
                first = await asyncio.wait_for(got.get(), 30)
                v = first.version
                self.assertEqual(v, await asyncio.to_thread(AGENT.current_version))
                await asyncio.to_thread(AGENT.rotate, api_key="FAKE-async-%d" % (v + 1))
                second = await asyncio.wait_for(got.get(), 30)
                self.assertEqual((second.version, second.fields["api_key"]), (v + 1, "FAKE-async-%d" % (v + 1)))
                # The agent restarts while the next long poll is parked.
                while not c._busy:
                    await asyncio.sleep(0.005)
                await asyncio.to_thread(AGENT.restart)
                await asyncio.to_thread(AGENT.rotate, api_key="FAKE-async-%d" % (v + 2))
                third = await asyncio.wait_for(got.get(), 30)
                self.assertEqual((third.version, third.fields["api_key"]), (v + 2, "FAKE-async-%d" % (v + 2)))
                await c.close()
                await asyncio.wait_for(task, 5)  # close() ends the watch
            finally:
                task.cancel()
        self.assertTrue(got.empty())
        text = "\n".join(logs.output)
        self.assertIn("retrying", text)
        self.assertNotIn("FAKE", text)

    async def test_watch_cancel(self) -> None:
        async with fast(wait_timeout=30) as c:
            it = c.watch("broker-oauth")
            self.assertEqual((await it.__anext__()).version, 1)
            nxt = asyncio.ensure_future(it.__anext__())
            await asyncio.sleep(0.1)  # parked in the long poll
            nxt.cancel()
            with self.assertRaises(asyncio.CancelledError):
                await nxt
            self.assertEqual(c._busy, set(), "a cancelled poll's connection is dropped")
            self.assertEqual((await c.get("broker-oauth")).version, 1)

    async def test_watch_not_found(self) -> None:
        async with fast() as c:
            with self.assertRaises(credlet.NotFound):
                await asyncio.wait_for(c.watch("nope").__anext__(), 5)

    async def test_max_rps(self) -> None:
        async with fast(max_rps=20) as c:
            start = time.monotonic()
            for _ in range(30):
                await c.health()
            took = time.monotonic() - start
        self.assertGreaterEqual(took, 0.5 * 0.95)
        self.assertLess(took, 5)


if __name__ == "__main__":
    unittest.main()
