"""The real credlet-agent for the SDK tests: `credlet-agent dev` on its
embedded encrypted file source, plus `credlet-agent run` instances on the
same file for the cases dev does not cover (another allowed uid, a set that
is not in the file yet). Rotations go through `credlet-agent creds`."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
BINARY = os.environ.get("CREDLET_AGENT") or os.path.join(REPO, "bin", "credlet-agent")


def require_binary() -> None:
    """Skips the module without the agent binary; fails under CI."""
    if os.access(BINARY, os.X_OK):
        return
    msg = "%s is missing: run `make build` (or set CREDLET_AGENT)" % BINARY
    if os.environ.get("CI"):
        raise RuntimeError(msg)
    raise unittest.SkipTest(msg)


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=2)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(2)
            s.connect(self._path)
        except OSError:
            s.close()
            raise
        self.sock = s


def raw_get(sock: str, path: str):
    """One GET with plain http.client, independent of the SDK."""
    c = _Unix(sock)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def first(gen, timeout: float = 10.0):
    """The first item of an iterator, or its exception, within timeout:
    a watch that retries when it should raise fails the test, not hangs it."""
    import queue
    import threading

    q: "queue.Queue" = queue.Queue()

    def run() -> None:
        try:
            q.put((True, next(iter(gen))))
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            q.put((False, e))

    threading.Thread(target=run, daemon=True).start()
    try:
        ok, v = q.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError("nothing from the watch in %gs" % timeout) from None
    if not ok:
        raise v
    return v


class Process:
    """One agent process with its socket."""

    def __init__(self, args: List[str], socket_path: str, log_path: str) -> None:
        self.args, self.socket, self.log_path = args, socket_path, log_path
        self.proc: Optional[subprocess.Popen] = None

    def start(self, wait_ready: bool = True) -> None:
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen([BINARY] + self.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("agent exited %d:\n%s" % (self.proc.returncode, self.log()))
            try:
                status, body = raw_get(self.socket, "/v1/health")
                if status != 200 or not wait_ready or json.loads(body)["ready"]:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("agent socket %s not ready in 15s:\n%s" % (self.socket, self.log()))

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


class DevAgent:
    """`credlet-agent dev --dir D`: demo sets `exchange` (api_key,
    api_secret) and `broker-oauth` (refresh_token), version 1, values
    FAKE-demo-...; kept in D across a restart."""

    def __init__(self) -> None:
        require_binary()
        self.dir = tempfile.mkdtemp(prefix="cs", dir="/tmp")  # short: socket paths are limited to 107 bytes
        self.credentials = os.path.join(self.dir, "credentials.enc")
        self.key = os.path.join(self.dir, "master.key")
        self.main = Process(
            ["dev", "--dir", self.dir, "--listen", "127.0.0.1:0", "--log-format", "text"],
            os.path.join(self.dir, "run", "agent.sock"),
            os.path.join(self.dir, "dev.log"),
        )
        self.extra: List[Process] = []
        self.main.start()
        self.socket = self.main.socket

    def run_agent(self, name: str, *flags: str, wait_ready: bool = True) -> Process:
        """Another agent (`credlet-agent run`) on the same encrypted file."""
        sock = os.path.join(self.dir, name + ".sock")
        p = Process(
            ["run", "--source", "file:" + self.credentials, "--master-key-file", self.key, "--socket", sock,
             "--secrets-dir", "", "--listen", "", "--audit-file", os.path.join(self.dir, name + ".audit"),
             "--log-format", "text"] + list(flags),
            sock,
            os.path.join(self.dir, name + ".log"),
        )
        p.start(wait_ready)
        self.extra.append(p)
        return p

    def creds(self, command: str, path: str, fields: Dict[str, str]) -> None:
        """`credlet-agent creds put|rotate PATH field=@file ...`; values go
        through 0600 files, never the command line."""
        args = [BINARY, "creds", command, path]
        files = []
        for k, v in fields.items():
            fd, f = tempfile.mkstemp(dir=self.dir)
            with os.fdopen(fd, "w") as fh:
                fh.write(v)
            files.append(f)
            args.append("%s=@%s" % (k, f))
        args += ["--source", "file:" + self.credentials, "--master-key-file", self.key]
        try:
            out = subprocess.run(args, capture_output=True, timeout=30)
        finally:
            for f in files:
                os.remove(f)
        if out.returncode != 0:
            raise RuntimeError("creds %s %s: %s" % (command, path, out.stderr.decode()))

    def rotate(self, **fields: str) -> None:
        self.creds("rotate", "secret/demo/exchange", fields)

    def restart(self, down_for: float = 0.2) -> None:
        self.main.stop()
        time.sleep(down_for)
        self.main.start()

    def logs(self) -> str:
        return "".join(p.log() for p in [self.main] + self.extra)

    def close(self) -> None:
        for p in self.extra:
            p.stop()
        self.main.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def current_version(self) -> int:
        status, body = raw_get(self.socket, "/v1/credentials/exchange")
        assert status == 200, status
        return json.loads(body)["version"]
