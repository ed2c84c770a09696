"""One network spanning three nodes over VXLAN, on one machine.

Each node is a network namespace on a shared underlay bridge, running a
diycd of its own (``--netns``, own socket and state directory). The
network gets a VXLAN id, the same subnet everywhere and a different
``ip_range`` per node; each node lists the others as peers. A namespace
attached on each node must reach the two others; removing one peer on one
node must cut exactly that pair; a diycd killed and restarted must leave
the data path alone.
"""
from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import diyc
from diyc.client import Client
from diyc.daemon import DiycdProcess
from diyc.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError, ResourceExhaustedError
from diyc.pytest_plugin import NetFactory
from diyc.v1 import network_pb2
from diycd_support import RunNames, create_network, eventually, run_cli

pytestmark = pytest.mark.root

UNDERLAY = ipaddress.IPv4Network("192.168.250.0/24")
VXLAN_ID = 4242
NODES = 3


@dataclass
class Node:
    number: int
    netns: diyc.NetNS
    underlay_ip: str
    diycd: DiycdProcess
    workload: diyc.NetNS | None = None
    workload_ip: str = ""
    clients: list[Client] = field(default_factory=list)

    def client(self) -> Client:
        client = self.diycd.client()
        self.clients.append(client)
        return client


@dataclass
class Cluster:
    network: str
    subnet: ipaddress.IPv4Network
    nodes: list[Node]

    def ranges(self) -> list[ipaddress.IPv4Network]:
        return list(self.subnet.subnets(new_prefix=self.subnet.prefixlen + 2))


def _underlay(diyc_net: NetFactory) -> diyc.NetNS:
    underlay = diyc_net.netns()
    diyc_net.bridge("ul", netns=underlay)
    return underlay


def _start_node(number: int, underlay: diyc.NetNS, diyc_net: NetFactory, diycd_binary: str, root: Path,
                nft_table: str) -> Node:
    ns = diyc_net.netns()
    diyc_net.veth(f"n{number}", netns=underlay, peer="eth0", peer_netns=ns)
    with diyc.IPRoute(netns=underlay) as ipr:
        ipr.link_set(f"n{number}", master="ul")
    ip = str(UNDERLAY.network_address + number)
    with diyc.IPRoute(netns=ns) as ipr:
        ipr.addr_add("eth0", f"{ip}/{UNDERLAY.prefixlen}")
    base = root / f"node{number}"
    base.mkdir(mode=0o755)
    process = DiycdProcess(diycd_binary, socket=str(base / "run" / "diyc.sock"), state_dir=str(base / "state"),
                           extra_args=["--nft-table", nft_table, "--netns", ns.name])
    process.start(timeout=15)
    return Node(number, ns, ip, process)


@pytest.fixture
def cluster(diyc_net: NetFactory, diycd_binary: str, diycd_root: Path, names: RunNames,
            nft_table: str) -> Iterator[Cluster]:
    root = diycd_root / names.network("vx")
    root.mkdir(mode=0o755)
    underlay = _underlay(diyc_net)
    nodes: list[Node] = []
    try:
        for number in range(1, NODES + 1):
            nodes.append(_start_node(number, underlay, diyc_net, diycd_binary, root, nft_table))
        yield Cluster(names.network("span"), ipaddress.IPv4Network(names.subnet(24)), nodes)
    finally:
        problems = []
        for node in nodes:
            for client in node.clients:
                client.close()
            try:
                if not node.diycd.running:
                    node.diycd.start(timeout=15)
                with node.diycd.client() as client:
                    for network in client.list_networks():
                        client.delete_network(network.name, force=True)
            except Exception as exc:  # noqa: BLE001 - teardown reports every node
                problems.append(f"node {node.number}: {exc}")
            node.diycd.stop()
        if problems:
            pytest.fail("cluster teardown:\n  " + "\n  ".join(problems), pytrace=False)


def _span(cluster: Cluster, diyc_net: NetFactory) -> None:
    """Creates the network on every node and attaches one namespace per node."""
    ranges = cluster.ranges()
    for node in cluster.nodes:
        peers = [other.underlay_ip for other in cluster.nodes if other is not node]
        client = node.client()
        net = client.create_network(cluster.network, str(cluster.subnet), ip_range=str(ranges[node.number - 1]),
                                    vxlan_id=VXLAN_ID, local=node.underlay_ip, peers=peers)
        assert net.vxlan.underlay_device == "eth0"
        assert net.mtu == 1450, "the underlay's 1500 less VXLAN's 50 bytes"
        assert net.gateway == str(ranges[node.number - 1].network_address + 1)
        assert sorted(net.peers) == sorted(peers)
        node.workload = diyc_net.netns()
        attachment = client.attach(cluster.network, netns=node.workload.name)
        node.workload_ip = attachment.ip.split("/")[0]
        assert ipaddress.IPv4Address(node.workload_ip) in ranges[node.number - 1]


def _reaches(a: Node, b: Node, count: int = 2) -> bool:
    return diyc.ping(a.workload, b.workload_ip, count=count, timeout=0.5).received > 0


def _matrix(cluster: Cluster) -> dict[tuple[int, int], bool]:
    return {(a.number, b.number): _reaches(a, b) for a in cluster.nodes for b in cluster.nodes if a is not b}


def test_every_pair_of_nodes_reaches_each_other(cluster: Cluster, diyc_net: NetFactory) -> None:
    _span(cluster, diyc_net)
    assert eventually(lambda: all(_matrix(cluster).values()), timeout=10), _matrix(cluster)
    # The kernel objects on a node: the VXLAN link on the bridge, one
    # flooding entry per peer.
    node = cluster.nodes[0]
    with node.client() as client:
        net = client.get_network(cluster.network)
        assert not client.check()
    with diyc.IPRoute(netns=node.netns) as ipr:
        link = ipr.get_link(net.vxlan.device)
        assert link.kind == "vxlan" and link.mtu == 1450
        assert ipr.get_link(net.bridge).mtu == 1450


def test_removing_a_peer_cuts_exactly_that_pair(cluster: Cluster, diyc_net: NetFactory) -> None:
    _span(cluster, diyc_net)
    n1, n2, n3 = cluster.nodes
    assert eventually(lambda: all(_matrix(cluster).values()), timeout=10)

    net = n1.client().remove_peer(cluster.network, n3.underlay_ip)
    assert list(net.peers) == [n2.underlay_ip]
    assert not _reaches(n1, n3) and not _reaches(n3, n1)
    assert _reaches(n1, n2) and _reaches(n2, n1)
    assert _reaches(n2, n3) and _reaches(n3, n2)
    # Idempotent, and visible through the command line.
    n1.client().remove_peer(cluster.network, n3.underlay_ip)
    listed = run_cli("--socket", n1.diycd.socket, "--json", "network", "peer", "ls", cluster.network)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [n2.underlay_ip]

    added = run_cli("--socket", n1.diycd.socket, "network", "peer", "add", cluster.network, n3.underlay_ip)
    assert added.returncode == 0, added.stderr
    shown = run_cli("--socket", n1.diycd.socket, "network", "inspect", cluster.network)
    assert shown.returncode == 0, shown.stderr
    assert f"id {VXLAN_ID} port 4789 local {n1.underlay_ip} via eth0" in shown.stdout, shown.stdout
    assert f"peers:       {n2.underlay_ip}, {n3.underlay_ip}" in shown.stdout, shown.stdout
    assert eventually(lambda: _reaches(n1, n3) and _reaches(n3, n1), timeout=10)


def test_restarting_a_nodes_diycd_keeps_the_data_path(cluster: Cluster, diyc_net: NetFactory) -> None:
    _span(cluster, diyc_net)
    n1, n2, _ = cluster.nodes
    assert eventually(lambda: all(_matrix(cluster).values()), timeout=10)
    with diyc.IPRoute(netns=n2.netns) as ipr:
        before = {link.name: link.index for link in ipr.links()}

    n2.diycd.kill()  # SIGKILL: no chance to tidy up
    assert _reaches(n1, n2) and _reaches(n2, n1), "the kernel forwards without diycd"
    n2.diycd.start(timeout=15)
    with diyc.IPRoute(netns=n2.netns) as ipr:
        after = {link.name: link.index for link in ipr.links()}
    assert after == before, "reconcile re-created links it should have left alone"
    assert all(_matrix(cluster).values())
    with n2.client() as client:
        net = client.get_network(cluster.network)
        assert sorted(net.peers) == sorted(n.underlay_ip for n in cluster.nodes if n is not n2)
        assert not client.check()


def test_repair_restores_the_vxlan_link_and_exactly_the_peer_entries(cluster: Cluster, diyc_net: NetFactory) -> None:
    _span(cluster, diyc_net)
    n1, n2, _ = cluster.nodes
    client = n1.client()
    net = client.get_network(cluster.network)
    with diyc.IPRoute(netns=n1.netns) as ipr:
        ipr.link_del(net.vxlan.device)
    assert not _reaches(n1, n2)
    kinds = {d.kind for d in client.check()}
    assert kinds == {network_pb2.Drift.VXLAN_MISSING}, client.check()
    client.repair()
    assert not client.check()
    assert eventually(lambda: _reaches(n1, n2), timeout=10)

    # An entry towards a node that is no peer, and a peer's entry deleted.
    fdb = ["ip", "netns", "exec", n1.netns.name, "bridge", "fdb"]
    subprocess.run([*fdb, "append", "00:00:00:00:00:00", "dev", net.vxlan.device, "dst", "192.168.250.99"], check=True)
    subprocess.run([*fdb, "del", "00:00:00:00:00:00", "dev", net.vxlan.device, "dst", n2.underlay_ip], check=True)
    kinds = sorted(network_pb2.Drift.Kind.Name(d.kind) for d in client.check())
    assert kinds == ["VXLAN_PEER_MISSING", "VXLAN_PEER_STALE"], client.check()
    client.repair()
    assert not client.check()
    shown = subprocess.run([*fdb, "show", "dev", net.vxlan.device], capture_output=True, text=True, check=True).stdout
    assert "192.168.250.99" not in shown and n2.underlay_ip in shown, shown


def test_spanning_network_input_is_checked(client: Client, names: RunNames) -> None:
    subnet = names.subnet(24)
    bad = [
        (dict(vxlan_id=7), InvalidArgumentError),  # neither local nor underlay device
        (dict(vxlan_id=0, local="192.0.2.1"), InvalidArgumentError),
        (dict(vxlan_id=1 << 24, local="192.0.2.1"), InvalidArgumentError),
        (dict(vxlan_id=7, local="fd00::1"), InvalidArgumentError),
        (dict(vxlan_id=7, local="192.0.2.1", peers=["192.0.2.1"]), InvalidArgumentError),
        (dict(vxlan_id=7, local="192.0.2.1", peers=["10.1"]), InvalidArgumentError),
        (dict(vxlan_id=7, local="192.0.2.1", peers=["224.0.0.1"]), InvalidArgumentError),
        (dict(peers=["192.0.2.2"]), InvalidArgumentError),  # peers without VXLAN
        (dict(ip_range="10.0.0.0/28"), InvalidArgumentError),  # outside the subnet
        (dict(vxlan_id=7, local="192.0.2.77"), FailedPreconditionError),  # not an address of this node
        (dict(vxlan_id=7, underlay_device="nosuchdev0"), FailedPreconditionError),
    ]
    for kwargs, error in bad:
        with pytest.raises(error):
            create_network(client, names, subnet=subnet, **kwargs)
    assert not client.list_networks()

    local = create_network(client, names, subnet=subnet)
    with pytest.raises(FailedPreconditionError, match="does not span nodes"):
        client.add_peer(local.name, "192.0.2.2")
    with pytest.raises(NotFoundError):
        client.add_peer(names.network(), "192.0.2.2")


def test_ip_range_limits_allocation(client: Client, names: RunNames, diyc_net: NetFactory) -> None:
    subnet = ipaddress.IPv4Network(names.subnet(24))
    share = list(subnet.subnets(new_prefix=29))[3]  # .24/29
    net = create_network(client, names, subnet=str(subnet), ip_range=str(share))
    assert net.gateway == str(share.network_address + 1)
    got = []
    for _ in range(7):  # 8 addresses less the gateway
        ns = diyc_net.netns()
        got.append(ipaddress.IPv4Interface(client.attach(net.name, netns=ns.name).ip).ip)
    assert all(ip in share for ip in got)
    with pytest.raises(ResourceExhaustedError):
        client.attach(net.name, netns=diyc_net.netns().name)
    # A static address elsewhere in the subnet is still the caller's choice.
    static = client.attach(net.name, netns=diyc_net.netns().name, ip=str(subnet.network_address + 200))
    assert static.ip.startswith(str(subnet.network_address + 200))
