"""The blocking client: HTTP/1.1 over the agent's Unix socket with
http.client, keep-alive connections shared by threads."""

from __future__ import annotations

import http.client
import socket
import threading
from types import TracebackType
from typing import Any, Iterator, List, Optional, Set, Tuple, Type

from . import _core
from ._core import Credential, Health, Info
from ._errors import CredletError, Unavailable

_MAX_IDLE = 4

class _UnixConnection(http.client.HTTPConnection):
    """An HTTPConnection that dials a Unix socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout)
            s.connect(self._path)
        except BaseException:
            s.close()
            raise
        self.sock = s

class Client:
    """Reads credentials from one credlet agent.

    Safe to share between threads: each request takes a kept-alive
    connection from a small pool. ``close()`` (or leaving a ``with`` block)
    closes the connections and ends every running ``watch``.
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
        self._lock = threading.Lock()
        self._idle: List[_UnixConnection] = []
        self._busy: Set[_UnixConnection] = set()
        self._closed = threading.Event()

    # -- the API -------------------------------------------------------

    def get(self, name: str) -> Credential:
        """The current version of a credential set."""
        return _core.to_credential(self._call(_core.credential_path(name)))

    def get_previous(self, name: str) -> Credential:
        """The version before the current one, which the agent keeps after
        a rotation (its rollback pointer): a bot whose broker has not yet
        activated a new key can fall back to the old one. NotFound when the
        agent holds none (before its first rotation since it started).
        Every such read is audited by the agent."""
        return _core.to_credential(self._call(_core.credential_path(name) + "?version=previous"))

    def list(self) -> List[Info]:
        """Every set the agent holds: name, version, fetched_at (no values)."""
        return _core.to_infos(self._call("/v1/credentials"))

    def health(self) -> Health:
        """The agent's readiness and each set's state."""
        return _core.to_health(self._call("/v1/health"))

    def watch(self, name: str, *, wait_timeout: Optional[float] = None) -> Iterator[Credential]:
        """Yields the current version of a set, then each new version as
        the agent commits it (one long poll at a time).

        Transient failures (the agent restarting, the set not fetched yet)
        are logged on the ``credlet`` logger and retried with back-off for
        as long as it takes; Forbidden, NotFound and BadRequest are raised at
        once. The generator ends when the client is closed.
        """
        loop = _core.WatchLoop(self, name, wait_timeout)
        while not self._closed.is_set():
            try:
                cred = loop.answer(*self._once(loop.path(), loop.timeout))
            except CredletError as e:
                if self._closed.is_set():
                    return
                self._closed.wait(loop.failed(e))
                continue
            if cred is not None:
                yield cred

    def close(self) -> None:
        """Closes every connection and ends running watches. Later calls
        raise Unavailable (code ``closed``)."""
        self._closed.set()
        with self._lock:
            busy = set(self._busy)
            conns = self._idle + list(busy)
            self._idle.clear()
        for c in conns:
            if c in busy:
                # Another thread is reading it: shut the socket down to wake
                # that thread (it sees end of file) and let it close it.
                if c.sock is not None:
                    try:
                        c.sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                continue
            c.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return "credlet.Client(socket_path=%r)" % self.socket_path

    # -- requests ------------------------------------------------------

    def _call(self, path: str) -> Any:
        """One GET with retries of transient failures."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._once(path, self.timeout)[1]
            except CredletError as e:
                if self._closed.is_set():
                    raise
                self._closed.wait(_core.retry_delay(self, e, attempt))

    def _once(self, path: str, timeout: float) -> Tuple[int, Any]:
        """One GET, after the rate limit: (status, JSON or None for 304).

        A kept-alive connection the agent closed in the meantime is
        replaced once without counting as an attempt."""
        if self._bucket is not None:
            wait = self._bucket.reserve()
            if wait > 0:
                self._closed.wait(wait)
        for fresh in (False, True):
            conn, reused = self._checkout(timeout, fresh)
            try:
                conn.request("GET", path, headers={"Accept": "application/json"})
                resp = conn.getresponse()
                if resp.length is not None and resp.length > _core.MAX_BODY:
                    raise CredletError(resp.status, "bad_answer", "answer of %d bytes is too large" % resp.length)
                body = resp.read() if resp.length is not None else resp.read(_core.MAX_BODY)
            except (OSError, http.client.HTTPException) as e:
                self._drop(conn)
                if self._closed.is_set():
                    raise Unavailable(0, "closed", "client closed") from None
                if reused and not isinstance(e, socket.timeout):
                    continue
                raise Unavailable(0, "unavailable", "%s: %s" % (self.socket_path, _describe(e))) from None
            except BaseException:
                self._drop(conn)
                if self._closed.is_set():
                    # close() from another thread tore the connection down
                    # under this read (http.client then fails in ways other
                    # than OSError, e.g. ValueError on the closed file).
                    raise Unavailable(0, "closed", "client closed") from None
                raise
            if resp.will_close:
                self._drop(conn)
            else:
                self._checkin(conn)
            return resp.status, _core.decode(resp.status, resp.reason, body)
        raise AssertionError("unreachable")

    def _checkout(self, timeout: float, fresh: bool) -> Tuple[_UnixConnection, bool]:
        """A connection from the pool (unless fresh) or a new one, and
        whether it was reused."""
        with self._lock:
            if self._closed.is_set():
                raise Unavailable(0, "closed", "client closed")
            conn = self._idle.pop() if self._idle and not fresh else None
            reused = conn is not None
            if conn is None:
                conn = _UnixConnection(self.socket_path, timeout)
            self._busy.add(conn)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn, reused

    def _checkin(self, conn: _UnixConnection) -> None:
        with self._lock:
            self._busy.discard(conn)
            if not self._closed.is_set() and len(self._idle) < _MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def _drop(self, conn: _UnixConnection) -> None:
        with self._lock:
            self._busy.discard(conn)
        conn.close()

def _describe(e: BaseException) -> str:
    if isinstance(e, socket.timeout):
        return "no answer in time"
    if isinstance(e, http.client.RemoteDisconnected):
        return "the agent closed the connection"
    return str(e) or type(e).__name__
