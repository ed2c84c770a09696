"""Drift: things changed behind diycd's back are reported by Check, and Repair
restores exactly diyc's own objects, however often it runs."""

from __future__ import annotations

import grpc
import pytest

import diyc
from diyc.client import Client
from diyc.daemon import DiycdProcess
from diyc.pytest_plugin import assert_reachable
from diyc.v1 import network_pb2, node_pb2_grpc
from diycd_support import RunNames, create_network, diyc_links, eventually, nft

pytestmark = pytest.mark.root

Kind = network_pb2.Drift.Kind


@pytest.fixture
def stub(diycd: DiycdProcess) -> node_pb2_grpc.NodeStub:
    return node_pb2_grpc.NodeStub(grpc.insecure_channel(f"unix:{diycd.socket}"))


def drifts(stub: node_pb2_grpc.NodeStub) -> list[tuple[str, str, str]]:
    reply = stub.Check(network_pb2.CheckRequest(), timeout=30)
    return sorted((Kind.Name(d.kind), d.network, d.attachment) for d in reply.drifts)


def test_clean_node_has_no_drift(client: Client, names: RunNames, stub, make_netns) -> None:
    network = create_network(client, names)
    client.attach(network.name, netns=make_netns().name)
    assert drifts(stub) == []
    assert list(stub.Repair(network_pb2.RepairRequest(), timeout=30).actions) == []


def test_every_kind_of_drift_is_reported_and_repaired(client: Client, names: RunNames, stub, make_netns,
                                                      nft_table: str) -> None:
    a_net = create_network(client, names)
    b_net = create_network(client, names)
    a, b, doomed = make_netns(), make_netns(), make_netns()
    client.attach(a_net.name, netns=a.name)
    kept = client.attach(b_net.name, netns=b.name)
    gone = client.attach(b_net.name, netns=doomed.name)
    # Forwarding is on while diyc has a non-internal network; Repair turns it
    # back on below.
    with diyc.IPRoute() as host:
        host.link_del(a_net.bridge)        # a bridge deleted
        host.link_del(kept.host_ifname)    # a host veth deleted (its peer goes too)
    nft("flush", "table", "inet", nft_table)  # the ruleset flushed
    diyc.sysctl_set(None, "net.ipv4.ip_forward", "0")
    doomed.remove()                        # a namespace deleted
    assert eventually(lambda: gone.host_ifname not in diyc_links(names.prefix))

    found = drifts(stub)
    kinds = {kind for kind, _, _ in found}
    assert {"BRIDGE_MISSING", "FIREWALL", "IP_FORWARD_OFF", "HOST_VETH_MISSING", "NAMESPACE_GONE"} <= kinds, found
    assert ("BRIDGE_MISSING", a_net.name, "") in found
    assert ("HOST_VETH_MISSING", b_net.name, kept.host_ifname) in found
    assert ("NAMESPACE_GONE", b_net.name, gone.host_ifname) in found

    repaired = stub.Repair(network_pb2.RepairRequest(), timeout=30)
    assert not [x for x in repaired.actions if x.startswith("failed")], list(repaired.actions)
    assert drifts(stub) == []
    # Idempotent: nothing left to do, and nothing duplicated.
    assert list(stub.Repair(network_pb2.RepairRequest(), timeout=30).actions) == []
    links = diyc_links(names.prefix)
    assert a_net.bridge in links and kept.host_ifname in links and gone.host_ifname not in links
    assert diyc.sysctl_get(None, "net.ipv4.ip_forward") == "1"
    listing = nft("list", "table", "inet", nft_table).stdout
    assert listing.count(f"{a_net.subnet} ") == 1 and listing.count(f"{b_net.subnet} ") == 1
    # The restored objects carry traffic again, and the released address is free.
    assert_reachable(a, a_net.gateway, within=3)
    assert_reachable(b, b_net.gateway, within=3)
    assert {x.ip for x in client.list_attachments(b_net.name)} == {kept.ip}
