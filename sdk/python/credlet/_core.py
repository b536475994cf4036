"""What the blocking and the asyncio clients share: the answer types, how
an answer is decoded, which errors are retried, the back-off and the rate
limit. Nothing here does I/O."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple
from urllib.parse import quote

from ._errors import CredletError, from_answer, transient

log = logging.getLogger("credlet")

DEFAULT_SOCKET = "/credlet/run/agent.sock"
MAX_BODY = 1 << 20  # the largest answer read from the agent
REDACTED = "[REDACTED]"


def socket_path(given: Optional[str]) -> str:
    """The socket to use: given, else $CREDLET_SOCKET, else DEFAULT_SOCKET."""
    return given or os.environ.get("CREDLET_SOCKET") or DEFAULT_SOCKET


class Credential:
    """One version of a credential set.

    ``fields`` maps field names to values. ``repr()``, ``str()`` and
    f-strings name the set, version and field names, never a value.
    """

    __slots__ = ("name", "version", "fields", "fetched_at", "expires_at")

    def __init__(
        self,
        name: str,
        version: int,
        fields: Dict[str, str],
        fetched_at: Optional[datetime] = None,
        expires_at: Optional[datetime] = None,
    ) -> None:
        self.name = name
        self.version = version
        self.fields = fields
        self.fetched_at = fetched_at
        self.expires_at = expires_at

    def __repr__(self) -> str:
        return "Credential(name=%r, version=%d, fields=%r, values=%s)" % (
            self.name,
            self.version,
            sorted(self.fields),
            REDACTED,
        )

    __str__ = __repr__


class Info(NamedTuple):
    """One entry of Client.list(): a set's name and version, no values."""

    name: str
    version: int  # 0 when not fetched yet
    fetched_at: Optional[datetime]


class CredentialHealth(NamedTuple):
    """One set's entry in Health.credentials."""

    version: int  # 0 when not fetched yet
    age_seconds: Optional[float]  # since the last successful check; None before one
    last_error: Optional[str]  # the last failure since then
    optional: bool  # readiness does not wait for it


class Health(NamedTuple):
    """The agent's /v1/health answer."""

    ready: bool
    credentials: Dict[str, CredentialHealth]


_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)$")


def parse_time(s: Optional[str]) -> Optional[datetime]:
    """An RFC 3339 time (nanoseconds allowed) as an aware datetime."""
    if s is None:
        return None
    m = _TIME.match(s)
    if m is None:
        raise ValueError("not an RFC 3339 time: %r" % s)
    frac = (m.group(7) or "")[:6].ljust(6, "0")
    z = m.group(8)
    if z in ("Z", "z"):
        tz = timezone.utc
    else:
        off = timedelta(hours=int(z[1:3]), minutes=int(z[4:6]))
        tz = timezone(-off if z[0] == "-" else off)
    y, mo, d, h, mi, sec = (int(m.group(i)) for i in range(1, 7))
    return datetime(y, mo, d, h, mi, sec, int(frac), tzinfo=tz)


def credential_path(name: str) -> str:
    return "/v1/credentials/" + quote(name, safe="")


def watch_path(name: str, wait_timeout: float) -> str:
    """The long-poll path without the version: append it."""
    return "%s?timeout=%d&wait=" % (credential_path(name), max(1, int(wait_timeout + 0.999)))


def decode(status: int, reason: str, body: bytes) -> Any:
    """The JSON of a 200 answer, None for 304; raises the error of any other."""
    if status == 304:
        return None
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    if status == 200:
        if not isinstance(doc, dict):
            raise CredletError(status, "bad_answer", "unreadable answer from the agent")
        return doc
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict) and isinstance(err.get("code"), str) and err["code"]:
        raise from_answer(status, err["code"], str(err.get("message", "")))
    raise from_answer(status, "http_%d" % status, reason)


def to_credential(doc: Dict[str, Any]) -> Credential:
    try:
        fields = doc["fields"]
        if not isinstance(fields, dict):
            raise TypeError("fields")
        return Credential(
            str(doc["name"]),
            int(doc["version"]),
            {str(k): str(v) for k, v in fields.items()},
            parse_time(doc.get("fetched_at")),
            parse_time(doc.get("expires_at")),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CredletError(200, "bad_answer", "unreadable credential from the agent: %s" % type(e).__name__) from None


def to_infos(doc: Dict[str, Any]) -> List[Info]:
    try:
        return [
            Info(str(c["name"]), int(c["version"]), parse_time(c.get("fetched_at")))
            for c in doc["credentials"]
        ]
    except (KeyError, TypeError, ValueError) as e:
        raise CredletError(200, "bad_answer", "unreadable list from the agent: %s" % e) from None


def to_health(doc: Dict[str, Any]) -> Health:
    try:
        creds = {
            str(k): CredentialHealth(
                int(v["version"]),
                float(v["age_seconds"]) if v.get("age_seconds") is not None else None,
                v.get("last_error") or None,
                bool(v.get("optional", False)),
            )
            for k, v in (doc.get("credentials") or {}).items()
        }
        return Health(bool(doc["ready"]), creds)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CredletError(200, "bad_answer", "unreadable health from the agent: %s" % e) from None


def configure(
    client: Any,
    path: Optional[str],
    timeout: float,
    attempts: int,
    backoff: Tuple[float, float],
    max_rps: Optional[float],
    wait_timeout: float,
) -> None:
    """Checks a client's options and sets them on it: the one place both
    clients (blocking and asyncio) take their settings from."""
    check_options(timeout, attempts, backoff, max_rps)
    if not wait_timeout >= 1:
        raise ValueError("wait_timeout=%r: want seconds >= 1" % (wait_timeout,))
    client.socket_path = socket_path(path)
    client.timeout = float(timeout)
    client.attempts = int(attempts)
    client.backoff = (float(backoff[0]), float(backoff[1]))
    client.max_rps = max_rps
    client.wait_timeout = float(wait_timeout)
    client._bucket = TokenBucket(max_rps) if max_rps is not None else None


def check_options(timeout: float, attempts: int, backoff: Tuple[float, float], max_rps: Optional[float]) -> None:
    if not timeout > 0:
        raise ValueError("timeout=%r: want seconds > 0" % (timeout,))
    if int(attempts) < 1:
        raise ValueError("attempts=%r: want 1 or more" % (attempts,))
    if len(backoff) != 2 or not 0 < backoff[0] <= backoff[1]:
        raise ValueError("backoff=%r: want (first, longest) seconds with 0 < first <= longest" % (backoff,))
    if max_rps is not None and not max_rps > 0:
        raise ValueError("max_rps=%r: want None (no limit) or requests per second > 0" % (max_rps,))


def backoff_delay(attempt: int, first: float, longest: float, rand: Callable[[], float] = random.random) -> float:
    """The pause before the attempt-th retry: first doubled each time, at
    most longest, then jittered down to between half and all of it."""
    d = min(longest, first * (2 ** min(attempt - 1, 30)))
    return d / 2 + rand() * d / 2


class TokenBucket:
    """A client-side rate limit: up to ``rate`` requests at once, then
    ``rate`` a second. Thread-safe; the clock is injectable for tests."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = max(1.0, self.rate)
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Takes a token and returns how many seconds to wait before using it."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


def retry_delay(client: Any, e: CredletError, attempt: int) -> float:
    """How long a request waits before its next attempt after failing with
    e; raises e when the failure is permanent or the attempts are used up.
    The sync and asyncio clients share it."""
    if not transient(e) or attempt >= client.attempts:
        raise e
    return backoff_delay(attempt, *client.backoff)


class WatchLoop:
    """A watch's decisions, shared by the sync and asyncio clients: the
    path of the next long poll, what an answer yields, how long to wait
    after a failure. The clients only do the I/O and watch for close()."""

    def __init__(self, client: Any, name: str, wait_timeout: Optional[float]) -> None:
        wait = client.wait_timeout if wait_timeout is None else float(wait_timeout)
        self.name = name
        self.timeout = wait + client.timeout  # the long poll plus the answer
        self._base = watch_path(name, wait)
        self._backoff = client.backoff
        self._last = 0
        self._failures = 0

    def path(self) -> str:
        return self._base + str(self._last)

    def answer(self, status: int, doc: Any) -> Optional[Credential]:
        """The credential to yield for an answer, or None (the long poll
        timed out, or the agent answered with the version it already gave)."""
        self._failures = 0
        if status == 304:
            return None
        cred = to_credential(doc)
        if cred.version == self._last:
            return None
        self._last = cred.version
        return cred

    def failed(self, e: CredletError) -> float:
        """The wait before the next long poll after e, logged; raises e
        when it is permanent (Forbidden, NotFound, BadRequest)."""
        if not transient(e):
            raise e
        self._failures += 1
        log.warning("credlet: watching %s: %s; retrying (attempt %d)", self.name, e, self._failures)
        return backoff_delay(self._failures, *self._backoff)
