"""diyc-cni driven by cnitool, the CNI project's reference client (libcni 1.1.2).

cnitool runs unmodified (built by ci/build-cnitool.sh) with a private
NETCONFPATH and CNI_PATH, inside a mount namespace whose /var is an overlay
(see :class:`cni_client_support.PrivateVar`), so the host's /etc and /var
stay untouched. Each test asserts the exact verbs cnitool made the plugin
run, as logged by the recording wrapper in CNI_PATH.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import diyc
from diyc.client import Client
from diyc.daemon import DiycdProcess
from diyc.pytest_plugin import assert_reachable
from cni_client_support import (
    HostFiles, PrivateVar, RecordingPluginDir, cnitool_binary, plugin_binary, write_conflist,
)
from diycd_support import RunNames, eventually

pytestmark = pytest.mark.root


@dataclass
class CniTool:
    """cnitool with a private configuration directory, plugin path and /var."""

    binary: Path
    netconf_dir: Path
    plugins: RecordingPluginDir
    private_var: PrivateVar

    def run(self, verb: str, network: str, netns: str, *, cni_args: str = "",
            capability_args: dict[str, Any] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, NETCONFPATH=str(self.netconf_dir), CNI_PATH=":".join(self.plugins.search_path))
        env.pop("CNI_ARGS", None)
        env.pop("CAP_ARGS", None)
        if cni_args:
            env["CNI_ARGS"] = cni_args
        if capability_args is not None:
            env["CAP_ARGS"] = json.dumps(capability_args)
        done = subprocess.run([*self.private_var.enter, str(self.binary), verb, network, f"/run/netns/{netns}"],
                              env=env, capture_output=True, text=True, timeout=60, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"cnitool {verb} {network} {netns} failed ({done.returncode}):\n"
                                 f"{done.stderr}{done.stdout}")
        return done

    def add(self, network: str, netns: str, **kwargs: Any) -> dict[str, Any]:
        """ADD through cnitool; returns the result it printed."""
        return json.loads(self.run("add", network, netns, **kwargs).stdout)

    def write_network(self, name: str, plugins: list[dict[str, Any]]) -> None:
        write_conflist(self.netconf_dir, name, plugins)


@pytest.fixture
def cni(tmp_path: Path) -> Iterator[CniTool]:
    """A cnitool setup of its own; fails the test if the host's CNI/container paths changed."""
    plugin = plugin_binary()  # before cnitool: no build when the test is skipped anyway
    cnitool = cnitool_binary()
    host_files = HostFiles()
    private_var = PrivateVar(tmp_path / "var")
    try:
        yield CniTool(cnitool, tmp_path / "net.d", RecordingPluginDir(tmp_path / "bin", plugin), private_var)
    finally:
        private_var.close()
    assert host_files.changes() == [], "cnitool or the plugin wrote to the host's CNI or container paths"


def diyc_plugin(diycd: DiycdProcess, network: str, **extra: Any) -> dict[str, Any]:
    return {"type": "diyc", "network": network, "socket": diycd.socket, **extra}


def address_of(result: dict[str, Any]) -> ipaddress.IPv4Interface:
    """The one IPv4 address of an ADD result, checked to sit on the container's eth0."""
    (ip,) = [ip for ip in result["ips"] if ipaddress.ip_interface(ip["address"]).version == 4]
    interface = result["interfaces"][ip["interface"]]
    assert interface["name"] == "eth0" and interface.get("sandbox"), result
    return ipaddress.IPv4Interface(ip["address"])


def host_link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def test_cnitool_add_check_del(cni: CniTool, diycd: DiycdProcess, client: Client, names: RunNames,
                               make_netns: Any) -> None:
    network = names.network()
    client.create_network(network, str(names.subnet24()), bridge=names.bridge())
    cni.write_network(network, [diyc_plugin(diycd, network)])
    ns1, ns2 = make_netns(), make_netns()

    first = address_of(cni.add(network, ns1.name))
    second = address_of(cni.add(network, ns2.name))
    adds = cni.plugins.take_calls()
    assert [call.command for call in adds] == ["ADD", "ADD"]
    assert first != second and first.network == second.network
    assert_reachable(ns1, str(second.ip))
    assert_reachable(ns2, str(first.ip))

    # Visible through diycd: keyed by the container id cnitool derives from the netns path.
    attachments = {a.key: a for a in client.list_attachments(network)}
    container_ids = {call.netns: call.container_id for call in adds}
    assert set(attachments) == set(container_ids.values())
    attached = attachments[container_ids[f"/run/netns/{ns1.name}"]]
    assert (attached.ifname, attached.ip) == ("eth0", str(first))

    cni.run("check", network, ns1.name)
    cni.run("check", network, ns2.name)
    assert cni.plugins.take_verbs() == ["CHECK", "CHECK"]

    # Drift: the interface is gone from the namespace, and CHECK says so.
    with diyc.IPRoute(netns=ns1) as inside:
        inside.link_del("eth0")
    drifted = cni.run("check", network, ns1.name, check=False)
    assert drifted.returncode != 0 and "eth0" in drifted.stderr + drifted.stdout, drifted
    assert cni.plugins.take_verbs() == ["CHECK"]

    cni.run("del", network, ns1.name)
    cni.run("del", network, ns2.name)
    cni.run("del", network, ns2.name)  # again: nothing left, still success
    assert cni.plugins.take_verbs() == ["DEL", "DEL", "DEL"]
    assert client.list_attachments(network) == []
    assert eventually(lambda: not host_link_exists(attached.host_ifname))
    # Both addresses are free again: each can be asked for by name.
    again = address_of(cni.add(network, ns2.name, cni_args=f"IP={first.ip}"))
    assert again == first
    cni.run("del", network, ns2.name)
    # libcni cached its results below /var/lib/cni, which only the private /var saw.
    assert "/var/lib/cni/results" in cni.private_var.written()


def test_cnitool_chain_with_tuning_on_an_auto_created_network(cni: CniTool, diycd: DiycdProcess, client: Client,
                                                              names: RunNames, make_netns: Any) -> None:
    network = names.network()
    subnet = names.subnet24()
    cni.write_network(network, [
        diyc_plugin(diycd, network, subnet=str(subnet), bridge=names.bridge()),
        {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.rp_filter": "2"}},
    ])
    ns = make_netns()

    result = cni.add(network, ns.name)
    assert address_of(result).network == subnet
    assert client.get_network(network).subnet == str(subnet)
    rp_filter = subprocess.run(["ip", "netns", "exec", ns.name, "cat", "/proc/sys/net/ipv4/conf/eth0/rp_filter"],
                               capture_output=True, text=True, check=True).stdout.strip()
    assert rp_filter == "2", "tuning did not act on diyc's interface"
    cni.run("check", network, ns.name)
    cni.run("del", network, ns.name)
    assert cni.plugins.take_verbs() == ["ADD", "CHECK", "DEL"]
    assert client.list_attachments(network) == []


def test_cnitool_static_address_from_capability_args(cni: CniTool, diycd: DiycdProcess, client: Client,
                                                     names: RunNames, make_netns: Any) -> None:
    network = names.network()
    subnet = names.subnet24()
    client.create_network(network, str(subnet), bridge=names.bridge())
    cni.write_network(network, [diyc_plugin(diycd, network, capabilities={"ips": True, "mac": True})])
    ns = make_netns()
    wanted = ipaddress.IPv4Interface(f"{subnet.network_address + 77}/{subnet.prefixlen}")
    mac = "02:42:0a:00:4d:01"

    result = cni.add(network, ns.name, capability_args={"ips": [str(wanted)], "mac": mac})
    assert address_of(result) == wanted
    assert result["interfaces"][result["ips"][0]["interface"]]["mac"] == mac
    (attachment,) = client.list_attachments(network)
    assert (attachment.ip, attachment.mac) == (str(wanted), mac)
    cni.run("del", network, ns.name)
    assert cni.plugins.take_verbs() == ["ADD", "DEL"]
