"""The asyncio flavour of the credlet client: the same methods as
``credlet.Client``, as coroutines, over ``asyncio.open_unix_connection``.

    import credlet.aio

    async with credlet.aio.Client() as client:
        cred = await client.get("exchange")
        async for cred in client.watch("exchange"):
            ...

Cancelling a task cancels its request; ``await client.close()`` ends every
running ``watch``.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, AsyncIterator, Dict, List, Optional, Set, Tuple, Type

from . import _core
from ._core import Credential, Health, Info
from ._errors import CredletError, Unavailable

__all__ = ["Client"]

_MAX_IDLE = 4
_MAX_HEAD = 64 << 10

_Conn = Tuple[asyncio.StreamReader, asyncio.StreamWriter]

class _Broken(Exception):
    """The connection failed or the answer was not HTTP."""

class Client:
    """Reads credentials from one credlet agent, for asyncio programs.

    Use it from one event loop. Connections are kept alive between requests.
    """

    def __init__(
        self,
        socket_path: Optional[str] = None,
        timeout: float = 10.0,
        attempts: int = 5,
        backoff: Tuple[float, float] = (0.1, 5.0),
        max_rps: Optional[float] = None,
        *,
        wait_timeout: float = 60.0,
    ) -> None:
        _core.configure(self, socket_path, timeout, attempts, backoff, max_rps, wait_timeout)
        self._idle: List[_Conn] = []
        self._busy: Set[_Conn] = set()
        self._closed = False
        self._closing: Optional[asyncio.Event] = None

    # -- the API -------------------------------------------------------

    async def get(self, name: str) -> Credential:
        """The current version of a credential set."""
        return _core.to_credential(await self._call(_core.credential_path(name)))

    async def get_previous(self, name: str) -> Credential:
        """The version before the current one (see the blocking client's
        get_previous); NotFound when the agent holds none."""
        return _core.to_credential(await self._call(_core.credential_path(name) + "?version=previous"))

    async def list(self) -> List[Info]:
        """Every set the agent holds: name, version, fetched_at (no values)."""
        return _core.to_infos(await self._call("/v1/credentials"))

    async def health(self) -> Health:
        """The agent's readiness and each set's state."""
        return _core.to_health(await self._call("/v1/health"))

    async def watch(self, name: str, *, wait_timeout: Optional[float] = None) -> AsyncIterator[Credential]:
        """Yields the current version of a set, then each new version as
        the agent commits it. Transient failures are logged on the
        ``credlet`` logger and retried; Forbidden, NotFound and BadRequest
        are raised at once. Ends when the client is closed."""
        loop = _core.WatchLoop(self, name, wait_timeout)
        while not self._closed:
            try:
                cred = loop.answer(*await self._once(loop.path(), loop.timeout))
            except CredletError as e:
                if self._closed:
                    return
                await self._sleep(loop.failed(e))
                continue
            if cred is not None:
                yield cred

    async def close(self) -> None:
        """Closes every connection and ends running watches. Later calls
        raise Unavailable (code ``closed``)."""
        self._closed = True
        if self._closing is not None:
            self._closing.set()
        conns = self._idle + list(self._busy)
        self._idle.clear()
        for _, w in conns:
            w.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return "credlet.aio.Client(socket_path=%r)" % self.socket_path

    # -- requests ------------------------------------------------------

    async def _sleep(self, seconds: float) -> None:
        """Sleeps, or returns early when the client is closed."""
        if self._closing is None:
            self._closing = asyncio.Event()
            if self._closed:
                self._closing.set()
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _call(self, path: str) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                return (await self._once(path, self.timeout))[1]
            except CredletError as e:
                if self._closed:
                    raise
                await self._sleep(_core.retry_delay(self, e, attempt))

    async def _once(self, path: str, timeout: float) -> Tuple[int, Any]:
        """One GET, after the rate limit: (status, JSON or None for 304)."""
        if self._bucket is not None:
            wait = self._bucket.reserve()
            if wait > 0:
                await self._sleep(wait)
        for fresh in (False, True):
            if self._closed:
                raise Unavailable(0, "closed", "client closed")
            conn = self._idle.pop() if self._idle and not fresh else None
            reused = conn is not None
            try:
                if conn is None:
                    conn = await asyncio.wait_for(asyncio.open_unix_connection(self.socket_path, limit=_MAX_HEAD), timeout)
                self._busy.add(conn)
                status, reason, body, keep = await asyncio.wait_for(_exchange(conn, path), timeout)
            except (OSError, EOFError, _Broken, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
                self._drop(conn)
                if self._closed:
                    raise Unavailable(0, "closed", "client closed") from None
                if reused and not isinstance(e, asyncio.TimeoutError):
                    continue
                raise Unavailable(0, "unavailable", "%s: %s" % (self.socket_path, _describe(e))) from None
            except BaseException:
                self._drop(conn)
                raise
            self._busy.discard(conn)
            if keep and not self._closed and len(self._idle) < _MAX_IDLE:
                self._idle.append(conn)
            else:
                conn[1].close()
            if len(body) > _core.MAX_BODY:
                raise CredletError(status, "bad_answer", "answer too large")
            return status, _core.decode(status, reason, body)
        raise AssertionError("unreachable")

    def _drop(self, conn: Optional[_Conn]) -> None:
        if conn is not None:
            self._busy.discard(conn)
            conn[1].close()

async def _exchange(conn: _Conn, path: str) -> Tuple[int, str, bytes, bool]:
    """Sends one GET and reads its answer: (status, reason, body, keep-alive)."""
    reader, writer = conn
    writer.write(("GET %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n" % path).encode("ascii"))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise _Broken("not an HTTP answer: %r" % lines[0][:40])
    status, reason = int(parts[1]), parts[2] if len(parts) > 2 else ""
    headers: Dict[str, str] = {}
    for line in lines[1:]:
        if line:
            k, sep, v = line.partition(":")
            if not sep:
                raise _Broken("bad header line")
            headers[k.strip().lower()] = v.strip()
    keep = parts[0] == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if status == 304 or status == 204 or status < 200:
        return status, reason, b"", keep
    if "transfer-encoding" in headers:
        raise _Broken("unexpected Transfer-Encoding %r" % headers["transfer-encoding"])
    if "content-length" in headers:
        n = int(headers["content-length"]) if headers["content-length"].isdigit() else -1
        if n < 0 or n > _core.MAX_BODY:
            raise _Broken("bad Content-Length")
        return status, reason, await reader.readexactly(n), keep
    return status, reason, await reader.read(_core.MAX_BODY + 1), False

def _describe(e: BaseException) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return "no answer in time"
    if isinstance(e, (asyncio.IncompleteReadError, EOFError)):
        return "the agent closed the connection"
    return str(e) or type(e).__name__
