"""Concurrent and conflicting requests to one diycd.

Each test fires requests that contend for the same name, subnet, network,
attachment or bridge at once (threads released together by a barrier) and
then checks that exactly one of the contenders won where only one may, and
that what diycd lists agrees with the kernel whichever order the requests
happened to run in (``check_consistent``). Each diycd has an nftables table
of its own, so other diycd instances on the host cannot change the rules
these tests read.
"""

from __future__ import annotations

import collections
import ipaddress
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

import diyc
from diyc.client import Client
from diyc.errors import DiycError
from diyc.pytest_plugin import NameAllocator, assert_reachable
from diyc.v1 import network_pb2, node_pb2_grpc
from diycd_support import RunNames, create_network, eventually, netns_links
from fault_support import DiycdFactory, FaultyDiycd, check_consistent, fault_diycd, free_subnet

pytestmark = pytest.mark.root

__all__ = ["fault_diycd"]  # a fixture, imported so pytest finds it

MakeNetns = Callable[..., diyc.NetNS]
FaultFactory = Callable[..., FaultyDiycd]


def outcome(call: Callable[[], object]) -> str:
    """The call's outcome: "OK", or the status code it failed with."""
    try:
        call()
    except DiycError as exc:
        return exc.code
    return "OK"


def all_at_once(calls: list[Callable[[], object]], delays: dict[int, float] | None = None) -> list[str]:
    """Runs every call on its own thread, released together; their outcomes in order.

    ``delays`` holds a call back by that many seconds after the release, to
    steer which contender tends to win (index -> seconds).
    """
    barrier = threading.Barrier(len(calls))

    def run(index: int) -> str:
        barrier.wait(timeout=30)
        if delays and index in delays:
            time.sleep(delays[index])
        return outcome(calls[index])

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, range(len(calls))))


@pytest.fixture
def node(fault_diycd: FaultFactory) -> FaultyDiycd:
    """One diycd with an nftables table of its own, unlike the suite's ``diycd`` fixture.

    Other diycd instances on the host (other test runs) replace the default
    table wholesale when they apply their rules; the consistency check reads
    this diycd's rules and must see only its own.
    """
    return fault_diycd()


@pytest.fixture
def client(node: FaultyDiycd) -> Iterator[Client]:
    with node.client() as c:
        yield c


def test_same_network_by_50_callers(node: FaultyDiycd, client: Client, names: RunNames) -> None:
    """One CreateNetwork wins; the other 49 see ALREADY_EXISTS; one bridge exists.

    Orchestrators retry a create that timed out, so duplicates do arrive
    together; a second bridge or a half-made loser would be a leak.
    """
    name, subnet, bridge = names.network(), names.subnet(), names.bridge()
    outcomes = all_at_once([lambda: client.create_network(name, subnet, bridge=bridge)] * 50)
    assert collections.Counter(outcomes) == {"OK": 1, "ALREADY_EXISTS": 49}, collections.Counter(outcomes)
    assert list(node.network_links(name)) == [bridge]
    check_consistent(node, client, networks=[name])


def test_same_subnet_under_20_names(node: FaultyDiycd, client: Client, names: RunNames) -> None:
    """One of 20 networks sharing a subnet is made; the others are FAILED_PRECONDITION and leave nothing.

    Two bridges with one subnet would split the host's routes between them;
    the overlap check must hold while every contender is still being made.
    """
    subnet = names.subnet()
    contenders = [(names.network(), names.bridge()) for _ in range(20)]
    outcomes = all_at_once([lambda n=n, b=b: client.create_network(n, subnet, bridge=b) for n, b in contenders])
    assert collections.Counter(outcomes) == {"OK": 1, "FAILED_PRECONDITION": 19}, collections.Counter(outcomes)
    winner = contenders[outcomes.index("OK")]
    assert {name: link.name for name, link in node.links().items()} == {winner[1]: winner[1]}
    check_consistent(node, client, networks=[n for n, _ in contenders])


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_attaches_race_delete_network(force: bool, node: FaultyDiycd, client: Client, names: RunNames,
                                      make_netns: MakeNetns) -> None:
    """20 attaches against one delete: the network keeps exactly the successful ones, or is gone with all of them.

    Without force the delete fails while any attachment exists; with force
    it detaches them, and no veth of the network may remain either way.
    """
    namespaces = {ns.name: ns for ns in (make_netns() for _ in range(20))}
    rounds = []
    # A negative delay holds the attaches back instead of the delete: the
    # rounds go from "delete first" to "attaches first", with attaches done,
    # under way and not yet begun in between.
    for delay in (-0.005, 0.0, 0.001, 0.003, 0.02):
        network = create_network(client, names)
        calls = [lambda ns=ns: client.attach(network.name, netns=ns) for ns in namespaces]
        calls.append(lambda: client.delete_network(network.name, force=force))
        held = {len(calls) - 1: delay} if delay >= 0 else {i: -delay for i in range(len(calls) - 1)}
        outcomes = all_at_once(calls, held)
        attached, deleted = outcomes[:-1], outcomes[-1]
        seen = check_consistent(node, client, networks=[network.name], namespaces=namespaces)
        if deleted == "OK":
            assert network.name not in seen.networks and not node.network_links(network.name)
            assert set(attached) <= ({"OK", "NOT_FOUND", "FAILED_PRECONDITION"} if force
                                     else {"NOT_FOUND", "FAILED_PRECONDITION"}), attached
        else:
            assert not force and deleted == "FAILED_PRECONDITION", deleted
            # It failed because an attachment existed: none was refused.
            assert set(attached) == {"OK"}, attached
            won = {name for name, result in zip(namespaces, attached) if result == "OK"}
            assert {a.netns_name for a in seen.attachments if a.network == network.name} == won
            client.delete_network(network.name, force=True)
        assert all(netns_links(ns) == ["lo"] for ns in namespaces.values())
        rounds.append((delay, deleted, dict(collections.Counter(attached))))
    print(f"force={force}: (delete delay, delete, attaches) per round: {rounds}")


def test_two_detaches_at_once(node: FaultyDiycd, client: Client, names: RunNames, make_netns: MakeNetns) -> None:
    """Both detaches of one attachment succeed; the veth goes once and the count does not go below zero.

    Detach is idempotent by contract, and a runtime retrying a teardown may
    overlap its first attempt; releasing the address or the port count twice
    would corrupt IPAM for everyone else.
    """
    network = create_network(client, names)
    ns = make_netns()
    for _ in range(10):
        attachment = client.attach(network.name, netns=ns.name)
        outcomes = all_at_once([lambda: client.detach(network.name, netns=ns.name)] * 2)
        assert outcomes == ["OK", "OK"], outcomes
        assert client.list_attachments(network.name) == []
        assert client.get_network(network.name).attachment_count == 0
        assert eventually(lambda: attachment.host_ifname not in node.links())
        assert netns_links(ns) == ["lo"]
    check_consistent(node, client, networks=[network.name], namespaces={ns.name: ns})
    assert "DetachContainer" in node.process.log() and "INTERNAL" not in node.process.log()


def test_detach_while_attach_runs(node: FaultyDiycd, client: Client, names: RunNames,
                                  make_netns: MakeNetns) -> None:
    """A detach sent together with its attach: both succeed, and the attachment is wholly there or wholly not.

    A container that dies while it is being wired gets its teardown at once;
    whichever request diycd sees first, nothing may stay half made.
    """
    network = create_network(client, names)
    namespaces = {ns.name: ns for ns in (make_netns() for _ in range(20))}
    for name in namespaces:
        outcomes = all_at_once([lambda: client.attach(network.name, netns=name),
                                lambda: client.detach(network.name, netns=name)])
        assert outcomes == ["OK", "OK"], outcomes
    seen = check_consistent(node, client, networks=[network.name], namespaces=namespaces)
    present = sum(seen.attached(network.name, name) is not None for name in namespaces)
    print(f"detach racing attach: {present} of 20 attachments remained, {20 - present} were detached")


def test_attach_with_1ms_deadline(node: FaultyDiycd, client: Client, names: RunNames,
                                  make_netns: MakeNetns) -> None:
    """The client gives up after 1 ms; what diycd did anyway is complete and listed, or absent with no veth.

    A cancelled call is not a rolled-back call: the client cannot know how
    far diycd got, so whatever diycd did must be whole and visible in the
    list (the client's retry then sees ALREADY_EXISTS or succeeds).
    """
    network = create_network(client, names)
    namespaces = {ns.name: ns for ns in (make_netns() for _ in range(20))}
    channel = grpc.insecure_channel(f"unix:{node.process.socket}")
    codes = []
    try:
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = node_pb2_grpc.NodeStub(channel)
        for name in namespaces:
            try:
                stub.AttachContainer(network_pb2.AttachContainerRequest(network=network.name, netns_name=name),
                                     timeout=0.001)
                codes.append("OK")
            except grpc.RpcError as exc:
                codes.append(exc.code().name)
    finally:
        channel.close()
    assert set(codes) == {"DEADLINE_EXCEEDED"}, collections.Counter(codes)

    def settled() -> bool:
        listed = {a.netns_name for a in client.list_attachments(network.name)}
        return all((name in listed) == (netns_links(ns) != ["lo"]) for name, ns in namespaces.items())

    eventually(settled, 10)
    seen = check_consistent(node, client, networks=[network.name], namespaces=namespaces)
    done = [name for name in namespaces if seen.attached(network.name, name) is not None]
    for name in namespaces:
        if name not in done:
            client.attach(network.name, netns=name)
    check_consistent(node, client, networks=[network.name], namespaces=namespaces)
    print(f"1 ms deadline: diycd completed {len(done)} of 20 attaches the clients gave up on")


@dataclass
class FullBridge:
    """A network whose bridge holds the kernel's maximum of 1023 ports, and a 1024th namespace."""

    node: FaultyDiycd
    network: network_pb2.Network
    subnet: ipaddress.IPv4Network
    namespaces: list[diyc.NetNS]
    attachments: list[network_pb2.Attachment]


@pytest.fixture(scope="module")
def full_bridge(diycd_binary: str, diycd_root: Path, names: RunNames,
                diyc_names: NameAllocator) -> Iterator[FullBridge]:
    """1023 namespaces attached to one /21 network, made once for the tests that need a full bridge.

    Module-scoped (it takes ~10 s), so it manages its own diycd and
    namespaces rather than using the function-scoped fixtures.
    """
    from diyc.pytest_plugin import require_root

    require_root()
    factory = DiycdFactory(diycd_binary, diycd_root, names)
    namespaces: list[diyc.NetNS] = []
    try:
        node = factory()
        for _ in range(1024):
            namespaces.append(diyc.NetNS.create(diyc_names.netns()))
        subnet = free_subnet(21)  # 2045 addresses: the pool is not what runs out
        with node.client() as client:
            network = client.create_network(names.network(), str(subnet), bridge=names.bridge())
            with ThreadPoolExecutor(16) as pool:
                attachments = list(pool.map(lambda ns: client.attach(network.name, netns=ns.name),
                                            namespaces[:1023]))
        yield FullBridge(node, network, subnet, namespaces, attachments)
    finally:
        problems = factory.tear_down()
        for ns in namespaces:
            ns.remove()
        if problems:
            pytest.fail("full_bridge teardown:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.mark.slow
def test_1024th_port_of_a_bridge(full_bridge: FullBridge) -> None:
    """A bridge takes 1023 ports; the 1024th attach is RESOURCE_EXHAUSTED before anything is made.

    The kernel would refuse the 1024th port itself (EXFULL) only after the
    veth pair exists; diycd must refuse first, with a status that says why.
    """
    node, network, attachments = full_bridge.node, full_bridge.network, full_bridge.attachments
    assert len({a.ip for a in attachments}) == 1023 and len({a.host_ifname for a in attachments}) == 1023
    assert all(ipaddress.ip_interface(a.ip).ip in full_bridge.subnet for a in attachments)
    links_before = set(node.links())
    assert len(links_before) == 1024

    last = full_bridge.namespaces[-1]
    with node.client() as client:
        with pytest.raises(DiycError) as full:
            client.attach(network.name, netns=last.name)
        assert full.value.code == "RESOURCE_EXHAUSTED" and "1023" in str(full.value), full.value
        assert set(node.links()) == links_before, "the refused attach made a link"
        assert netns_links(last) == ["lo"]
        assert client.get_network(network.name).attachment_count == 1023
        assert len(client.list_attachments(network.name, page_size=1000)) == 1023
    print(f"1024th attach: {full.value.code}: {full.value}")


def _softnet_drops() -> int:
    """Packets the kernel dropped because a CPU's input backlog was full (all CPUs)."""
    with open("/proc/net/softnet_stat", encoding="ascii") as stat:
        return sum(int(line.split()[1], 16) for line in stat)


@pytest.mark.slow
def test_full_bridge_reaches_its_gateway(full_bridge: FullBridge) -> None:
    """Every namespace on a bridge with 1023 ports can still reach its gateway.

    diycd accepts 1023 ports, so a network that full must work. A broadcast
    (the ARP request for the gateway) is flooded to every port at once, each
    copy queued on the CPU's input backlog (net.core.netdev_max_backlog,
    1000 by default), so with ~1000 ports the flood fills it and the ARP
    reply is dropped along with the tail of the flood.
    """
    backlog = Path("/proc/sys/net/core/netdev_max_backlog").read_text().strip()
    drops = _softnet_drops()
    failures = []
    for i in (0, 511, 1022):
        ns = full_bridge.namespaces[i]
        try:
            assert_reachable(ns, full_bridge.network.gateway, count=1, timeout=1.0, within=3.0)
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, ("\n".join(failures) + f"\nbacklog drops meanwhile: {_softnet_drops() - drops} "
                          f"(net.core.netdev_max_backlog = {backlog})")
