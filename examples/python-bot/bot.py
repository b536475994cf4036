#!/usr/bin/env python3
"""A trading bot's credential handling, in Python: read the broker
credentials from the credlet agent, then switch to each rotated version as
it arrives (long poll). It prints versions and a short fingerprint of the
key, never a value.

It uses the credlet package (sdk/python): `pip install ./sdk/python`, or
PYTHONPATH=sdk/python from the repository root.

    python3 bot.py --name zerodha                # run until stopped
    python3 bot.py --name zerodha --once         # print the current version and exit
    python3 bot.py --name zerodha --versions 3   # exit after three versions
"""

import argparse
import hashlib
import sys

from credlet import Client, CredletError, Forbidden, NotFound


def fingerprint(cred):
    """A short, one-way tag of the values, to show a rotation happened."""
    h = hashlib.sha256()
    for k in sorted(cred.fields):
        h.update(k.encode() + b"\0" + cred.fields[k].encode() + b"\0")
    return h.hexdigest()[:12]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--socket", help="agent socket (default $CREDLET_SOCKET or /credlet/run/agent.sock)")
    p.add_argument("--name", required=True, help="credential set")
    p.add_argument("--once", action="store_true", help="read the current version and exit")
    p.add_argument("--versions", type=int, default=0, help="exit after this many versions (0: never)")
    p.add_argument("--wait-timeout", type=int, default=60, help="seconds one long poll waits")
    args = p.parse_args(argv)

    client = Client(args.socket, wait_timeout=args.wait_timeout)
    try:
        if args.once:
            cred = client.get(args.name)
            print("version %d fields %s fingerprint %s" % (cred.version, ",".join(sorted(cred.fields)), fingerprint(cred)), flush=True)
            return 0
        seen = 0
        for cred in client.watch(args.name):
            seen += 1
            # A real bot would reconnect its broker session with cred.fields here.
            print("version %d fields %s fingerprint %s" % (cred.version, ",".join(sorted(cred.fields)), fingerprint(cred)), flush=True)
            if args.versions and seen >= args.versions:
                return 0
    except Forbidden as e:
        print("bot: the agent refuses this process (%s): run as the app's user or allow it with --allow-uid" % e, file=sys.stderr)
        return 1
    except NotFound as e:
        print("bot: the agent has no credential set %r (%s)" % (args.name, e), file=sys.stderr)
        return 1
    except CredletError as e:
        print("bot: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
