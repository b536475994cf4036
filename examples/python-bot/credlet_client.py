"""A stdlib-only client for the credlet agent's Unix socket API.

    from credlet_client import Client, NotReady
    c = Client()                       # $CREDLET_SOCKET or /credlet/run/agent.sock
    cred = c.get("zerodha")            # the current version
    api_key = cred.fields["api_key"]
    for cred in c.watch("zerodha"):    # each new version, within milliseconds of its commit
        reconnect_broker(cred.fields)

Errors: Forbidden (this process's UID/GID may not read), NotFound (no such
set), NotReady (not fetched yet), BadRequest; all are CredletError with
.status, .code and .message. Transient failures (the agent restarting, not
ready yet) are retried with exponential backoff and jitter.

A Credential's repr() and str() never show values, so logging one by
mistake leaks nothing.
"""

import http.client
import json
import logging
import os
import random
import socket
import time
import urllib.parse

DEFAULT_SOCKET = "/credlet/run/agent.sock"

__all__ = ["Client", "Credential", "CredletError", "Forbidden", "NotFound", "NotReady", "BadRequest", "DEFAULT_SOCKET"]


class CredletError(Exception):
    """An error answer from the agent, or a failure to reach it (status 0)."""

    def __init__(self, status, code, message):
        super().__init__("credlet agent: %d %s: %s" % (status, code, message))
        self.status, self.code, self.message = status, code, message


class Forbidden(CredletError):
    pass


class NotFound(CredletError):
    pass


class NotReady(CredletError):
    pass


class BadRequest(CredletError):
    pass


log = logging.getLogger("credlet")

_BY_CODE = {"forbidden": Forbidden, "not_found": NotFound, "not_ready": NotReady, "bad_request": BadRequest}


class Credential:
    """One version of a credential set. repr()/str() redact the values."""

    __slots__ = ("name", "version", "fields", "fetched_at", "expires_at")

    def __init__(self, name, version, fields, fetched_at=None, expires_at=None):
        self.name, self.version, self.fields = name, version, fields
        self.fetched_at, self.expires_at = fetched_at, expires_at

    def __repr__(self):
        return "Credential(name=%r, version=%d, fields=%r, values=[REDACTED])" % (
            self.name, self.version, sorted(self.fields))

    __str__ = __repr__


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("credlet-agent", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._path)
        except OSError:
            s.close()
            raise
        self.sock = s


class Client:
    """Talks to one agent, keeping one connection alive between requests.

    Not thread-safe: use one Client per thread.
    """

    def __init__(self, socket_path=None, timeout=10.0, attempts=5, backoff=(0.1, 5.0), wait_timeout=60):
        self.socket_path = socket_path or os.environ.get("CREDLET_SOCKET") or DEFAULT_SOCKET
        self.timeout, self.attempts = timeout, max(1, attempts)
        self.backoff_min, self.backoff_max = backoff
        self.wait_timeout = max(1, int(wait_timeout))
        self._conn = None

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def get(self, name):
        """Returns the current version of a credential set."""
        return _credential(self._retry("/v1/credentials/" + urllib.parse.quote(name, safe="")))

    def list(self):
        """Returns [{"name", "version", "fetched_at"?}] for every set."""
        return self._retry("/v1/credentials")["credentials"]

    def health(self):
        """Returns {"ready", "credentials": {name: {"version", "age_seconds"?, "last_error"?}}}."""
        return self._retry("/v1/health")

    def watch(self, name, stop=lambda: False):
        """Yields the current version, then each new one as the agent commits
        it. Errors are retried with backoff for as long as stop() is false, so
        a watcher survives an agent restart."""
        path = "/v1/credentials/%s?timeout=%d&wait=" % (urllib.parse.quote(name, safe=""), self.wait_timeout)
        last, failures = 0, 0
        while not stop():
            try:
                status, body = self._request(path + str(last), self.wait_timeout + self.timeout)
            except CredletError as e:
                failures += 1
                log.warning("credlet watch %s: %s; retrying (attempt %d)", name, e, failures)
                self._sleep(failures)
                continue
            failures = 0
            if status == 304:
                continue
            cred = _credential(body)
            last = cred.version
            yield cred

    def _retry(self, path):
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._request(path, self.timeout)[1]
            except (NotReady, _Transient) as e:
                if attempt >= self.attempts:
                    raise CredletError(e.status, e.code, e.message) if isinstance(e, _Transient) else e
                self._sleep(attempt)

    def _sleep(self, attempt):
        d = min(self.backoff_max, self.backoff_min * (2 ** (attempt - 1)))
        time.sleep(d / 2 + random.uniform(0, d / 2))

    def _request(self, path, timeout):
        """One GET. Returns (status, decoded JSON or None for 304)."""
        for reused in (True, False):
            if self._conn is None:
                reused = False
                self._conn = _UnixConnection(self.socket_path, timeout)
            self._conn.timeout = timeout
            if self._conn.sock is not None:
                self._conn.sock.settimeout(timeout)
            try:
                self._conn.request("GET", path)
                resp = self._conn.getresponse()
                raw = resp.read(1 << 20)
            except (OSError, http.client.HTTPException) as e:
                self.close()
                if reused:
                    continue  # the agent closed an idle connection: try a fresh one once
                raise _Transient(0, "unreachable", "%s: %s" % (self.socket_path, e)) from None
            if resp.will_close:
                self.close()
            if resp.status == 304:
                return 304, None
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                raise CredletError(resp.status, "bad_answer", "unreadable answer from the agent") from None
            if resp.status == 200:
                return 200, body
            err = body.get("error", {}) if isinstance(body, dict) else {}
            code, message = err.get("code", "http_%d" % resp.status), err.get("message", resp.reason)
            cls = _BY_CODE.get(code)
            if cls is None:
                cls = _Transient if resp.status >= 500 else CredletError
            raise cls(resp.status, code, message)
        raise _Transient(0, "unreachable", self.socket_path)


class _Transient(CredletError):
    """Worth trying again: the agent is unreachable or failing."""


def _credential(body):
    return Credential(body["name"], body["version"], body["fields"], body.get("fetched_at"), body.get("expires_at"))
