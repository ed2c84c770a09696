"""diycd end to end: networks, attachments, isolation, NAT, probes and events."""

from __future__ import annotations

import ipaddress
import queue
import subprocess
import threading
import time
from collections.abc import Callable

import pytest

import diyc
from diyc.client import Client, EventStream
from diyc.daemon import DiycdProcess
from diyc.pytest_plugin import assert_reachable, assert_unreachable
from diyc.v1 import events_pb2, network_pb2
from diycd_support import (
    MAX_IFNAME_LEN,
    RunNames,
    alias_network,
    create_network,
    eventually,
    masqueraded_subnets,
    netns_links,
    nft,
    nft_tables,
)

pytestmark = pytest.mark.root

MakeNetns = Callable[..., diyc.NetNS]


def host_ip(attachment: network_pb2.Attachment) -> str:
    return str(ipaddress.ip_interface(attachment.ip).ip)


def test_networks_are_isolated_and_nat_follows_the_flags(
        client: Client, names: RunNames, make_netns: MakeNetns, diycd: DiycdProcess, nft_table: str) -> None:
    natted = create_network(client, names)
    internal = create_network(client, names, internal=True)
    members: dict[str, list[tuple[diyc.NetNS, str]]] = {}
    for network in (natted, internal):
        members[network.name] = []
        for _ in range(2):
            ns = make_netns()
            members[network.name].append((ns, host_ip(client.attach(network.name, netns=ns.name))))

    for network in (natted, internal):
        (a, ip_a), (b, ip_b) = members[network.name]
        assert_reachable(a, ip_b, within=3)
        assert_reachable(b, ip_a)
        assert_reachable(a, network.gateway)
    for network, other in ((natted, internal), (internal, natted)):
        for ns, _ in members[network.name]:
            for _, target in members[other.name]:
                assert_unreachable(ns, target)

    assert internal.internal and not internal.nat
    assert natted.nat and not natted.internal
    table = nft("list", "table", "inet", nft_table).stdout
    masqueraded = masqueraded_subnets(table)
    assert natted.subnet in masqueraded, f"no masquerade for {natted.subnet} in:\n{table}"
    assert internal.subnet not in masqueraded, f"internal {internal.subnet} is masqueraded:\n{table}"

    client.delete_network(natted.name, force=True)
    client.delete_network(internal.name, force=True)
    assert client.list_networks() == []
    assert f"inet {nft_table}" not in nft_tables(), "the diyc table outlived the last network"


def test_attachment_fields_match_the_kernel(client: Client, names: RunNames, make_netns: MakeNetns) -> None:
    network = create_network(client, names)
    subnet = ipaddress.ip_network(network.subnet)
    assert network.gateway == str(subnet.network_address + 1)
    assert network.attachment_count == 0
    ns = make_netns()
    att = client.attach(network.name, netns=ns.name)

    iface = ipaddress.ip_interface(att.ip)
    assert iface.network == subnet, f"{att.ip} is not a CIDR of {subnet}"
    assert iface.ip not in (subnet.network_address, subnet.broadcast_address, ipaddress.ip_address(network.gateway))
    assert (att.network, att.WhichOneof("target"), att.netns_name) == (network.name, "netns_name", ns.name)
    assert att.gateway == network.gateway
    assert att.ifname == "eth0"

    assert 0 < len(att.host_ifname.encode()) <= MAX_IFNAME_LEN
    with diyc.IPRoute() as host:
        veth = host.get_link(att.host_ifname)
        bridge = host.get_link(network.bridge)
        bridge_addrs = {a.cidr for a in host.addrs(network.bridge, family=4)}
    assert veth.master == network.bridge and veth.state == "up"
    assert alias_network(veth.alias) == network.name, veth.alias
    assert bridge.kind == "bridge" and alias_network(bridge.alias) == network.name, bridge.alias
    assert f"{network.gateway}/{subnet.prefixlen}" in bridge_addrs

    with diyc.IPRoute(netns=ns) as ipr:
        eth0 = ipr.get_link("eth0")
        addrs = {a.cidr for a in ipr.addrs("eth0", family=4)}
        routes = ipr.routes(family=4)
    assert eth0.state == "up"
    assert addrs == {att.ip}
    assert any(r.dst == "default" and r.gateway == network.gateway and r.dev == "eth0" for r in routes), routes
    assert att.mac and att.mac.lower() == (eth0.address or "").lower(), (att.mac, eth0.address)
    assert_reachable(ns, network.gateway, within=3)

    assert client.get_network(network.name).attachment_count == 1
    assert list(client.list_attachments(network.name)) == [att]


def test_default_bridge_name(client: Client, names: RunNames) -> None:
    network = create_network(client, names, bridge=None)
    assert 0 < len(network.bridge.encode()) <= MAX_IFNAME_LEN
    with diyc.IPRoute() as host:
        link = host.get_link(network.bridge)
    assert link.kind == "bridge" and alias_network(link.alias) == network.name
    assert client.get_network(network.name).bridge == network.bridge


def test_targets_by_path_pid_and_custom_interface(
        client: Client, names: RunNames, make_netns: MakeNetns) -> None:
    network = create_network(client, names, mtu=1400)
    by_path, by_pid = make_netns(), make_netns()
    subnet = ipaddress.ip_network(network.subnet)
    static = str(subnet.network_address + 50)
    att = client.attach(network.name, netns_path=f"/run/netns/{by_path.name}", ifname="net1",
                        ip=static, mac="02:42:ac:11:00:32")
    assert (att.ip, att.ifname, att.mac.lower()) == (f"{static}/{subnet.prefixlen}", "net1", "02:42:ac:11:00:32")
    with diyc.IPRoute(netns=by_path) as ipr:
        link = ipr.get_link("net1")
        assert (link.address or "").lower() == "02:42:ac:11:00:32"
        assert link.mtu == 1400

    sleeper = subprocess.Popen(["ip", "netns", "exec", by_pid.name, "sleep", "60"])
    try:
        deadline = time.monotonic() + 5
        while not _in_netns(sleeper.pid, by_pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        att_pid = client.attach(network.name, pid=sleeper.pid)
        assert att_pid.WhichOneof("target") == "pid" and att_pid.pid == sleeper.pid
        assert "eth0" in netns_links(by_pid)
        assert_reachable(by_pid, static, within=3)
        client.detach(network.name, pid=sleeper.pid)
        assert eventually(lambda: "eth0" not in netns_links(by_pid))
    finally:
        sleeper.kill()
        sleeper.wait()
    client.detach(network.name, netns_path=f"/run/netns/{by_path.name}", ifname="net1")
    assert eventually(lambda: netns_links(by_path) == ["lo"]), netns_links(by_path)
    assert client.list_attachments(network.name) == []


def _in_netns(pid: int, ns: diyc.NetNS) -> bool:
    """True once the process runs inside ns (`ip netns exec` switches after exec)."""
    try:
        with diyc.NetNS.open(pid=pid) as current:
            return current.same_as(ns)
    except diyc.DiycError:
        return False


def test_probe_matrix_and_from_a_namespace(client: Client, names: RunNames, make_netns: MakeNetns) -> None:
    network = create_network(client, names)
    elsewhere = create_network(client, names)
    namespaces = [make_netns() for _ in range(3)]
    ips = [host_ip(client.attach(network.name, netns=ns.name)) for ns in namespaces]
    stranger = make_netns()
    foreign_ip = host_ip(client.attach(elsewhere.name, netns=stranger.name))
    assert_reachable(namespaces[0], ips[1], within=3)

    matrix = client.probe(network=network.name, count=2, timeout_ms=500)
    pairs = {(r.source, r.target) for r in matrix}
    assert len(matrix) == 6 and len(pairs) == 6, matrix
    for result in matrix:
        assert result.sent == 2 and result.received == 2, result
        assert len(result.rtts_ms) == 2 and all(0 < rtt < 1000 for rtt in result.rtts_ms)

    results = client.probe([ips[1], foreign_ip], netns=namespaces[0].name, timeout_ms=300)
    by_target = {r.target: r for r in results}
    assert by_target[ips[1]].received == by_target[ips[1]].sent == 1
    assert by_target[foreign_ip].received == 0


def _collect(stream: EventStream, into: queue.Queue[events_pb2.Event]) -> None:
    for event in stream:
        into.put(event)


def _gather(events: queue.Queue[events_pb2.Event], network: str, count: int,
            timeout: float = 10) -> list[events_pb2.Event]:
    """Everything received until `count` events of `network` have arrived."""
    seen: list[events_pb2.Event] = []
    deadline = time.monotonic() + timeout
    while sum(e.network == network for e in seen) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"only {seen} arrived within {timeout:g}s")
        try:
            seen.append(events.get(timeout=remaining))
        except queue.Empty:
            continue
    return seen


def test_events_follow_the_lifecycle(client: Client, names: RunNames, make_netns: MakeNetns) -> None:
    everything: queue.Queue[events_pb2.Event] = queue.Queue()
    filtered: queue.Queue[events_pb2.Event] = queue.Queue()
    other = names.network()
    network_name = names.network()
    all_stream, one_stream = client.events(), client.events(network=network_name)
    readers = [threading.Thread(target=_collect, args=(s, q), daemon=True)
               for s, q in ((all_stream, everything), (one_stream, filtered))]
    for reader in readers:
        reader.start()
    time.sleep(1.0)  # the streams are opened asynchronously; give them a moment
    try:
        create_network(client, names, name=other)
        network = create_network(client, names, name=network_name)
        ns = make_netns()
        att = client.attach(network.name, netns=ns.name)
        client.detach(network.name, netns=ns.name)
        client.delete_network(network.name)

        E = events_pb2.Event
        received = {"all": _gather(everything, network.name, 4), "filtered": _gather(filtered, network.name, 4)}
        for stream_name, seen in received.items():
            mine = [e for e in seen if e.network == network.name]
            assert [e.type for e in mine] == [E.NETWORK_CREATED, E.CONTAINER_ATTACHED, E.CONTAINER_DETACHED,
                                              E.NETWORK_DELETED], stream_name
            assert mine[1].attachment.ip == att.ip and mine[1].attachment.host_ifname == att.host_ifname
            assert all(e.time.seconds > 0 for e in mine)
        assert [e.type for e in received["all"] if e.network == other] == [E.NETWORK_CREATED]
        leaked = [e for e in received["filtered"] + _drain(filtered) if e.network != network.name]
        assert not leaked, f"the stream for {network.name} also sent {leaked}"
    finally:
        all_stream.cancel()
        one_stream.cancel()
    for reader in readers:
        reader.join(timeout=5)
        assert not reader.is_alive(), "cancelling did not end the event stream"


def _drain(events: queue.Queue[events_pb2.Event]) -> list[events_pb2.Event]:
    drained = []
    while not events.empty():
        drained.append(events.get_nowait())
    return drained
