"""Errors raised by the credlet clients."""

from __future__ import annotations

__all__ = ["CredletError", "Forbidden", "NotFound", "NotReady", "BadRequest", "Unavailable"]


class CredletError(Exception):
    """An error answer from the agent, or a failure to reach it.

    ``status`` is the HTTP status (0 when the agent did not answer), ``code``
    the agent's error code (``forbidden``, ``not_found``, ``not_ready``,
    ``bad_request``, ...; ``unavailable`` when it did not answer) and
    ``message`` its one-line explanation.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__("credlet agent: %d %s: %s" % (status, code, message))
        self.status = status
        self.code = code
        self.message = message


class Forbidden(CredletError):
    """403: this process's UID/GID is not in the agent's --allow-uid/--allow-gid."""


class NotFound(CredletError):
    """404: the agent has no such credential set."""


class NotReady(CredletError):
    """503: the set has not been fetched yet (retried before it is raised)."""


class BadRequest(CredletError):
    """400: the request was malformed, for example an invalid set name."""


class Unavailable(CredletError):
    """The socket is absent or the agent did not answer, after the retries."""


_BY_CODE = {
    "forbidden": Forbidden,
    "not_found": NotFound,
    "not_ready": NotReady,
    "bad_request": BadRequest,
}


def from_answer(status: int, code: str, message: str) -> CredletError:
    """The error for an agent's error answer, by its code."""
    cls = _BY_CODE.get(code, CredletError)
    return cls(status, code, message)


def transient(err: BaseException) -> bool:
    """Whether trying again may help: the agent is unreachable, restarting,
    or has not fetched the set yet (any 5xx)."""
    if isinstance(err, Unavailable):
        return err.code != "closed"
    if isinstance(err, CredletError):
        return err.status >= 500
    return False
