"""The client and the command line against an in-process fake diycd.

No kernel and no diycd binary: these pin down argument parsing, paging,
error mapping, JSON and table output, and exit codes.
"""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from diyc import cli
from diyc.client import Client
from diyc.errors import (
    DiycError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
)
from diyc.v1 import events_pb2, network_pb2, node_pb2_grpc


class FakeNode(node_pb2_grpc.NodeServicer):
    """Just enough of diycd: five networks, paged by two, and canned answers."""

    def __init__(self) -> None:
        self.networks = [
            network_pb2.Network(name=f"net{i}", subnet=f"10.9.{i}.0/24", gateway=f"10.9.{i}.1",
                                bridge=f"br{i}", nat=i % 2 == 0, attachment_count=i)
            for i in range(5)
        ]
        self.requests: list[Any] = []
        self.events_started = threading.Event()
        self.slow = 0.0

    def CreateNetwork(self, request: network_pb2.CreateNetworkRequest, context: grpc.ServicerContext) -> Any:
        self.requests.append(request)
        if any(n.name == request.name for n in self.networks):
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"network {request.name!r} already exists")
        return network_pb2.Network(name=request.name, subnet=request.subnet, gateway="10.1.0.1", bridge="brx",
                                   nat=request.nat if request.HasField("nat") else True)

    def GetNetwork(self, request: network_pb2.GetNetworkRequest, context: grpc.ServicerContext) -> Any:
        time.sleep(self.slow)
        for network in self.networks:
            if network.name == request.name:
                return network
        context.abort(grpc.StatusCode.NOT_FOUND, f"network {request.name!r} not found")

    def DeleteNetwork(self, request: network_pb2.DeleteNetworkRequest, context: grpc.ServicerContext) -> Any:
        self.requests.append(request)
        if not request.force:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"network {request.name!r} has 2 attachments")
        return network_pb2.DeleteNetworkResponse()

    def ListNetworks(self, request: network_pb2.ListNetworksRequest, context: grpc.ServicerContext) -> Any:
        start = int(request.page_token or 0)
        page = self.networks[start:start + 2]
        token = str(start + 2) if start + 2 < len(self.networks) else ""
        return network_pb2.ListNetworksResponse(networks=page, next_page_token=token)

    def AttachContainer(self, request: network_pb2.AttachContainerRequest, context: grpc.ServicerContext) -> Any:
        self.requests.append(request)
        return network_pb2.Attachment(network=request.network, netns_name=request.netns_name,
                                      ifname=request.ifname or "eth0", ip="10.9.0.2/24", gateway="10.9.0.1",
                                      host_ifname="diyc1a2b3c")

    def DetachContainer(self, request: network_pb2.DetachContainerRequest, context: grpc.ServicerContext) -> Any:
        self.requests.append(request)
        return network_pb2.DetachContainerResponse()

    def ListAttachments(self, request: network_pb2.ListAttachmentsRequest, context: grpc.ServicerContext) -> Any:
        return network_pb2.ListAttachmentsResponse(attachments=[
            network_pb2.Attachment(network="net0", pid=42, ifname="eth0", ip="10.9.0.3/24",
                                   host_ifname="diyc99")])

    def Probe(self, request: network_pb2.ProbeRequest, context: grpc.ServicerContext) -> Any:
        self.requests.append(request)
        return network_pb2.ProbeResponse(results=[
            network_pb2.ProbeResult(source="netns a", target=target, sent=2,
                                    received=0 if target.endswith(".99") else 2,
                                    rtts_ms=[] if target.endswith(".99") else [0.1, 0.3])
            for target in request.targets
        ])

    def Events(self, request: events_pb2.EventsRequest, context: grpc.ServicerContext) -> Iterator[Any]:
        self.events_started.set()
        yield events_pb2.Event(type=events_pb2.Event.NETWORK_CREATED, network="net9")
        yield events_pb2.Event(type=events_pb2.Event.CONTAINER_ATTACHED, network="net9",
                               attachment=network_pb2.Attachment(network="net9", netns_name="c1", ifname="eth0",
                                                                 ip="10.9.9.2/24", host_ifname="diycab"))
        while context.is_active():
            time.sleep(0.05)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[FakeNode, str]]:
    node = FakeNode()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    node_pb2_grpc.add_NodeServicer_to_server(node, server)
    path = str(tmp_path / "fake.sock")
    server.add_insecure_port(f"unix:{path}")
    server.start()
    yield node, path
    server.stop(grace=None)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


# --------------------------------------------------------------------------
# Client


def test_list_networks_follows_every_page(fake: tuple[FakeNode, str]) -> None:
    _, path = fake
    with Client(path) as client:
        assert [n.name for n in client.list_networks()] == [f"net{i}" for i in range(5)]


def test_status_codes_become_diyc_exceptions(fake: tuple[FakeNode, str]) -> None:
    _, path = fake
    with Client(path) as client:
        with pytest.raises(NotFoundError) as info:
            client.get_network("nope")
        assert info.value.code == "NOT_FOUND" and str(info.value) == "network 'nope' not found"
        with pytest.raises(FailedPreconditionError):
            client.delete_network("net1")
        client.delete_network("net1", force=True)


def test_every_call_has_a_deadline(fake: tuple[FakeNode, str]) -> None:
    node, path = fake
    node.slow = 2.0
    with Client(path, timeout=0.2) as client:
        started = time.monotonic()
        with pytest.raises(DiycError) as info:
            client.get_network("net0")
    assert info.value.code == "DEADLINE_EXCEEDED"
    assert time.monotonic() - started < 1.5


def test_requests_carry_the_arguments(fake: tuple[FakeNode, str]) -> None:
    node, path = fake
    with Client(path) as client:
        client.create_network("a", "10.1.0.0/24")
        client.create_network("b", "10.2.0.0/24", nat=False, mtu=1400, bridge="brb")
        attachment = client.attach("a", netns="c1", ip="10.1.0.9", ifname="net1")
        client.detach("a", pid=7)
    default_nat, no_nat, attach, detach = node.requests
    # NAT is sent explicitly either way: unset would also mean "on".
    assert default_nat.HasField("nat") and default_nat.nat
    assert no_nat.HasField("nat") and not no_nat.nat and no_nat.mtu == 1400 and no_nat.bridge == "brb"
    assert attach.WhichOneof("target") == "netns_name" and attach.netns_name == "c1"
    assert (attach.ip, attach.ifname, attach.mac) == ("10.1.0.9", "net1", "")
    assert detach.WhichOneof("target") == "pid" and detach.pid == 7
    assert attachment.ifname == "net1"


def test_targets_are_checked_before_sending(fake: tuple[FakeNode, str]) -> None:
    _, path = fake
    with Client(path) as client:
        with pytest.raises(InvalidArgumentError):
            client.attach("a")
        with pytest.raises(InvalidArgumentError):
            client.attach("a", netns="x", pid=3)
        with pytest.raises(InvalidArgumentError):
            client.probe()


def test_events_stream_and_cancel(fake: tuple[FakeNode, str]) -> None:
    _, path = fake
    with Client(path) as client:
        stream = client.events()
        first, second = next(stream), next(stream)
        assert first.type == events_pb2.Event.NETWORK_CREATED
        assert second.attachment.ip == "10.9.9.2/24"
        threading.Timer(0.2, stream.cancel).start()
        assert list(stream) == []


def test_missing_socket_is_unavailable(tmp_path: Path) -> None:
    path = str(tmp_path / "none.sock")
    with Client(path, timeout=2) as client:
        with pytest.raises(UnavailableError) as info:
            client.list_networks()
    assert f"diycd is not reachable at {path}" in str(info.value)


def test_stale_socket_is_unavailable(tmp_path: Path) -> None:
    path = str(tmp_path / "stale.sock")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(path)  # the file stays, nobody listens: a crashed daemon
    with Client(path, timeout=2) as client:
        with pytest.raises(UnavailableError) as info:
            client.list_networks()
    assert path in str(info.value)


def test_unreadable_socket_directory_is_permission_denied(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root traverses any directory")
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    os.chmod(hidden, 0)
    try:
        with Client(str(hidden / "s.sock"), timeout=2) as client, pytest.raises(PermissionDeniedError):
            client.list_networks()
    finally:
        os.chmod(hidden, 0o700)


def test_client_rejects_contradictory_options() -> None:
    with pytest.raises(InvalidArgumentError):
        Client("/x.sock", host="h:1")
    with pytest.raises(InvalidArgumentError):
        Client("/x.sock", tls_ca="/ca.pem")
    with pytest.raises(InvalidArgumentError):
        Client(host="h:1", tls_cert="/c.pem")
    with pytest.raises(InvalidArgumentError):
        Client("/x.sock", timeout=0)


# --------------------------------------------------------------------------
# Command line


@pytest.mark.parametrize("position", ["before", "after"])
def test_json_before_or_after_the_command(fake: tuple[FakeNode, str], position: str) -> None:
    _, path = fake
    argv = ["--socket", path, "--json", "network", "ls"] if position == "before" else \
        ["network", "ls", "--json", "--socket", path]
    code, out, err = run(*argv)
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert [n["name"] for n in data] == [f"net{i}" for i in range(5)]
    # Proto field names, and zero values present rather than dropped.
    assert data[0]["attachment_count"] == 0 and data[1]["attachment_count"] == 1
    assert data[1]["nat"] is False


def test_network_ls_table(fake: tuple[FakeNode, str]) -> None:
    _, path = fake
    code, out, _ = run("--socket", path, "network", "ls")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 6
    assert lines[0].split() == ["NAME", "SUBNET", "GATEWAY", "BRIDGE", "NAT", "INTERNAL", "MTU", "ATTACHMENTS"]
    assert lines[1].split() == ["net0", "10.9.0.0/24", "10.9.0.1", "br0", "yes", "no", "-", "0"]
    # Columns line up: every row has its subnet where the header has SUBNET.
    column = lines[0].index("SUBNET")
    assert all(line[column:].startswith("10.9.") for line in lines[1:])


def test_not_found_is_one_line_and_exit_1(fake: tuple[FakeNode, str]) -> None:
    _, path = fake
    code, out, err = run("--socket", path, "network", "inspect", "x")
    assert (code, out) == (1, "")
    assert err == "diyc: NOT_FOUND: network 'x' not found\n"


def test_inspect_human_and_json(fake: tuple[FakeNode, str]) -> None:
    _, path = fake
    code, out, _ = run("--socket", path, "network", "inspect", "net2")
    assert code == 0 and "subnet:" in out and "10.9.2.0/24" in out
    code, out, _ = run("--socket", path, "network", "inspect", "net2", "--json")
    assert code == 0 and json.loads(out)["attachment_count"] == 2


def test_create_flags_reach_the_request(fake: tuple[FakeNode, str]) -> None:
    node, path = fake
    code, out, err = run("--socket", path, "network", "create", "n1", "--subnet", "10.5.0.0/24", "--no-nat",
                         "--internal", "--mtu", "1400", "--bridge", "brn1", "--gateway", "10.5.0.254")
    assert (code, err) == (0, ""), err
    request = node.requests[-1]
    assert (request.name, request.subnet, request.nat, request.internal, request.mtu, request.bridge,
            request.gateway) == ("n1", "10.5.0.0/24", False, True, 1400, "brn1", "10.5.0.254")
    assert out.startswith("created network n1")


def test_attach_detach_and_attachment_ls(fake: tuple[FakeNode, str]) -> None:
    node, path = fake
    code, out, _ = run("--socket", path, "attach", "net0", "--netns", "c1", "--json")
    assert code == 0 and json.loads(out)["host_ifname"] == "diyc1a2b3c"
    code, out, _ = run("--socket", path, "detach", "net0", "--pid", "12")
    assert code == 0 and out == "detached pid 12 from net0\n"
    assert node.requests[-1].pid == 12
    code, out, _ = run("--socket", path, "attachment", "ls")
    assert code == 0 and "pid 42" in out and "HOST IFNAME" in out


def test_probe_table_and_exit_status(fake: tuple[FakeNode, str]) -> None:
    _, path = fake
    code, out, _ = run("--socket", path, "probe", "--netns", "a", "10.0.0.2", "10.0.0.3")
    assert code == 0
    header, first, _ = out.splitlines()
    assert header.split() == ["SOURCE", "TARGET", "RECEIVED/SENT", "AVG", "RTT"]
    assert first.split()[-3:] == ["2/2", "0.200", "ms"]
    code, out, _ = run("--socket", path, "probe", "--netns", "a", "10.0.0.2", "10.0.0.99", "--json")
    assert code == 1
    assert [r["received"] for r in json.loads(out)] == [2, 0]


@pytest.mark.parametrize("argv", [
    [],
    ["network"],
    ["network", "create", "x"],
    ["attach", "net"],
    ["attach", "net", "--netns", "a", "--pid", "3"],
    ["probe"],
    ["probe", "10.0.0.1"],
    ["probe", "--netns", "a"],
    ["--timeout", "0", "network", "ls"],
    ["network", "ls", "--tls-ca", "/ca.pem"],
])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_help_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["network"], ["network", "create"], ["attach"], ["detach"], ["attachment", "ls"],
                 ["probe"], ["events"]):
        with pytest.raises(SystemExit) as info:
            cli.main([*argv, "--help"])
        assert info.value.code == 0
        assert "usage: diyc" in capsys.readouterr().out


def test_daemon_not_running_is_one_line(tmp_path: Path) -> None:
    code, out, err = run("--socket", str(tmp_path / "none.sock"), "network", "ls")
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and err.startswith("diyc: UNAVAILABLE: diycd is not reachable at ")


def test_socket_from_environment(fake: tuple[FakeNode, str], monkeypatch: pytest.MonkeyPatch) -> None:
    _, path = fake
    monkeypatch.setenv("DIYC_SOCKET", path)
    assert run("network", "inspect", "net1")[0] == 0


def test_events_json_lines(fake: tuple[FakeNode, str]) -> None:
    _, path = fake
    lines: list[str] = []

    class Capture(io.StringIO):
        # Two events are all the fake sends; then act like Ctrl-C.
        def flush(self) -> None:
            lines[:] = self.getvalue().splitlines()
            if len(lines) == 2:
                raise KeyboardInterrupt

    assert cli.main(["--socket", path, "events", "--json"], out=Capture(), err=io.StringIO()) == 0
    events = [json.loads(line) for line in lines]
    assert [e["type"] for e in events] == ["NETWORK_CREATED", "CONTAINER_ATTACHED"]
    assert events[1]["attachment"]["host_ifname"] == "diycab"


def test_format_event_line() -> None:
    event = events_pb2.Event(type=events_pb2.Event.CONTAINER_ATTACHED, network="web",
                             attachment=network_pb2.Attachment(network="web", pid=9, ifname="eth0",
                                                               ip="10.0.0.2/24", host_ifname="diycx"))
    event.time.FromSeconds(0)
    assert cli.format_event(event) == "- CONTAINER_ATTACHED web pid 9 eth0 10.0.0.2/24 host diycx"


# --------------------------------------------------------------------------
# DiycdProcess, with a stand-in daemon


FAKE_DAEMON = '''
import argparse, os, signal, sys, threading
from concurrent import futures
import grpc
from diyc.v1 import network_pb2, node_pb2_grpc

class Node(node_pb2_grpc.NodeServicer):
    def ListNetworks(self, request, context):
        return network_pb2.ListNetworksResponse(networks=[network_pb2.Network(name=str(os.getpid()))])

parser = argparse.ArgumentParser()
parser.add_argument("--socket"); parser.add_argument("--state-dir"); parser.add_argument("--fail")
args = parser.parse_args()
if args.fail:
    sys.exit("diycd: " + args.fail)
os.makedirs(os.path.dirname(args.socket), mode=0o700, exist_ok=True)
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
node_pb2_grpc.add_NodeServicer_to_server(Node(), server)
server.add_insecure_port("unix:" + args.socket)
server.start()
print("diycd: serving on unix:" + args.socket, file=sys.stderr, flush=True)
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
done.wait()
server.stop(None)
'''


@pytest.fixture
def fake_daemon(tmp_path: Path) -> str:
    script = tmp_path / "fake-diycd"
    script.write_text(f"#!/usr/bin/python3\n{FAKE_DAEMON}")
    script.chmod(0o755)
    return str(script)


def test_daemon_start_restart_kill(fake_daemon: str, tmp_path: Path) -> None:
    from diyc.daemon import DiycdProcess

    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(cli.__file__))}
    process = DiycdProcess(fake_daemon, socket=str(tmp_path / "run" / "d.sock"),
                           state_dir=str(tmp_path / "state"), env=env)
    assert os.path.dirname(process.log_path) == str(tmp_path)
    with process:
        first = process.pid
        with process.client() as client:
            assert [n.name for n in client.list_networks()] == [str(first)]
        process.restart()
        assert process.pid != first and process.running
        assert process.kill() == -9
        assert not process.running
        process.start()
    assert process.returncode == 0
    assert process.log().count("serving on unix:") == 3


def test_daemon_failure_quotes_the_log(fake_daemon: str, tmp_path: Path) -> None:
    from diyc.daemon import DiycdProcess, DiycdProcessError

    process = DiycdProcess(fake_daemon, socket=str(tmp_path / "d.sock"), state_dir=str(tmp_path / "state"),
                           extra_args=["--fail", "cannot open state"])
    with pytest.raises(DiycdProcessError) as info:
        process.start(timeout=10)
    assert "exited with status 1" in str(info.value) and "diycd: cannot open state" in str(info.value)


def test_daemon_binary_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    from diyc.daemon import find_diycd

    assert find_diycd("/opt/x/diycd") == "/opt/x/diycd"
    monkeypatch.setenv("DIYCD", "/opt/y/diycd")
    assert find_diycd() == "/opt/y/diycd"
