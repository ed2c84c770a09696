"""Runs a real diycd for tests and scripts.

    with DiycdProcess(socket="/tmp/t/run/diyc.sock", state_dir="/tmp/t/state") as diycd:
        with diycd.client() as node:
            node.create_network("web", "10.88.0.0/24")

The daemon's stdout and stderr go to a log file that survives restarts, so a
failure can quote what diycd said. ``start()`` returns once diycd answers
gRPC calls, not merely once it has bound its socket.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import grpc

from .client import Client
from .errors import DiycError

__all__ = ["DiycdProcess", "DiycdProcessError", "find_diycd"]

BINARY_ENV = "DIYCD"
# bindings/python/diyc/daemon.py -> the repository root three levels up.
_REPO = Path(__file__).resolve().parents[3]
_BUILT_BINARY = _REPO / "build" / "server" / "diycd"
_LOG_TAIL = 4000
_POLL_INTERVAL = 0.05


class DiycdProcessError(RuntimeError):
    """diycd failed to start or to stop; the message quotes its log."""


def find_diycd(binary: str | os.PathLike[str] | None = None) -> str:
    """The diycd to run: the argument, $DIYCD, the build tree's, else PATH's."""
    if binary is not None:
        return os.fspath(binary)
    configured = os.environ.get(BINARY_ENV)
    if configured:
        return configured
    if os.access(_BUILT_BINARY, os.X_OK):
        return str(_BUILT_BINARY)
    found = shutil.which("diycd")
    if found is None:
        raise FileNotFoundError(f"no diycd binary: set ${BINARY_ENV}, build {_BUILT_BINARY}, or put diycd on PATH")
    return found


def _health_check(channel: grpc.Channel, timeout: float) -> bool | None:
    """grpc.health.v1 Check without the grpcio-health package.

    The request (empty service name) serialises to no bytes and a SERVING
    reply to field 1 = 1. Returns None when diycd has no health service.
    """
    check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                request_serializer=lambda _: b"", response_deserializer=lambda raw: raw)
    try:
        reply = check(None, timeout=timeout)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            return None
        return False
    return reply == b"\x08\x01"


class DiycdProcess:
    """One diycd process (restartable) on a given socket and state directory."""

    def __init__(
        self,
        binary: str | os.PathLike[str] | None = None,
        *,
        socket: str,
        state_dir: str,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.binary = find_diycd(binary)
        self.socket = os.fspath(socket)
        self.state_dir = os.fspath(state_dir)
        self.extra_args = tuple(extra_args)
        self.env = dict(os.environ if env is None else env)
        self.log_path = self._make_log_path()
        self._proc: subprocess.Popen[bytes] | None = None
        self._starts = 0
        self._has_health: bool | None = None

    def _make_log_path(self) -> str:
        """A fresh log file next to the state directory, else in the temp dir."""
        parent = os.path.dirname(os.path.abspath(self.state_dir))
        directory = parent if os.path.isdir(parent) and os.access(parent, os.W_OK) else None
        fd, path = tempfile.mkstemp(prefix="diycd-", suffix=".log", dir=directory)
        os.close(fd)
        return path

    @property
    def command(self) -> list[str]:
        return [self.binary, "--socket", self.socket, "--state-dir", self.state_dir, *self.extra_args]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def start(self, timeout: float = 10.0) -> DiycdProcess:
        """Launches diycd and waits until it serves gRPC on its socket."""
        if self.running:
            raise RuntimeError(f"diycd (pid {self.pid}) is already running")
        self._starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self._starts}: {' '.join(self.command)}\n".encode())
            log.flush()
            # A session of its own: a Ctrl-C meant for the caller must not
            # reach diycd before the caller has cleaned up through it.
            self._proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            code = self.returncode
            if code is not None:
                raise DiycdProcessError(f"diycd exited with status {code} while starting\n{self.log_tail()}")
            if os.path.exists(self.socket) and self._answers(min(1.0, max(0.1, deadline - time.monotonic()))):
                return
            if time.monotonic() >= deadline:
                raise DiycdProcessError(f"diycd did not serve on unix:{self.socket} within {timeout:g}s\n"
                                      f"{self.log_tail()}")
            time.sleep(_POLL_INTERVAL)

    def _answers(self, timeout: float) -> bool:
        """True once a health check (or, without one, ListNetworks) succeeds."""
        with Client(self.socket, timeout=timeout) as client:
            if self._has_health is not False:
                healthy = _health_check(client._channel, timeout)
                if healthy is not None:
                    self._has_health = True
                    return healthy
                self._has_health = False
            try:
                client.list_networks(page_size=1)
            except DiycError:
                return False
            return True

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then wait; SIGKILL when diycd outlives the timeout.

        Returns the exit status (None if it was never started).
        """
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
                raise DiycdProcessError(f"diycd ignored SIGTERM for {timeout:g}s and was killed\n{self.log_tail()}")
        return self._proc.returncode

    def kill(self) -> int | None:
        """SIGKILL: the crash a restart must recover from."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.kill()
        return self._proc.wait()

    def restart(self, timeout: float = 10.0) -> DiycdProcess:
        self.stop()
        return self.start(timeout)

    def client(self, timeout: float = 30.0) -> Client:
        return Client(self.socket, timeout=timeout)

    def log(self) -> str:
        """Everything diycd wrote, over all its starts."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, limit: int = _LOG_TAIL) -> str:
        text = self.log()
        return text if len(text) <= limit else "...\n" + text[-limit:]

    def __enter__(self) -> DiycdProcess:
        if not self.running:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"DiycdProcess({self.socket!r}, {state})"
