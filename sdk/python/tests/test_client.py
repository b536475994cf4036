"""credlet.Client against the real agent (credlet-agent dev)."""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
import unittest
from datetime import datetime, timezone
from unittest import mock

import credlet
from credlet import _core

from . import agent as agentmod

AGENT: agentmod.DevAgent


def setUpModule() -> None:
    global AGENT
    AGENT = agentmod.DevAgent()


def tearDownModule() -> None:
    AGENT.close()


def wait_until(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in %gs" % timeout)
        time.sleep(0.005)


def fast(**kw):
    kw.setdefault("backoff", (0.01, 0.05))
    return credlet.Client(AGENT.socket, **kw)


class GetListHealth(unittest.TestCase):
    def test_get(self) -> None:
        with fast() as c:
            cred = c.get("broker-oauth")  # never rotated by these tests
        self.assertEqual(cred.name, "broker-oauth")
        self.assertEqual(cred.version, 1)
        self.assertEqual(cred.fields, {"refresh_token": "FAKE-demo-refresh-token-v1"})
        self.assertIsInstance(cred.fetched_at, datetime)
        self.assertEqual(cred.fetched_at.utcoffset().total_seconds(), 0)
        self.assertLess(abs((datetime.now(timezone.utc) - cred.fetched_at).total_seconds()), 600)
        self.assertIsNone(cred.expires_at)

    def test_get_previous(self) -> None:
        other = AGENT.run_agent("previous")
        try:
            with credlet.Client(other.socket, backoff=(0.01, 0.05), wait_timeout=5) as c:
                with self.assertRaises(credlet.NotFound) as cm:
                    c.get_previous("exchange")
                self.assertEqual((cm.exception.status, cm.exception.code), (404, "not_found"))
                before = c.get("exchange")
                AGENT.rotate(api_key="FAKE-previous-%d" % (before.version + 1))
                wait_until(lambda: c.get("exchange").version == before.version + 1)
                prev = c.get_previous("exchange")
                self.assertEqual((prev.name, prev.version, prev.fields), ("exchange", before.version, before.fields))
                with self.assertRaises(credlet.BadRequest):
                    c.get_previous("Not A Name")
        finally:
            other.stop()

    def test_default_socket(self) -> None:
        with mock.patch.dict(os.environ, {"CREDLET_SOCKET": AGENT.socket}):
            with credlet.Client() as c:
                self.assertEqual(c.socket_path, AGENT.socket)
                self.assertEqual(c.get("broker-oauth").version, 1)
        with mock.patch.dict(os.environ, clear=True):
            self.assertEqual(credlet.Client().socket_path, "/credlet/run/agent.sock")

    def test_list(self) -> None:
        with fast() as c:
            infos = c.list()
        self.assertEqual([i.name for i in infos], ["broker-oauth", "exchange"])
        for i in infos:
            self.assertIsInstance(i, credlet.Info)
            self.assertGreaterEqual(i.version, 1)
            self.assertIsInstance(i.fetched_at, datetime)
        self.assertNotIn("FAKE", repr(infos))

    def test_health(self) -> None:
        with fast() as c:
            h = c.health()
        self.assertIs(h.ready, True)
        self.assertEqual(sorted(h.credentials), ["broker-oauth", "exchange"])
        b = h.credentials["broker-oauth"]
        self.assertEqual(b.version, 1)
        self.assertIsNotNone(b.age_seconds)
        self.assertIsNone(b.last_error)
        self.assertFalse(b.optional)

    def test_keep_alive(self) -> None:
        # Sequential requests reuse one connection.
        with fast() as c:
            c.health()
            first = c._idle[0].sock
            for _ in range(5):
                c.get("broker-oauth")
            self.assertEqual(len(c._idle), 1)
            self.assertIs(c._idle[0].sock, first)

    def test_threads_share_a_client(self) -> None:
        errors: list = []
        with fast() as c:
            def work() -> None:
                try:
                    for _ in range(20):
                        if c.get("broker-oauth").version != 1:
                            errors.append("wrong version")
                except Exception as e:  # noqa: BLE001 - collected for the assertion
                    errors.append(e)
            ts = [threading.Thread(target=work) for _ in range(6)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(30)
        self.assertEqual(errors, [])


class Errors(unittest.TestCase):
    def check(self, err: credlet.CredletError, cls: type, status: int, code: str) -> None:
        self.assertIsInstance(err, cls)
        self.assertIsInstance(err, credlet.CredletError)
        self.assertEqual((err.status, err.code), (status, code))
        self.assertTrue(err.message)
        for other in (credlet.Forbidden, credlet.NotFound, credlet.NotReady, credlet.BadRequest, credlet.Unavailable):
            if other is not cls:
                self.assertNotIsInstance(err, other)

    def timed(self, c: credlet.Client, name: str, cls: type):
        start = time.monotonic()
        with self.assertRaises(cls) as cm:
            c.get(name)
        return cm.exception, time.monotonic() - start

    def test_not_found_is_not_retried(self) -> None:
        with fast(attempts=4, backoff=(0.2, 0.2)) as c:
            err, took = self.timed(c, "nope", credlet.NotFound)
        self.check(err, credlet.NotFound, 404, "not_found")
        self.assertIn("nope", err.message)
        self.assertLess(took, 0.1, "a permanent error must not be retried")

    def test_bad_request(self) -> None:
        with fast(attempts=4, backoff=(0.2, 0.2)) as c:
            err, took = self.timed(c, "Not A Name", credlet.BadRequest)
        self.check(err, credlet.BadRequest, 400, "bad_request")
        self.assertLess(took, 0.1)

    def test_forbidden(self) -> None:
        other = AGENT.run_agent("forbid", "--allow-uid", str(os.getuid() + 1))
        try:
            with credlet.Client(other.socket, attempts=4, backoff=(0.2, 0.2)) as c:
                err, took = self.timed(c, "exchange", credlet.Forbidden)
        finally:
            other.stop()
        self.check(err, credlet.Forbidden, 403, "forbidden")
        self.assertIn("uid %d" % os.getuid(), err.message)
        self.assertLess(took, 0.1)

    def test_not_ready_is_retried(self) -> None:
        other = AGENT.run_agent("pending", "--credential", "pending=secret/demo/pending;optional",
                                "--credential", "exchange=secret/demo/exchange")
        try:
            with credlet.Client(other.socket, attempts=4, backoff=(0.04, 0.04)) as c:
                err, took = self.timed(c, "pending", credlet.NotReady)
                self.assertIn("pending", c.health().credentials)
        finally:
            other.stop()
        self.check(err, credlet.NotReady, 503, "not_ready")
        # 3 pauses of at least 20 ms each (jitter halves 40 ms at most)
        self.assertGreaterEqual(took, 0.06, "not_ready must be retried")

    def test_unavailable(self) -> None:
        sock = os.path.join(AGENT.dir, "absent.sock")
        with credlet.Client(sock, attempts=3, backoff=(0.04, 0.04)) as c:
            err, took = self.timed(c, "exchange", credlet.Unavailable)
        self.check(err, credlet.Unavailable, 0, "unavailable")
        self.assertIn(sock, err.message)
        self.assertGreaterEqual(took, 0.04, "an absent socket must be retried")

    def test_closed_client(self) -> None:
        c = fast()
        c.get("broker-oauth")
        c.close()
        with self.assertRaises(credlet.Unavailable) as cm:
            c.get("broker-oauth")
        self.assertEqual(cm.exception.code, "closed")

    def test_bad_options(self) -> None:
        for kw in ({"attempts": 0}, {"timeout": 0}, {"backoff": (1, 0.5)}, {"max_rps": 0}, {"wait_timeout": 0}):
            with self.assertRaises(ValueError, msg=kw):
                credlet.Client(AGENT.socket, **kw)


class Restart(unittest.TestCase):
    def test_get_waits_for_the_agent(self) -> None:
        # Get keeps trying while the agent restarts (socket absent, then refusing).
        AGENT.main.stop()
        t = threading.Timer(0.4, AGENT.main.start)
        t.start()
        try:
            with credlet.Client(AGENT.socket, attempts=100, backoff=(0.02, 0.05)) as c:
                self.assertEqual(c.get("broker-oauth").version, 1)
        finally:
            t.join()


    def test_stale_connections_after_a_restart(self) -> None:
        # Kept-alive connections the old agent closed are replaced without
        # using up a try (attempts=1).
        with fast(attempts=1) as c:
            # Three connections to the running agent, all back in the pool
            # (made directly: concurrent gets may or may not open three).
            conns = [c._checkout(c.timeout, True)[0] for _ in range(3)]
            for conn in conns:
                conn.connect()
            for conn in conns:
                c._checkin(conn)
            self.assertEqual(len(c._idle), 3)
            AGENT.restart()
            self.assertEqual(c.get("broker-oauth").version, 1)


class Watch(unittest.TestCase):
    def test_rotation_and_restart(self) -> None:
        c = fast(wait_timeout=2)
        got: "queue.Queue" = queue.Queue()
        done = threading.Event()

        def run() -> None:
            try:
                for cred in c.watch("exchange"):
                    got.put(cred)
            except Exception as e:  # noqa: BLE001 - handed to the test thread
                got.put(e)
            done.set()

        def next_version() -> credlet.Credential:
            item = got.get(timeout=30)
            if isinstance(item, Exception):
                raise item
            return item

        with self.assertLogs("credlet", logging.WARNING) as logs:
            th = threading.Thread(target=run, daemon=True)
            th.start()
            first = next_version()
            v = first.version
            self.assertEqual(v, AGENT.current_version())

            AGENT.rotate(api_key="FAKE-rotated-%d" % (v + 1))
            second = next_version()
            self.assertEqual(second.version, v + 1)
            self.assertEqual(second.fields["api_key"], "FAKE-rotated-%d" % (v + 1))
            self.assertEqual(second.fields["api_secret"], first.fields["api_secret"])

            # The agent restarts while the next long poll is parked.
            wait_until(lambda: len(c._busy) == 1)
            AGENT.restart()
            AGENT.rotate(api_key="FAKE-rotated-%d" % (v + 2))
            third = next_version()
            self.assertEqual(third.version, v + 2)
            self.assertEqual(third.fields["api_key"], "FAKE-rotated-%d" % (v + 2))

            c.close()
            self.assertTrue(done.wait(5), "watch did not end on close()")
        self.assertTrue(got.empty(), "the watch put more after close(): %r" % list(got.queue))
        text = "\n".join(logs.output)
        self.assertIn("retrying", text, "the restart should have been logged")
        self.assertNotIn("FAKE", text)

    def test_close_ends_a_watch_quietly(self) -> None:
        # close() from another thread at any point of a long poll ends the
        # watch without an exception, whatever http.client was doing.
        rng = random.Random(7)
        for i in range(40):
            c = fast(wait_timeout=2)
            got: "queue.Queue" = queue.Queue()

            def run() -> None:
                try:
                    for cred in c.watch("exchange"):
                        got.put(cred)
                except BaseException as e:  # noqa: BLE001 - handed to the test thread
                    got.put(e)
                got.put(None)

            threading.Thread(target=run, daemon=True).start()
            self.assertIsInstance(got.get(timeout=10), credlet.Credential)
            time.sleep(rng.uniform(0, 0.02))
            c.close()
            end = got.get(timeout=5)
            self.assertIsNone(end, "round %d: the watch ended with %r" % (i, end))

    def test_permanent_errors_are_raised(self) -> None:
        with fast() as c:
            start = time.monotonic()
            with self.assertRaises(credlet.NotFound):
                agentmod.first(c.watch("nope"))
            with self.assertRaises(credlet.BadRequest):
                agentmod.first(c.watch("Not A Name"))
            self.assertLess(time.monotonic() - start, 0.5)
        other = AGENT.run_agent("forbid2", "--allow-uid", str(os.getuid() + 1))
        try:
            with credlet.Client(other.socket) as c:
                with self.assertRaises(credlet.Forbidden):
                    agentmod.first(c.watch("exchange"))
        finally:
            other.stop()

    def test_waits_for_the_first_version(self) -> None:
        # A watch on a set not fetched yet parks until it is.
        other = AGENT.run_agent("later", "--credential", "later=secret/demo/later;optional",
                                "--credential", "exchange=secret/demo/exchange")
        try:
            with credlet.Client(other.socket, wait_timeout=5) as c:
                got: "queue.Queue" = queue.Queue()
                th = threading.Thread(target=lambda: got.put(next(iter(c.watch("later")))), daemon=True)
                th.start()
                time.sleep(0.3)
                self.assertTrue(got.empty())
                AGENT.creds("put", "secret/demo/later", {"token": "FAKE-later-1"})
                cred = got.get(timeout=15)
                self.assertEqual((cred.name, cred.version, cred.fields), ("later", 1, {"token": "FAKE-later-1"}))
        finally:
            other.stop()


class RateLimit(unittest.TestCase):
    def test_max_rps(self) -> None:
        n, rps = 30, 20.0
        with fast(max_rps=rps) as c:
            start = time.monotonic()
            for _ in range(n):
                c.health()
            took = time.monotonic() - start
        # a burst of 20, then 10 more at 20/s
        self.assertGreaterEqual(took, (n - rps) / rps * 0.95)
        self.assertLess(took, 5)

    def test_unlimited_is_not_slowed(self) -> None:
        with fast() as c:
            start = time.monotonic()
            for _ in range(30):
                c.health()
            self.assertLess(time.monotonic() - start, 0.45)

    def test_bucket(self) -> None:
        now = [100.0]
        b = _core.TokenBucket(4, clock=lambda: now[0])
        self.assertEqual([b.reserve() for _ in range(4)], [0.0] * 4)
        self.assertAlmostEqual(b.reserve(), 0.25)
        self.assertAlmostEqual(b.reserve(), 0.5)
        now[0] += 0.5  # the two reserved tokens are now due
        self.assertAlmostEqual(b.reserve(), 0.25)
        now[0] += 10  # refills to the burst, not beyond
        self.assertEqual([b.reserve() for _ in range(4)], [0.0] * 4)
        self.assertGreater(b.reserve(), 0)


class Backoff(unittest.TestCase):
    def test_doubles_with_jitter_up_to_the_cap(self) -> None:
        self.assertEqual([_core.backoff_delay(a, 0.1, 1.0, rand=lambda: 1.0) for a in range(1, 7)],
                         [0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
        self.assertEqual(_core.backoff_delay(3, 0.1, 1.0, rand=lambda: 0.0), 0.2)


class WatchDecisions(unittest.TestCase):
    def test_answers_and_failures(self) -> None:
        c = credlet.Client("/nonexistent/agent.sock", timeout=3, backoff=(0.5, 4.0), wait_timeout=20)
        loop = _core.WatchLoop(c, "acme", None)
        self.assertEqual(loop.timeout, 23)
        self.assertTrue(loop.path().endswith("/v1/credentials/acme?timeout=20&wait=0"), loop.path())

        def doc(v: int) -> dict:
            return {"name": "acme", "version": v, "fields": {"k": "FAKE-%d" % v}}

        self.assertEqual(loop.answer(200, doc(4)).version, 4)
        self.assertTrue(loop.path().endswith("wait=4"))
        self.assertIsNone(loop.answer(304, None), "a long poll that timed out yields nothing")
        self.assertIsNone(loop.answer(200, doc(4)), "the version already given is not yielded again")
        self.assertEqual(loop.answer(200, doc(3)).version, 3, "a version going back is yielded")

        with self.assertLogs("credlet", logging.WARNING):
            first = loop.failed(credlet.Unavailable(0, "unavailable", "agent restarting"))
            second = loop.failed(credlet.NotReady(503, "not_ready", "not fetched yet"))
        self.assertTrue(0.25 <= first <= 0.5 and 0.5 <= second <= 1.0, (first, second))
        loop.answer(304, None)  # a good answer starts the back-off again
        with self.assertLogs("credlet", logging.WARNING):
            self.assertLessEqual(loop.failed(credlet.Unavailable(0, "unavailable", "x")), 0.5)
        for e in (credlet.NotFound(404, "not_found", "x"), credlet.Forbidden(403, "forbidden", "x"),
                  credlet.BadRequest(400, "bad_request", "x")):
            with self.assertRaises(type(e)):
                loop.failed(e)

    def test_retry_delay(self) -> None:
        c = credlet.Client("/nonexistent/agent.sock", attempts=3, backoff=(0.2, 1.0))
        busy = credlet.Unavailable(0, "unavailable", "x")
        self.assertLessEqual(_core.retry_delay(c, busy, 1), 0.2)
        self.assertLessEqual(_core.retry_delay(c, busy, 2), 0.4)
        with self.assertRaises(credlet.Unavailable):
            _core.retry_delay(c, busy, 3)
        with self.assertRaises(credlet.NotFound):
            _core.retry_delay(c, credlet.NotFound(404, "not_found", "x"), 1)


class Decode(unittest.TestCase):
    def test_times(self) -> None:
        t = _core.parse_time("2026-12-06T09:24:21.874800407Z")
        self.assertEqual((t.year, t.second, t.microsecond, t.utcoffset().total_seconds()), (2026, 21, 874800, 0))
        t = _core.parse_time("2026-12-06T11:24:21+02:00")
        self.assertEqual(t, datetime(2026, 12, 6, 9, 24, 21, tzinfo=timezone.utc))
        self.assertIsNone(_core.parse_time(None))
        with self.assertRaises(ValueError):
            _core.parse_time("yesterday")

    def test_expires_at(self) -> None:
        cred = _core.to_credential({"name": "a", "version": 2, "fields": {"k": "FAKE"},
                                    "fetched_at": "2026-12-06T09:00:00Z", "expires_at": "2026-12-07T09:00:00.5Z"})
        self.assertEqual(cred.expires_at, datetime(2026, 12, 7, 9, 0, 0, 500000, tzinfo=timezone.utc))

    def test_bad_answers(self) -> None:
        for doc in ({"name": "a"}, {"name": "a", "version": "x", "fields": {}}, {"name": "a", "version": 1, "fields": []}):
            with self.assertRaises(credlet.CredletError) as cm:
                _core.to_credential(doc)
            self.assertEqual(cm.exception.code, "bad_answer")
        with self.assertRaises(credlet.CredletError) as cm:
            _core.decode(200, "OK", b"not json")
        self.assertEqual(cm.exception.code, "bad_answer")
        with self.assertRaises(credlet.CredletError) as cm:
            _core.decode(502, "Bad Gateway", b"")
        self.assertEqual((cm.exception.status, cm.exception.code), (502, "http_502"))
        self.assertTrue(credlet._errors.transient(cm.exception))


class Redaction(unittest.TestCase):
    def test_credential_never_shows_a_value(self) -> None:
        with fast() as c:
            cred = c.get("broker-oauth")
        self.assertIn("FAKE", cred.fields["refresh_token"])
        stream = []

        class H(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                stream.append(self.format(record))

        lg = logging.getLogger("credlet-test-redaction")
        lg.addHandler(H())
        lg.propagate = False
        lg.warning("got %s %r", cred, cred)
        lg.warning(cred)
        outs = [repr(cred), str(cred), "%s %r" % (cred, cred), f"{cred} {cred!r}", "{}".format(cred),
                repr([cred]), str({"c": cred}), repr((cred,))] + stream
        for o in outs:
            self.assertNotIn("FAKE", o)
            self.assertIn("[REDACTED]", o)
            self.assertIn("broker-oauth", o)
        self.assertIn("version=1", repr(cred))
        self.assertIn("refresh_token", repr(cred))
        self.assertFalse(hasattr(cred, "__dict__"), "vars(cred) would show the values")

    def test_errors_carry_no_value(self) -> None:
        with fast() as c:
            with self.assertRaises(credlet.NotFound) as cm:
                c.get("nope")
        self.assertNotIn("FAKE", str(cm.exception) + repr(cm.exception))


if __name__ == "__main__":
    unittest.main()
