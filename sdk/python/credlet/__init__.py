"""credlet: read credentials from the credlet agent in your pod.

    import credlet

    client = credlet.Client()            # $CREDLET_SOCKET, else /credlet/run/agent.sock
    cred = client.get("exchange")        # the current version
    for cred in client.watch("exchange"):  # then each new one, as it is rotated
        reconnect(cred.fields["api_key"], cred.fields["api_secret"])

``credlet.aio.Client`` has the same methods for asyncio programs. Standard
library only.
"""

from __future__ import annotations

from ._core import DEFAULT_SOCKET, Credential, CredentialHealth, Health, Info
from ._errors import BadRequest, CredletError, Forbidden, NotFound, NotReady, Unavailable
from ._sync import Client

__version__ = "0.2.0"

# Tracebacks and reprs name the public module, not the private one.
for _cls in (Credential, CredentialHealth, Health, Info, CredletError, Forbidden, NotFound, NotReady, BadRequest, Unavailable):
    _cls.__module__ = __name__
del _cls

__all__ = [
    "Client",
    "Credential",
    "Info",
    "Health",
    "CredentialHealth",
    "CredletError",
    "Forbidden",
    "NotFound",
    "NotReady",
    "BadRequest",
    "Unavailable",
    "DEFAULT_SOCKET",
]
