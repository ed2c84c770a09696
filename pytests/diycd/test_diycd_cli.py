"""`python3 -m diyc` against a real diycd, as a user would run it."""

from __future__ import annotations

import ipaddress
import json
import select
import signal
import subprocess
import time
from collections.abc import Callable

import pytest

import diyc
from diyc.client import Client
from diyc.daemon import DiycdProcess
from diyc.pytest_plugin import assert_reachable
from diycd_support import PYTHON, RunNames, cli_env, host_links, netns_links, run_cli

pytestmark = pytest.mark.root

MakeNetns = Callable[..., diyc.NetNS]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    __tracebackhide__ = True
    assert result.returncode == 0 and result.stderr == "", result
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str], code: str) -> str:
    __tracebackhide__ = True
    assert result.returncode == 1, result
    assert result.stdout == "" and result.stderr.count("\n") == 1, result
    assert result.stderr.startswith(f"diyc: {code}: "), result.stderr
    return result.stderr


def test_cli_end_to_end(diycd: DiycdProcess, client: Client, names: RunNames, make_netns: MakeNetns) -> None:
    sock = ["--socket", diycd.socket]
    assert json.loads(ok(run_cli(*sock, "--json", "network", "ls"))) == []

    name, bridge, subnet = names.network(), names.bridge(), names.subnet()
    out = ok(run_cli(*sock, "network", "create", name, "--subnet", subnet, "--bridge", bridge, "--mtu", "1450"))
    assert out.startswith(f"created network {name}")
    table = ok(run_cli(*sock, "network", "ls")).splitlines()
    assert table[0].split()[:2] == ["NAME", "SUBNET"]
    assert table[1].split()[:2] == [name, subnet]
    listed = json.loads(ok(run_cli(*sock, "network", "ls", "--json")))
    assert [(n["name"], n["subnet"], n["bridge"], n["mtu"], n["attachment_count"]) for n in listed] == \
        [(name, subnet, bridge, 1450, 0)]
    inspected = json.loads(ok(run_cli(*sock, "network", "inspect", name, "--json")))
    assert inspected["gateway"] == str(ipaddress.ip_network(subnet).network_address + 1)
    assert "bridge:" in ok(run_cli(*sock, "network", "inspect", name))

    first, second = make_netns(), make_netns()
    out = ok(run_cli(*sock, "attach", name, "--netns", first.name))
    assert out.startswith(f"attached netns {first.name} to {name}: eth0 ")
    att = json.loads(ok(run_cli(*sock, "--json", "attach", name, "--netns", second.name, "--ifname", "net0")))
    assert att["ifname"] == "net0" and att["netns_name"] == second.name
    assert ipaddress.ip_interface(att["ip"]).network == ipaddress.ip_network(subnet)
    assert att["host_ifname"] in host_links()
    assert "net0" in netns_links(second)

    attachments = json.loads(ok(run_cli(*sock, "attachment", "ls", name, "--json")))
    assert sorted(a["netns_name"] for a in attachments) == sorted([first.name, second.name])
    first_ip = next(str(ipaddress.ip_interface(a["ip"]).ip) for a in attachments if a["netns_name"] == first.name)
    assert_reachable(second, first_ip, within=3)
    rows = ok(run_cli(*sock, "attachment", "ls")).splitlines()
    assert len(rows) == 3 and rows[0].split()[:3] == ["NETWORK", "TARGET", "IFNAME"]

    matrix = ok(run_cli(*sock, "probe", "--network", name)).splitlines()
    assert matrix[0].split()[:3] == ["SOURCE", "TARGET", "RECEIVED/SENT"] and len(matrix) == 3
    assert all("1/1" in row for row in matrix[1:]), matrix
    unused = str(ipaddress.ip_network(subnet).network_address + 200)
    result = run_cli(*sock, "probe", "--netns", first.name, unused, "--timeout-ms", "300", "--json")
    assert result.returncode == 1, result
    assert [(r["target"], r["received"]) for r in json.loads(result.stdout)] == [(unused, 0)]

    ok(run_cli(*sock, "detach", name, "--netns", second.name, "--ifname", "net0"))
    assert netns_links(second) == ["lo"]
    one_line_error(run_cli(*sock, "network", "rm", name), "FAILED_PRECONDITION")
    assert json.loads(ok(run_cli(*sock, "network", "rm", name, "--force", "--json"))) == \
        {"network": name, "deleted": True}
    assert client.list_networks() == []
    assert netns_links(first) == ["lo"]


def test_cli_errors(diycd: DiycdProcess, names: RunNames) -> None:
    sock = ["--socket", diycd.socket]
    missing = names.network()
    err = one_line_error(run_cli(*sock, "network", "inspect", missing), "NOT_FOUND")
    assert missing in err
    one_line_error(run_cli(*sock, "network", "create", "bad/name", "--subnet", names.subnet()), "INVALID_ARGUMENT")
    one_line_error(run_cli(*sock, "attach", missing, "--netns", "nope"), "NOT_FOUND")

    usage = run_cli(*sock, "network", "create", names.network())
    assert usage.returncode == 2 and "--subnet" in usage.stderr and "Traceback" not in usage.stderr

    stopped = run_cli("--socket", f"{diycd.socket}.absent", "network", "ls")
    err = one_line_error(stopped, "UNAVAILABLE")
    assert f"diycd is not reachable at {diycd.socket}.absent" in err


def test_cli_events_until_ctrl_c(diycd: DiycdProcess, client: Client, names: RunNames) -> None:
    watcher = subprocess.Popen([PYTHON, "-m", "diyc", "--socket", diycd.socket, "events", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        # The watcher needs a moment to start and subscribe; keep creating until it reports one.
        created: list[str] = []
        line = ""
        deadline = time.monotonic() + 15
        while not line and time.monotonic() < deadline:
            network = names.network()
            client.create_network(network, names.subnet(), bridge=names.bridge())
            created.append(network)
            ready, _, _ = select.select([watcher.stdout], [], [], 1.0)
            if ready:
                line = watcher.stdout.readline()  # type: ignore[union-attr]
        event = json.loads(line)
        assert event["type"] == "NETWORK_CREATED" and event["network"] in created
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=10) == 0
        assert "Traceback" not in watcher.stderr.read()  # type: ignore[union-attr]
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
