"""diyc-cni driven directly through the CNI protocol against a real diycd.

Covers every verb (ADD, DEL, CHECK, GC, STATUS, VERSION), results in each
supported version, CNI_ARGS and capabilities, error codes, and a conflist
chaining diyc with the reference tuning, bandwidth, portmap and firewall
plugins (Debian's containernetworking-plugins).
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import diyc
from diyc.client import Client
from diyc.daemon import DiycdProcess
from diyc.pytest_plugin import assert_reachable
from cni_driver import REFERENCE_PLUGIN_DIR, CniPluginError, CniRuntime, find_plugin
from diycd_support import RunNames, eventually

pytestmark = pytest.mark.root

MakeNetns = Callable[..., diyc.NetNS]
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def runtime() -> CniRuntime:
    plugin = find_plugin()
    if not plugin.exists():
        pytest.skip(f"the CNI plugin {plugin} is not built (set DIYC_CNI)")
    return CniRuntime(plugins={"diyc": plugin})


@pytest.fixture
def conf(diycd: DiycdProcess, names: RunNames) -> dict[str, Any]:
    """A diyc-cni configuration whose network the first ADD creates."""
    return {"cniVersion": "1.1.0", "name": names.network("cni"), "type": "diyc", "socket": diycd.socket,
            "subnet": str(names.subnet24()), "bridge": names.bridge(), "timeoutSeconds": 20}


def container_id(names: RunNames) -> str:
    return f"{names.prefix}-ctr{next(_ids)}"


def netns_path(ns: diyc.NetNS) -> str:
    return f"/run/netns/{ns.name}"


def add(runtime: CniRuntime, conf: dict[str, Any], ns: diyc.NetNS, cid: str, **kwargs: Any) -> dict[str, Any]:
    result = runtime.run("ADD", conf, container_id=cid, netns=netns_path(ns), **kwargs)
    assert result is not None
    return result


def error_of(call: Callable[[], Any]) -> CniPluginError:
    with pytest.raises(CniPluginError) as info:
        call()
    return info.value


def link_in(ns: diyc.NetNS, ifname: str) -> dict[str, Any]:
    """`ip -j addr show` of one interface inside ns."""
    out = subprocess.run(["ip", "-n", ns.name, "-j", "addr", "show", ifname], capture_output=True, text=True,
                         check=True).stdout
    (link,) = json.loads(out)
    return link


def address(result: dict[str, Any]) -> str:
    return str(ipaddress.ip_interface(result["ips"][0]["address"]).ip)


def test_version_lists_every_supported_version(runtime: CniRuntime) -> None:
    for asked in ("1.1.0", "0.3.1"):
        out = runtime.run("VERSION", {"cniVersion": asked})
        assert out == {"cniVersion": asked, "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}


@pytest.mark.parametrize("version", ["1.1.0", "1.0.0", "0.4.0", "0.3.1"])
def test_add_result_has_the_shape_of_the_version(
        runtime: CniRuntime, conf: dict[str, Any], names: RunNames, make_netns: MakeNetns, client: Client,
        version: str) -> None:
    conf = {**conf, "cniVersion": version, "dns": {"nameservers": ["10.0.0.53"], "search": ["example.test"]}}
    ns, cid = make_netns(), container_id(names)
    result = add(runtime, conf, ns, cid)
    network = client.get_network(conf["name"])
    assert result["cniVersion"] == version
    host_if, container_if = result["interfaces"]
    assert "sandbox" not in host_if and host_if["mac"]
    assert container_if["name"] == "eth0" and container_if["sandbox"] == netns_path(ns)
    (ip,) = result["ips"]
    assert ip["interface"] == 1 and ip["gateway"] == network.gateway
    assert ipaddress.ip_interface(ip["address"]).network == ipaddress.ip_network(network.subnet)
    assert ("version" in ip) == (version < "1.0.0")
    if version < "1.0.0":
        assert ip["version"] == "4"
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": network.gateway}]
    assert result["dns"] == conf["dns"]
    # What CNI made is diycd's attachment, under the container id.
    (att,) = client.list_attachments(conf["name"], key=cid)
    assert (att.host_ifname, att.ip, att.mac, att.netns_path) == (
        host_if["name"], ip["address"], container_if["mac"], netns_path(ns))
    link = link_in(ns, "eth0")
    assert link["address"] == container_if["mac"]
    assert any(f"{a['local']}/{a['prefixlen']}" == ip["address"] for a in link["addr_info"])
    runtime.run("DEL", conf, container_id=cid, netns=netns_path(ns))
    assert client.list_attachments(conf["name"]) == []


def test_two_namespaces_ping_and_clients_see_each_others_attachments(
        runtime: CniRuntime, conf: dict[str, Any], names: RunNames, make_netns: MakeNetns, client: Client,
        diycd: DiycdProcess) -> None:
    a, b = make_netns(), make_netns()
    ra, rb = add(runtime, conf, a, container_id(names)), add(runtime, conf, b, container_id(names))
    assert_reachable(a, address(rb), within=3)
    assert_reachable(b, address(ra))
    # The CLI lists CNI's attachments.
    cli = subprocess.run(["/usr/bin/python3", "-m", "diyc", "--json", "attachment", "ls", conf["name"]],
                         capture_output=True, text=True, check=True, timeout=30,
                         env={"PYTHONPATH": str(Path(diyc.__file__).parents[1]), "DIYC_SOCKET": diycd.socket})
    listed = {entry["ip"] for entry in _json_entries(cli.stdout)}
    assert {ra["ips"][0]["address"], rb["ips"][0]["address"]} <= listed
    # And CNI's DEL removes an attachment the client made under a key.
    c = make_netns()
    att = client.attach(conf["name"], netns=c.name, key="made-by-client")
    assert_reachable(c, address(ra), within=3)
    runtime.run("DEL", conf, container_id="made-by-client", netns=netns_path(c))
    assert att.host_ifname not in {x.host_ifname for x in client.list_attachments(conf["name"])}


def _json_entries(text: str) -> list[dict[str, Any]]:
    data = json.loads(text)
    if isinstance(data, dict):
        data = data.get("attachments", [data])
    return list(data)


@pytest.mark.parametrize("how", ["cni_args", "runtime_config"])
def test_static_ip_and_mac(runtime: CniRuntime, conf: dict[str, Any], names: RunNames, make_netns: MakeNetns,
                           client: Client, how: str) -> None:
    subnet = ipaddress.ip_network(conf["subnet"])
    ip, mac = str(subnet.network_address + 77), "02:aa:bb:cc:dd:0e"
    ns, cid = make_netns(), container_id(names)
    if how == "cni_args":
        result = add(runtime, conf, ns, cid, args=f"IgnoreUnknown=1;K8S_POD_NAME=x;IP={ip};MAC={mac.upper()}")
    else:
        rc_conf = {**conf, "capabilities": {"ips": True, "mac": True},
                   "runtimeConfig": {"ips": [f"{ip}/{subnet.prefixlen}"], "mac": mac}}
        result = add(runtime, rc_conf, ns, cid)
    assert result["ips"][0]["address"] == f"{ip}/{subnet.prefixlen}"
    assert result["interfaces"][1]["mac"] == mac
    link = link_in(ns, "eth0")
    assert link["address"] == mac
    assert any(a["local"] == ip and a["prefixlen"] == subnet.prefixlen for a in link["addr_info"])
    # A prefix length other than the subnet's is refused.
    err = error_of(lambda: add(runtime, {**conf, "runtimeConfig": {"ips": [f"{subnet.network_address + 78}/16"]}},
                               make_netns(), container_id(names)))
    assert err.code == 7 and "does not match subnet" in err.msg


def test_unknown_cni_args_need_ignore_unknown(runtime: CniRuntime, conf: dict[str, Any], names: RunNames,
                                             make_netns: MakeNetns) -> None:
    err = error_of(lambda: add(runtime, conf, make_netns(), container_id(names), args="K8S_POD_NAME=x"))
    assert err.code == 4 and "K8S_POD_NAME" in err.msg
    add(runtime, conf, make_netns(), container_id(names), args="IgnoreUnknown=true;K8S_POD_NAME=x")


def test_check_passes_then_reports_drift(runtime: CniRuntime, conf: dict[str, Any], names: RunNames,
                                        make_netns: MakeNetns) -> None:
    ns, cid = make_netns(), container_id(names)
    result = add(runtime, conf, ns, cid)
    check_conf = {**conf, "prevResult": result}
    assert runtime.run("CHECK", check_conf, container_id=cid, netns=netns_path(ns)) is None
    # A different address in prevResult is drift too.
    forged = json.loads(json.dumps(result))
    forged["ips"][0]["address"] = str(ipaddress.ip_interface(result["ips"][0]["address"]) + 1)
    err = error_of(lambda: runtime.run("CHECK", {**conf, "prevResult": forged}, container_id=cid,
                                       netns=netns_path(ns)))
    assert err.code == 110
    subprocess.run(["ip", "-n", ns.name, "link", "del", "eth0"], check=True)
    err = error_of(lambda: runtime.run("CHECK", check_conf, container_id=cid, netns=netns_path(ns)))
    assert err.code == 110 and "eth0 is missing" in err.msg
    # CHECK is not part of 0.3.x; without prevResult it cannot run.
    assert error_of(lambda: runtime.run("CHECK", {**check_conf, "cniVersion": "0.3.1"}, container_id=cid,
                                        netns=netns_path(ns))).code == 1
    assert error_of(lambda: runtime.run("CHECK", conf, container_id=cid, netns=netns_path(ns))).code == 7
    runtime.run("DEL", conf, container_id=cid, netns=netns_path(ns))


def test_del_twice_and_after_the_namespace_is_gone_frees_the_address(
        runtime: CniRuntime, conf: dict[str, Any], names: RunNames, make_netns: MakeNetns, client: Client) -> None:
    ns, cid = make_netns(), container_id(names)
    ip = address(add(runtime, conf, ns, cid))
    subprocess.run(["ip", "netns", "del", ns.name], check=True)
    runtime.run("DEL", conf, container_id=cid, netns=netns_path(ns))
    runtime.run("DEL", conf, container_id=cid, netns=netns_path(ns))
    runtime.run("DEL", conf, container_id=cid)  # CNI_NETNS may be absent on DEL
    assert client.list_attachments(conf["name"]) == []
    again = add(runtime, conf, make_netns(), container_id(names), args=f"IP={ip}")
    assert address(again) == ip
    # DEL of a network diycd never had succeeds as well.
    runtime.run("DEL", {**conf, "name": names.network("none")}, container_id=cid)


def test_gc_keeps_the_valid_attachments_and_frees_the_rest(
        runtime: CniRuntime, conf: dict[str, Any], names: RunNames, make_netns: MakeNetns, client: Client) -> None:
    namespaces = [make_netns() for _ in range(3)]
    ids = [container_id(names) for _ in namespaces]
    results = [add(runtime, conf, ns, cid) for ns, cid in zip(namespaces, ids)]
    manual = client.attach(conf["name"], netns=make_netns().name)  # no key: never collected
    gc_conf = {**conf, "cni.dev/valid-attachments": [{"containerID": ids[0], "ifname": "eth0"},
                                                    {"containerID": "other/runtime's id", "ifname": "eth0"}]}
    assert runtime.run("GC", gc_conf) is None
    remaining = {a.host_ifname for a in client.list_attachments(conf["name"])}
    assert remaining == {results[0]["interfaces"][0]["name"], manual.host_ifname}
    # The collected addresses are free again.
    assert address(add(runtime, conf, namespaces[1], ids[1], args=f"IP={address(results[1])}")) == address(results[1])
    assert error_of(lambda: runtime.run("GC", conf)).code == 7  # no valid-attachments: refuse
    assert error_of(lambda: runtime.run("GC", {**gc_conf, "cniVersion": "1.0.0"})).code == 1


def test_status_tells_whether_diycd_is_reachable(runtime: CniRuntime, conf: dict[str, Any], names: RunNames,
                                                 make_netns: MakeNetns) -> None:
    assert runtime.run("STATUS", conf) is None  # network not made yet, but ADD would create it
    add(runtime, conf, make_netns(), container_id(names))
    assert runtime.run("STATUS", conf) is None
    nowhere = {**conf, "socket": f"/run/{names.prefix}-nowhere/diyc.sock"}
    started = time.monotonic()
    err = error_of(lambda: runtime.run("STATUS", nowhere))
    assert err.code == 50 and "not reachable" in err.msg
    assert time.monotonic() - started < 10
    no_subnet = {key: value for key, value in conf.items() if key != "subnet"}
    assert error_of(lambda: runtime.run("STATUS", {**no_subnet, "name": names.network("none")})).code == 50


def test_unreachable_diycd_means_try_again_later(runtime: CniRuntime, conf: dict[str, Any], names: RunNames,
                                                 make_netns: MakeNetns) -> None:
    nowhere = {**conf, "socket": f"/run/{names.prefix}-nowhere/diyc.sock"}
    ns, cid = make_netns(), container_id(names)
    for command in ("ADD", "DEL"):
        err = error_of(lambda: runtime.run(command, nowhere, container_id=cid, netns=netns_path(ns)))
        assert err.code == 11, err


def test_malformed_requests_get_the_spec_codes(runtime: CniRuntime, conf: dict[str, Any], names: RunNames,
                                              make_netns: MakeNetns) -> None:
    ns, cid = make_netns(), container_id(names)
    path = netns_path(ns)
    cases: list[tuple[int, Callable[[], Any]]] = [
        (1, lambda: runtime.run("ADD", {**conf, "cniVersion": "0.2.0"}, container_id=cid, netns=path)),
        (6, lambda: runtime.run("ADD", "{not json", container_id=cid, netns=path)),
        (7, lambda: runtime.run("ADD", {k: v for k, v in conf.items() if k != "name"}, container_id=cid, netns=path)),
        (7, lambda: runtime.run("ADD", {**conf, "mtu": "big"}, container_id=cid, netns=path)),
        # A diyc network that does not exist, without a subnet to create it.
        (7, lambda: runtime.run("ADD", {k: v for k, v in conf.items() if k != "subnet"}, container_id=cid,
                                netns=path)),
        (4, lambda: runtime.run("ADD", conf, netns=path)),                         # no CNI_CONTAINERID
        (4, lambda: runtime.run("ADD", conf, container_id="-bad id", netns=path)),
        (4, lambda: runtime.run("ADD", conf, container_id=cid)),                    # no CNI_NETNS
        (4, lambda: runtime.run("ADD", conf, container_id=cid, netns=path, ifname="a/b")),
        (4, lambda: runtime.run("FROB", conf, container_id=cid, netns=path)),
        (3, lambda: runtime.run("ADD", conf, container_id=cid, netns=f"/run/netns/{names.prefix}-absent")),
    ]
    for code, call in cases:
        err = error_of(call)
        assert err.code == code, f"expected code {code}, got {err}"
        error = json.loads(err.raw)
        assert set(error) <= {"cniVersion", "code", "msg", "details"} and error["msg"]
    # ALREADY_EXISTS maps to 101: the same (container id, ifname) twice.
    add(runtime, conf, ns, cid)
    assert error_of(lambda: add(runtime, conf, make_netns(), cid)).code == 101


# -- chaining with the reference plugins


def _iptables_save(table: str) -> str:
    return subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True, check=True).stdout


def _serve_once(ns: diyc.NetNS, port: int) -> subprocess.Popen[str]:
    """A TCP server inside ns that answers one connection with 'pong'."""
    code = ("import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
            f"s.bind(('0.0.0.0', {port})); s.listen(1); print('ready', flush=True); "
            "c, _ = s.accept(); c.sendall(b'pong'); c.close()")
    proc = subprocess.Popen(["ip", "netns", "exec", ns.name, "/usr/bin/python3", "-c", code],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture
def free_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        port = s.getsockname()[1]
    yield port


# The iptables tables the reference portmap and firewall plugins use, and
# the nftables table iptables-nft keeps each in.
_IPTABLES = {("iptables", "filter"): "ip filter", ("iptables", "nat"): "ip nat",
             ("ip6tables", "filter"): "ip6 filter", ("ip6tables", "nat"): "ip6 nat"}


def _iptables_rules(tool: str, table: str) -> list[list[str]]:
    done = subprocess.run([tool, "-w", "-t", table, "-S"], capture_output=True, text=True, check=False)
    return [shlex.split(line) for line in done.stdout.splitlines() if line.strip()]


def _cni_chains(tool: str, table: str) -> set[str]:
    return {rule[1] for rule in _iptables_rules(tool, table) if rule[0] == "-N" and rule[1].startswith("CNI-")}


def _nft_tables() -> set[str]:
    done = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    return {line.removeprefix("table ").strip() for line in done.stdout.splitlines() if line.strip()}


@pytest.fixture
def reference_plugin_chains() -> Iterator[None]:
    """Removes the shared chains portmap and firewall leave behind, if this test brought them.

    The reference plugins keep their CNI-* chains (and the jumps into them)
    for good once made, by design; on a host where other CNI users already
    have them they stay, here they were made for this test and go with it.
    """
    if shutil.which("iptables") is None:
        yield
        return
    tables_before = _nft_tables()
    chains_before = {key: _cni_chains(*key) for key in _IPTABLES}
    yield
    for (tool, table), before in chains_before.items():
        added = _cni_chains(tool, table) - before
        if not added:
            continue
        for rule in _iptables_rules(tool, table):
            if rule[0] == "-A" and rule[1] not in added and "-j" in rule and rule[rule.index("-j") + 1] in added:
                subprocess.run([tool, "-w", "-t", table, "-D", *rule[1:]], check=True)
        for flag in ("-F", "-X"):
            for chain in sorted(added):
                subprocess.run([tool, "-w", "-t", table, flag, chain], check=True)
    for (tool, table), nft_table in _IPTABLES.items():
        only_policies = all(rule[0] == "-P" for rule in _iptables_rules(tool, table))
        if nft_table not in tables_before and nft_table in _nft_tables() and only_policies:
            subprocess.run(["nft", "delete", "table", *nft_table.split()], check=True)


@pytest.mark.usefixtures("reference_plugin_chains")
def test_chain_with_tuning_bandwidth_portmap_and_firewall(
        runtime: CniRuntime, conf: dict[str, Any], names: RunNames, make_netns: MakeNetns, client: Client,
        free_port: int) -> None:
    for plugin in ("tuning", "bandwidth", "portmap", "firewall"):
        if not (REFERENCE_PLUGIN_DIR / plugin).exists():
            pytest.skip(f"reference plugin {plugin} is not installed (containernetworking-plugins)")
    diyc_conf = {k: v for k, v in conf.items() if k not in ("cniVersion", "name")}
    conflist = {
        "cniVersion": "1.0.0",  # the reference plugins' newest
        "name": conf["name"],
        "plugins": [
            {**diyc_conf, "capabilities": {"ips": True, "mac": True}},
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}, "mtu": 1400},
            {"type": "bandwidth", "ingressRate": 8_000_000, "ingressBurst": 800_000,
             "egressRate": 8_000_000, "egressBurst": 800_000},
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            {"type": "firewall", "backend": "iptables"},
        ],
    }
    runtime_config = {"portMappings": [{"hostPort": free_port, "containerPort": 8080, "protocol": "tcp"}]}
    ns, cid = make_netns(), container_id(names)
    result = runtime.add_list(conflist, container_id=cid, netns=netns_path(ns), runtime_config=runtime_config)
    deleted = False
    try:
        ip = address(result)
        host_veth = result["interfaces"][0]["name"]
        # tuning worked on our interface.
        sysctl = subprocess.run(["ip", "netns", "exec", ns.name, "cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify"],
                                capture_output=True, text=True, check=True).stdout.strip()
        assert sysctl == "1"
        (link,) = json.loads(subprocess.run(["ip", "-n", ns.name, "-j", "link", "show", "eth0"],
                                            capture_output=True, text=True, check=True).stdout)
        assert link["mtu"] == 1400
        # bandwidth shaped the host veth (ingress) and redirected egress to an ifb.
        qdiscs = subprocess.run(["tc", "qdisc", "show", "dev", host_veth], capture_output=True, text=True,
                                check=True).stdout
        assert "tbf" in qdiscs and "ingress" in qdiscs, qdiscs
        # portmap and firewall wrote rules for this container.
        assert cid in _iptables_save("nat"), "portmap made no DNAT rules for the container"
        assert f"{ip}/32" in _iptables_save("filter"), "firewall made no rules for the container address"
        # Every plugin's CHECK accepts the chain's result; portmap 1.1.1's
        # CHECK fails on any IPv4-only container, looking for ip6tables rules
        # it never made (containernetworking/plugins#819), so it sits out.
        checked = {**conflist, "plugins": [p for p in conflist["plugins"] if p["type"] != "portmap"]}
        runtime.check_list(checked, result, container_id=cid, netns=netns_path(ns), runtime_config=runtime_config)
        # The port mapping carries a connection from the host to the container.
        server = _serve_once(ns, 8080)
        try:
            gateway = client.get_network(conf["name"]).gateway
            with socket.create_connection((gateway, free_port), timeout=5) as conn:
                assert conn.recv(16) == b"pong"
        finally:
            server.kill()
            server.wait()
        runtime.del_list(conflist, result, container_id=cid, netns=netns_path(ns), runtime_config=runtime_config)
        deleted = True
    finally:
        if not deleted:
            runtime.del_list(conflist, result, container_id=cid, netns=netns_path(ns), runtime_config=runtime_config)
    assert cid not in _iptables_save("nat")
    assert f"{ip}/32" not in _iptables_save("filter")
    assert client.list_attachments(conf["name"]) == []
    assert eventually(lambda: subprocess.run(["ip", "link", "show", host_veth], capture_output=True).returncode != 0)
    ifbs = subprocess.run(["ip", "-br", "link", "show", "type", "ifb"], capture_output=True, text=True).stdout
    assert host_veth not in ifbs


def test_the_documented_conflist_works(runtime: CniRuntime, conf: dict[str, Any], names: RunNames,
                                       make_netns: MakeNetns, client: Client) -> None:
    conflist = json.loads((Path(__file__).parents[2] / "cni" / "examples" / "10-diyc.conflist").read_text())
    main = conflist["plugins"][0]
    assert main["type"] == "diyc"
    main.update(socket=conf["socket"], network=conf["name"], subnet=conf["subnet"], bridge=conf["bridge"])
    conflist["name"] = conf["name"]
    ns, cid = make_netns(), container_id(names)
    result = runtime.add_list(conflist, container_id=cid, netns=netns_path(ns), args="IgnoreUnknown=1;K8S_POD_NAME=p")
    assert result["dns"] == main["dns"]
    assert [a.key for a in client.list_attachments(conf["name"])] == [cid]
    runtime.del_list(conflist, result, container_id=cid, netns=netns_path(ns))
    assert client.list_attachments(conf["name"]) == []


def test_concurrent_first_adds_create_the_network_once(runtime: CniRuntime, conf: dict[str, Any], names: RunNames,
                                                       make_netns: MakeNetns, client: Client) -> None:
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(make_netns(), container_id(names)) for _ in range(4)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(lambda job: add(runtime, conf, *job), jobs))
    assert len({address(r) for r in results}) == len(jobs)
    assert [n.name for n in client.list_networks()] == [conf["name"]]
    assert sorted(a.key for a in client.list_attachments(conf["name"])) == sorted(cid for _, cid in jobs)
