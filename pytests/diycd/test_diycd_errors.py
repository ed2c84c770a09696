"""diycd refuses bad requests with the exact status code, and leaves no debris."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest

import diyc
from diyc.client import Client
from diyc.errors import DiycError, NotFoundError, ResourceExhaustedError
from diyc.pytest_plugin import assert_reachable
from diycd_support import (RunNames, create_network, diyc_links, eventually, host_links, netns_links,
                            settled_diyc_links)

pytestmark = pytest.mark.root

MakeNetns = Callable[..., diyc.NetNS]


def expect(code: str, call: Callable[[], object]) -> DiycError:
    """Runs call and asserts it fails with exactly this status code."""
    __tracebackhide__ = True
    try:
        result = call()
    except DiycError as exc:
        assert exc.code == code, f"expected {code}, got {exc.code}: {exc}"
        return exc
    raise AssertionError(f"expected {code}, but the call succeeded: {result}")


@pytest.mark.parametrize("bad", ["slash/name", "x" * 64, "", "-leading-dash", "sp ace"])
def test_bad_network_names(client: Client, names: RunNames, bad: str) -> None:
    # Run-prefixed where the shape allows it, so a wrongly accepted name is still ours.
    name = {"slash/name": f"{names.prefix}/x", "x" * 64: names.prefix + "x" * (64 - len(names.prefix))}.get(bad, bad)
    expect("INVALID_ARGUMENT", lambda: client.create_network(name, names.subnet(), bridge=names.bridge()))
    assert client.list_networks() == []


@pytest.mark.parametrize("subnet", ["10.0.0.0/33", "10.1/8", "300.1.1.1/24", "10.0.0.5/24", "", "fd00::/64"])
def test_bad_subnets(client: Client, names: RunNames, subnet: str) -> None:
    expect("INVALID_ARGUMENT", lambda: client.create_network(names.network(), subnet, bridge=names.bridge()))
    assert client.list_networks() == []


def test_duplicate_and_overlapping_networks(client: Client, names: RunNames) -> None:
    first = create_network(client, names)
    expect("ALREADY_EXISTS", lambda: create_network(client, names, name=first.name))
    expect("FAILED_PRECONDITION", lambda: create_network(client, names, subnet=first.subnet))
    half = str(next(ipaddress.ip_network(first.subnet).subnets(new_prefix=25)))
    expect("FAILED_PRECONDITION", lambda: create_network(client, names, subnet=half))
    expect("INVALID_ARGUMENT", lambda: create_network(client, names, bridge="b" * 16))
    assert [n.name for n in client.list_networks()] == [first.name]


def test_unknown_network(client: Client, names: RunNames, make_netns: MakeNetns) -> None:
    missing = names.network()
    ns = make_netns()
    with pytest.raises(NotFoundError):
        client.get_network(missing)
    expect("NOT_FOUND", lambda: client.delete_network(missing))
    expect("NOT_FOUND", lambda: client.attach(missing, netns=ns.name))
    assert netns_links(ns) == ["lo"]


def test_attach_argument_errors(client: Client, names: RunNames, make_netns: MakeNetns) -> None:
    network = create_network(client, names)
    ns = make_netns()
    expect("NOT_FOUND", lambda: client.attach(network.name, netns=names.network("gone")))
    expect("INVALID_ARGUMENT", lambda: client.attach(network.name, netns=ns.name, ifname="i" * 16))
    expect("INVALID_ARGUMENT", lambda: client.attach(network.name, netns=ns.name, mac="not-a-mac"))
    assert netns_links(ns) == ["lo"], "a refused attach left an interface behind"
    assert client.list_attachments() == []
    assert settled_diyc_links(names.prefix, {network.bridge}) == {network.bridge}


def test_same_attachment_twice(client: Client, names: RunNames, make_netns: MakeNetns) -> None:
    network = create_network(client, names)
    ns = make_netns()
    first = client.attach(network.name, netns=ns.name)
    expect("ALREADY_EXISTS", lambda: client.attach(network.name, netns=ns.name))
    assert client.list_attachments() == [first]
    # Another interface name makes it a second, legitimate attachment.
    second = client.attach(network.name, netns=ns.name, ifname="eth1")
    assert second.ip != first.ip
    assert netns_links(ns) == ["eth0", "eth1", "lo"]


def test_delete_network_with_attachments(client: Client, names: RunNames, make_netns: MakeNetns) -> None:
    network = create_network(client, names)
    attachments = [client.attach(network.name, netns=make_netns().name) for _ in range(2)]
    expect("FAILED_PRECONDITION", lambda: client.delete_network(network.name))
    assert client.get_network(network.name).attachment_count == 2
    client.delete_network(network.name, force=True)
    links = host_links()
    assert not {a.host_ifname for a in attachments} & set(links), "host veths outlived the network"
    assert network.bridge not in links
    expect("NOT_FOUND", lambda: client.get_network(network.name))
    assert client.list_attachments() == []


def test_detach_is_idempotent(client: Client, names: RunNames, make_netns: MakeNetns) -> None:
    network = create_network(client, names, prefixlen=29)
    never = make_netns()
    client.detach(network.name, netns=never.name)
    client.detach(network.name, netns=names.network("nons"))
    att = client.attach(network.name, netns=never.name)
    client.detach(network.name, netns=never.name)
    client.detach(network.name, netns=never.name)
    assert client.list_attachments() == []
    assert eventually(lambda: netns_links(never) == ["lo"]), netns_links(never)
    assert eventually(lambda: att.host_ifname not in host_links())


def test_detach_after_the_namespace_vanished(client: Client, names: RunNames, make_netns: MakeNetns) -> None:
    network = create_network(client, names, prefixlen=29)
    doomed = make_netns()
    att = client.attach(network.name, netns=doomed.name)
    doomed.remove()  # behind diycd's back: the kernel drops the veth pair
    client.detach(network.name, netns=doomed.name)
    assert client.list_attachments(network.name) == []
    assert client.get_network(network.name).attachment_count == 0
    assert eventually(lambda: att.host_ifname not in host_links())
    # The address is free again: taking it statically succeeds.
    heir = make_netns()
    address = str(ipaddress.ip_interface(att.ip).ip)
    assert client.attach(network.name, netns=heir.name, ip=address).ip == att.ip


def test_pool_exhaustion_and_reuse(client: Client, names: RunNames, make_netns: MakeNetns) -> None:
    network = create_network(client, names, prefixlen=29)  # .1 gateway, .2-.6 for attachments
    namespaces = [make_netns() for _ in range(6)]
    attachments = [client.attach(network.name, netns=ns.name) for ns in namespaces[:5]]
    subnet = ipaddress.ip_network(network.subnet)
    assert sorted(ipaddress.ip_interface(a.ip).ip for a in attachments) == list(subnet.hosts())[1:]
    with pytest.raises(ResourceExhaustedError) as info:
        client.attach(network.name, netns=namespaces[5].name)
    assert info.value.code == "RESOURCE_EXHAUSTED"
    assert netns_links(namespaces[5]) == ["lo"]

    client.detach(network.name, netns=namespaces[2].name)
    reused = client.attach(network.name, netns=namespaces[5].name)
    assert reused.ip == attachments[2].ip
    assert_reachable(namespaces[5], str(ipaddress.ip_interface(attachments[0].ip).ip), within=3)


def test_static_addresses(client: Client, names: RunNames, make_netns: MakeNetns) -> None:
    network = create_network(client, names)
    other_subnet = ipaddress.ip_network(names.subnet())
    subnet = ipaddress.ip_network(network.subnet)
    first, second = make_netns(), make_netns()
    taken = str(subnet.network_address + 10)
    assert client.attach(network.name, netns=first.name, ip=taken).ip == f"{taken}/{subnet.prefixlen}"

    expect("INVALID_ARGUMENT", lambda: client.attach(network.name, netns=second.name,
                                                     ip=str(other_subnet.network_address + 10)))
    expect("ALREADY_EXISTS", lambda: client.attach(network.name, netns=second.name, ip=taken))
    for reserved in (network.gateway, str(subnet.network_address), str(subnet.broadcast_address)):
        expect("INVALID_ARGUMENT", lambda: client.attach(network.name, netns=second.name, ip=reserved))
    expect("INVALID_ARGUMENT", lambda: client.attach(network.name, netns=second.name, ip="10.1.2"))
    assert netns_links(second) == ["lo"], "a refused attach left an interface behind"
    assert len(client.list_attachments(network.name)) == 1


def test_custom_gateway(client: Client, names: RunNames, make_netns: MakeNetns) -> None:
    subnet = ipaddress.ip_network(names.subnet())
    gateway = str(subnet.broadcast_address - 1)
    network = create_network(client, names, subnet=str(subnet), gateway=gateway)
    assert network.gateway == gateway
    ns = make_netns()
    att = client.attach(network.name, netns=ns.name)
    assert att.gateway == gateway and ipaddress.ip_interface(att.ip).ip != ipaddress.ip_address(gateway)
    assert_reachable(ns, gateway, within=3)
    outside = str(ipaddress.ip_network(names.subnet()).network_address + 1)
    expect("INVALID_ARGUMENT", lambda: create_network(client, names, gateway=outside))
