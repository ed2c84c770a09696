"""Addresses and routes, IPv4 and IPv6, checked against `ip`."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pytest

import diyc
from diyc.pytest_plugin import NameAllocator, NetFactory
from iptool import IpTool

pytestmark = pytest.mark.root


@dataclass(frozen=True)
class Wired:
    """A namespace whose eth0 is up, with a carrier, and addressed."""

    ns: diyc.NetNS
    subnet: ipaddress.IPv4Network
    subnet6: ipaddress.IPv6Network

    def v4(self, number: int) -> str:
        return str(self.subnet.network_address + number)

    def v6(self, number: int) -> str:
        return str(self.subnet6.network_address + number)


@pytest.fixture
def wired(diyc_net: NetFactory, diyc_names: NameAllocator) -> Wired:
    """eth0 of a namespace facing ``peer0`` in the same namespace, both up.

    A carrier matters: routes via a link without one are flagged linkdown.
    DAD is off so IPv6 addresses are final at once.
    """
    ns = diyc_net.netns(dad=False)
    diyc_net.veth("eth0", peer="peer0", netns=ns)
    return Wired(ns, diyc_names.subnet4(), diyc_names.subnet6())


def cidrs(ipr: diyc.IPRoute, ifname: str | None = None) -> set[str]:
    return {addr.cidr for addr in ipr.addrs(ifname)}


def test_addr_add_list_del_ipv4(wired: Wired, iproute2: IpTool) -> None:
    cidr = f"{wired.v4(2)}/24"
    with diyc.IPRoute(netns=wired.ns) as ipr:
        eth0 = ipr.get_link("eth0")
        ipr.addr_add("eth0", cidr)
        [addr] = [addr for addr in ipr.addrs("eth0") if addr.family == 4]
        assert (addr.ifname, addr.index, addr.address, addr.prefixlen, addr.family) == (
            "eth0", eth0.index, wired.v4(2), 24, 4,
        )
        assert addr.cidr == cidr
        assert cidr in cidrs(ipr)  # addrs() without a name lists every link
        assert "127.0.0.1/8" in cidrs(ipr)
        assert cidr in iproute2.addrs("eth0", wired.ns)
        ipr.addr_del("eth0", cidr)
        assert [addr for addr in ipr.addrs("eth0") if addr.family == 4] == []
    assert cidr not in iproute2.addrs("eth0", wired.ns)


def test_addr_add_list_del_ipv6(wired: Wired, iproute2: IpTool) -> None:
    cidr = f"{wired.v6(2)}/64"
    with diyc.IPRoute(netns=wired.ns) as ipr:
        ipr.addr_add("eth0", cidr)
        v6 = [addr for addr in ipr.addrs("eth0") if addr.family == 6]
        global_v6 = [addr for addr in v6 if not ipaddress.ip_address(addr.address).is_link_local]
        assert len(global_v6) == 1
        addr = global_v6[0]
        assert ipaddress.ip_address(addr.address) == ipaddress.ip_address(wired.v6(2))
        assert (addr.prefixlen, addr.ifname) == (64, "eth0")
        assert addr.cidr == cidr
        assert cidr in iproute2.addrs("eth0", wired.ns)
        ipr.addr_del("eth0", cidr)
        assert cidr not in cidrs(ipr, "eth0")
    assert cidr not in iproute2.addrs("eth0", wired.ns)


def test_addrs_several_on_one_link(wired: Wired) -> None:
    wanted = {f"{wired.v4(2)}/24", f"{wired.v4(3)}/24", f"{wired.v6(2)}/64"}
    with diyc.IPRoute(netns=wired.ns) as ipr:
        for cidr in wanted:
            ipr.addr_add("eth0", cidr)
        assert wanted <= cidrs(ipr, "eth0")
        assert {addr.family for addr in ipr.addrs("eth0")} == {4, 6}
        assert not wanted & cidrs(ipr, "peer0")


def test_addr_add_duplicate_and_del_missing(wired: Wired) -> None:
    cidr = f"{wired.v4(2)}/24"
    with diyc.IPRoute(netns=wired.ns) as ipr:
        ipr.addr_add("eth0", cidr)
        with pytest.raises(diyc.AlreadyExistsError):
            ipr.addr_add("eth0", cidr)
        assert [addr.cidr for addr in ipr.addrs("eth0") if addr.family == 4] == [cidr]
        ipr.addr_del("eth0", cidr)
        with pytest.raises(diyc.NotFoundError):
            ipr.addr_del("eth0", cidr)


def find_route(routes: list[diyc.Route], dst: str) -> list[diyc.Route]:
    return [route for route in routes if route.dst == dst]


def test_routes_ipv4(wired: Wired, iproute2: IpTool) -> None:
    gateway = wired.v4(1)
    with diyc.IPRoute(netns=wired.ns) as ipr:
        ipr.addr_add("eth0", f"{wired.v4(2)}/24")
        connected = find_route(ipr.routes(family=4), str(wired.subnet))
        assert [(r.gateway, r.dev, r.family) for r in connected] == [(None, "eth0", 4)]

        ipr.route_add("default", via=gateway)
        ipr.route_add("10.9.0.0/16", dev="eth0")
        ipr.route_add("10.8.0.0/16", via=gateway)
        routes = ipr.routes(family=4)
        assert [(r.gateway, r.dev, r.family) for r in find_route(routes, "default")] == [(gateway, "eth0", 4)]
        assert [(r.gateway, r.dev) for r in find_route(routes, "10.9.0.0/16")] == [(None, "eth0")]
        assert [(r.gateway, r.dev) for r in find_route(routes, "10.8.0.0/16")] == [(gateway, "eth0")]
        assert all(route.family == 4 for route in routes)

        by_ip = {entry["dst"]: entry for entry in iproute2.routes(wired.ns, 4)}
        assert by_ip["default"]["gateway"] == gateway
        assert by_ip["10.9.0.0/16"]["dev"] == "eth0" and "gateway" not in by_ip["10.9.0.0/16"]
        assert by_ip["10.8.0.0/16"]["gateway"] == gateway

        ipr.route_del("default", via=gateway)
        ipr.route_del("10.9.0.0/16", dev="eth0")
        ipr.route_del("10.8.0.0/16", via=gateway)
        remaining = {route.dst for route in ipr.routes(family=4)}
        assert remaining.isdisjoint({"default", "10.9.0.0/16", "10.8.0.0/16"})
        assert str(wired.subnet) in remaining
        with pytest.raises(diyc.NotFoundError):
            ipr.route_del("10.9.0.0/16", dev="eth0")
    seen_by_ip = {entry["dst"] for entry in iproute2.routes(wired.ns, 4)}
    assert seen_by_ip <= remaining
    assert seen_by_ip.isdisjoint({"default", "10.9.0.0/16", "10.8.0.0/16"})


def test_routes_ipv6(wired: Wired, iproute2: IpTool) -> None:
    gateway = wired.v6(1)
    with diyc.IPRoute(netns=wired.ns) as ipr:
        ipr.addr_add("eth0", f"{wired.v6(2)}/64")
        ipr.route_add("default", via=gateway)
        ipr.route_add("fd00:99::/64", dev="eth0")
        routes = ipr.routes(family=6)
        assert all(route.family == 6 for route in routes)
        [default] = find_route(routes, "default")
        assert ipaddress.ip_address(default.gateway) == ipaddress.ip_address(gateway)
        assert default.dev == "eth0"
        [prefix] = find_route(routes, "fd00:99::/64")
        assert (prefix.gateway, prefix.dev) == (None, "eth0")
        assert not find_route(ipr.routes(family=4), "fd00:99::/64")

        by_ip = {entry["dst"]: entry for entry in iproute2.routes(wired.ns, 6)}
        assert by_ip["default"]["gateway"] == gateway
        assert by_ip["fd00:99::/64"]["dev"] == "eth0"

        ipr.route_del("default", via=gateway)
        ipr.route_del("fd00:99::/64", dev="eth0")
        assert not {"default", "fd00:99::/64"} & {route.dst for route in ipr.routes(family=6)}


def test_routes_are_per_namespace(wired: Wired) -> None:
    with diyc.IPRoute() as host:
        host_before = host.routes(family=4)
    with diyc.IPRoute(netns=wired.ns) as ipr:
        ipr.route_add("10.9.0.0/16", dev="eth0")
        assert find_route(ipr.routes(family=4), "10.9.0.0/16")
    with diyc.IPRoute() as host:
        host_after = host.routes(family=4)
    assert len(find_route(host_after, "10.9.0.0/16")) == len(find_route(host_before, "10.9.0.0/16"))


def test_route_via_unreachable_gateway_is_refused(wired: Wired) -> None:
    with diyc.IPRoute(netns=wired.ns) as ipr:
        ipr.addr_add("eth0", f"{wired.v4(2)}/24")
        before = ipr.routes(family=4)
        with pytest.raises(diyc.DiycError) as excinfo:
            ipr.route_add("10.9.0.0/16", via="192.0.2.77")  # not on any connected subnet
        assert not isinstance(excinfo.value, diyc.InvalidArgumentError)  # the input is well-formed
        assert ipr.routes(family=4) == before
