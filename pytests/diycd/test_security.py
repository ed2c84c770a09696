"""Security promises not covered elsewhere: oversized requests, a hostile
socket path, and what a container can no longer do (seccomp, mount
propagation, reaching diycd)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import grpc
import pytest

from diyc.client import Client
from diyc.daemon import DiycdProcess, find_diycd
from diyc.v1 import network_pb2, node_pb2_grpc
from test_containers import ContainerRunner, containers  # noqa: F401  (fixture)

pytestmark = pytest.mark.root


def test_oversized_request_is_refused_and_diycd_keeps_serving(diycd: DiycdProcess, client: Client) -> None:
    stub = node_pb2_grpc.NodeStub(grpc.insecure_channel(f"unix:{diycd.socket}"))
    with pytest.raises(grpc.RpcError) as info:
        stub.CreateNetwork(network_pb2.CreateNetworkRequest(name="x" * (2 << 20), subnet="10.0.0.0/24"), timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert client.list_networks() == []  # still serving


@pytest.mark.parametrize("kind", ["symlink", "regular file"])
def test_refuses_to_start_over_a_foreign_file_at_the_socket_path(tmp_path: Path, kind: str) -> None:
    run = tmp_path / "run"
    run.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    socket = run / "diyc.sock"
    if kind == "symlink":
        socket.symlink_to(victim)
    else:
        socket.write_text("not a socket\n")
    result = subprocess.run([find_diycd(), "--socket", str(socket), "--state-dir", str(tmp_path / "state"),
                             "--nft-table", "diyc_sockcheck"], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "refusing to replace it" in result.stderr, result.stderr
    assert victim.read_text() == "precious\n"
    assert socket.is_symlink() == (kind == "symlink")


def test_container_cannot_regain_privileges_or_reach_diycd(containers: ContainerRunner,  # noqa: F811
                                                            diycd: DiycdProcess) -> None:
    socket_dir = os.path.dirname(diycd.socket)
    outcome = containers.sh(
        "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status;"
        "unshare -n true 2>/dev/null && echo unshare-allowed || echo unshare-refused;"
        "grep -c 'shared:' /proc/self/mountinfo;"
        f"ls {socket_dir} 2>/dev/null && echo socket-visible || echo socket-invisible;"
        "ls /proc/1/root/ >/dev/null 2>&1; cat /proc/1/cgroup >/dev/null; echo done")
    lines = outcome.stdout.split()
    assert "Seccomp:" in lines and lines[lines.index("Seccomp:") + 1] == "2", outcome.stdout  # filter mode
    assert lines[lines.index("NoNewPrivs:") + 1] == "1"
    assert "unshare-refused" in lines
    # No mount of the container is a shared peer: nothing mounted inside can
    # propagate to the host.
    assert lines[lines.index("unshare-refused") + 1] == "0", outcome.stdout
    assert "socket-invisible" in lines
    assert outcome.exit_code == 0
