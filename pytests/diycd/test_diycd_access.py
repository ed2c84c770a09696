"""Who may talk to diycd: root on the unix socket, TLS clients on TCP, nobody else."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from diyc.client import Client
from diyc.daemon import DiycdProcess
from diyc.errors import UnavailableError
from diycd_support import cli_env, run_cli

pytestmark = pytest.mark.root

NOBODY = 65534


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_socket_is_root_only(diycd: DiycdProcess) -> None:
    info = os.stat(diycd.socket)
    directory = os.stat(os.path.dirname(diycd.socket))
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600, oct(info.st_mode)
    assert stat.S_IMODE(directory.st_mode) == 0o700, oct(directory.st_mode)
    assert (info.st_uid, directory.st_uid) == (0, 0)


def _as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, user=NOBODY, group=NOBODY, extra_groups=[], cwd="/", env=cli_env(HOME="/nonexistent"))


def test_non_root_user_cannot_connect(diycd: DiycdProcess) -> None:
    result = _as_nobody("--socket", diycd.socket, "network", "ls")
    assert result.returncode == 1, result
    assert result.stderr.startswith("diyc: PERMISSION_DENIED: "), result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == ""

    # Even with the directory opened up, the socket's own mode keeps them out.
    run_dir = os.path.dirname(diycd.socket)
    os.chmod(run_dir, 0o711)
    try:
        result = _as_nobody("--socket", diycd.socket, "network", "ls")
    finally:
        os.chmod(run_dir, 0o700)
    assert result.returncode == 1, result
    assert result.stderr.startswith("diyc: PERMISSION_DENIED: "), result.stderr


def test_tcp_without_tls_is_refused(diycd_binary: str, diycd_root: Path) -> None:
    base = diycd_root / "plain-tcp"
    base.mkdir()
    port = free_port()
    started = time.monotonic()
    result = subprocess.run(
        [diycd_binary, "--listen", f"127.0.0.1:{port}", "--socket", str(base / "run" / "diyc.sock"),
         "--state-dir", str(base / "state")],
        capture_output=True, text=True, timeout=20)
    assert result.returncode != 0
    assert time.monotonic() - started < 5
    assert "tls" in (result.stderr + result.stdout).lower(), result
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_pki(directory: Path) -> None:
    """A CA and a server certificate for localhost/127.0.0.1 signed by it."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "1", "-subj", "/CN=diyc test CA", cwd=directory)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=directory)
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "1", "-extfile", "san.ext", cwd=directory)


def test_tcp_with_tls(diycd_binary: str, diycd_root: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    base = diycd_root / "tls-tcp"
    base.mkdir()
    _make_pki(base)
    port = free_port()
    process = DiycdProcess(diycd_binary, socket=str(base / "run" / "diyc.sock"), state_dir=str(base / "state"),
                           extra_args=["--listen", f"127.0.0.1:{port}", "--tls-cert", str(base / "server.pem"),
                                       "--tls-key", str(base / "server.key")])
    with process:
        with Client(host=f"localhost:{port}", tls_ca=str(base / "ca.pem"), timeout=10) as client:
            assert client.list_networks() == []
        result = run_cli("--host", f"localhost:{port}", "--tls-ca", str(base / "ca.pem"), "--json", "network", "ls")
        assert (result.returncode, result.stdout.strip()) == (0, "[]"), result
        # A client that does not trust the server's CA gets nowhere.
        with Client(host=f"localhost:{port}", timeout=5) as untrusting:
            with pytest.raises(UnavailableError):
                untrusting.list_networks()
