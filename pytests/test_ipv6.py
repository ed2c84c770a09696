"""IPv6 over a direct veth and over a bridge (ULA fd00:77::/32 subnets)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest

import diyc
from diyc.pytest_plugin import PointToPoint, Star, assert_reachable, assert_unreachable
from iptool import IpTool

pytestmark = pytest.mark.root

# Long enough for DAD (about one second per address by default) and neighbour
# discovery, short enough that a broken path fails quickly.
SETTLE_S = 6.0


def global_v6(ns: diyc.NetNS, ifname: str = "eth0") -> set[ipaddress.IPv6Address]:
    with diyc.IPRoute(netns=ns) as ipr:
        return {
            ipaddress.IPv6Address(addr.address)
            for addr in ipr.addrs(ifname)
            if addr.family == 6 and not ipaddress.ip_address(addr.address).is_link_local
        }


def test_veth_pair_ipv6_without_dad(make_p2p: Callable[..., PointToPoint], iproute2: IpTool) -> None:
    link = make_p2p(ipv6=True, dad=False)
    assert link.address6_a and link.address6_b
    assert ipaddress.ip_address(link.address6_a) in link.subnet6
    assert diyc.sysctl_get(link.a, "net.ipv6.conf.eth0.accept_dad").strip() == "0"
    assert global_v6(link.a) == {ipaddress.IPv6Address(link.address6_a)}
    # DAD is off, so the very first ping must already get every reply.
    first = assert_reachable(link.a, link.address6_b, count=3)
    assert (first.sent, first.received, len(first.rtts_ms)) == (3, 3, 3)
    assert_reachable(link.b, link.address6_a, count=3)
    proc = iproute2.ping(link.b, link.address6_a)
    assert proc.returncode == 0, proc.stdout


def test_veth_pair_ipv6_with_dad(make_p2p: Callable[..., PointToPoint]) -> None:
    link = make_p2p(ipv6=True, dad=True)
    assert diyc.sysctl_get(link.a, "net.ipv6.conf.eth0.accept_dad").strip() != "0"
    assert_reachable(link.a, link.address6_b, within=SETTLE_S)
    assert_reachable(link.b, link.address6_a, within=SETTLE_S)


def test_bridge_ipv6_every_pair(make_star: Callable[..., Star], iproute2: IpTool) -> None:
    star = make_star(3, ipv6=True)
    assert star.subnet6 is not None and star.gateway6 is not None
    assert len(star.addresses6) == 3
    for source, target in star.ordered_pairs():
        assert target.address6 is not None
        result = assert_reachable(source.netns, target.address6, count=2, within=SETTLE_S)
        assert result.received == 2
    for member in star:
        assert_reachable(member.netns, star.gateway6, within=SETTLE_S)
        with diyc.IPRoute(netns=member.netns) as ipr:
            defaults = [route for route in ipr.routes(family=6) if route.dst == "default"]
        assert [ipaddress.ip_address(route.gateway) for route in defaults] == [ipaddress.ip_address(star.gateway6)]
    proc = iproute2.ping(star[2].netns, star[0].address6 or "")
    assert proc.returncode == 0, proc.stdout


def test_bridge_ipv6_with_dad(make_star: Callable[..., Star]) -> None:
    star = make_star(2, ipv6=True, dad=True, host_gateway=False)
    assert star[1].address6 is not None
    assert_reachable(star[0].netns, star[1].address6, within=SETTLE_S)


def test_ipv6_unreachable_outside_subnet(make_p2p: Callable[..., PointToPoint]) -> None:
    link = make_p2p(ipv6=True)
    assert link.subnet6 is not None
    stranger = str(link.subnet6.network_address + 0x99)
    result = assert_unreachable(link.a, stranger, count=2, timeout=0.3)
    assert result.rtts_ms == []
    assert_unreachable(link.a, "fd00:78::1")  # no route at all
