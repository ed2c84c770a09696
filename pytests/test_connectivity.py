"""Real packets between namespaces: bridges, routers, the issue's example."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import diyc
from diyc.pytest_plugin import (
    CleanupRegistry,
    NameAllocator,
    PointToPoint,
    Star,
    assert_reachable,
    assert_unreachable,
)
from iptool import IpTool

pytestmark = pytest.mark.root

MakeStar = Callable[..., Star]


def test_issue_example(diyc_names: NameAllocator, diyc_cleanup: CleanupRegistry) -> None:
    """The example from the issue, with run-unique names instead of t-*."""
    t_a, t_b = diyc_names.netns(), diyc_names.netns()
    t_br, t_va, t_vb = diyc_names.link("b"), diyc_names.link("v"), diyc_names.link("v")
    for name in (t_a, t_b):
        diyc_cleanup.track_netns(name)
    for name in (t_br, t_va, t_vb):
        diyc_cleanup.track_link(name)

    with diyc.NetNS.create(t_a) as a, diyc.NetNS.create(t_b) as b:
        with diyc.IPRoute() as host:
            host.bridge_add(t_br, mtu=1500)
            host.veth_add(t_va, peer="eth0", peer_netns=a)
            host.link_set(t_va, master=t_br, state="up")
            host.veth_add(t_vb, peer="eth0", peer_netns=b)
            host.link_set(t_vb, master=t_br, state="up")
            ports = {name: host.get_link(name) for name in (t_va, t_vb)}
        with diyc.IPRoute(netns=a) as ipr:
            ipr.addr_add("eth0", "10.77.0.2/24"); ipr.link_set("eth0", state="up")
            ipr.route_add("default", via="10.77.0.1")
            eth0 = ipr.get_link("eth0")
        with diyc.IPRoute(netns=b) as ipr:
            ipr.addr_add("eth0", "10.77.0.3/24"); ipr.link_set("eth0", state="up")
            ipr.route_add("default", via="10.77.0.1")
        result = diyc.ping(a, "10.77.0.3", count=3, timeout=1.0)
        back = diyc.ping(b, "10.77.0.2", count=3, timeout=1.0)
        with diyc.IPRoute() as host:
            host.link_del(t_br)
            assert host.find_link(t_br) is None
        # With the bridge gone the two namespaces are cut apart.
        cut = diyc.ping(a, "10.77.0.3", count=1, timeout=0.5)

    assert (result.sent, result.received) == (3, 3)
    assert (back.sent, back.received) == (3, 3)
    assert len(result.rtts_ms) == 3
    assert all(0.0 < rtt < 1000.0 for rtt in result.rtts_ms)
    assert cut.received == 0
    assert (eth0.name, eth0.kind, eth0.state, eth0.mtu) == ("eth0", "veth", "up", 1500)
    assert all(port.master == t_br and port.state == "up" and port.kind == "veth" for port in ports.values())
    assert t_a not in diyc.NetNS.list() and t_b not in diyc.NetNS.list()


def test_star_every_pair_native_ping(make_star: MakeStar) -> None:
    star = make_star(4)
    assert len(star) == 4 and len(set(star.addresses)) == 4
    assert star.addresses == [star.host(n) for n in range(2, 6)]
    for source, target in star.ordered_pairs():
        result = assert_reachable(source.netns, target.address, count=2)
        assert (result.sent, result.received, len(result.rtts_ms)) == (2, 2, 2)


def test_star_every_pair_iputils_ping(make_star: MakeStar, iproute2: IpTool) -> None:
    star = make_star(4)
    failures = []
    for source, target in star.ordered_pairs():
        proc = iproute2.ping(source.netns, target.address)
        if proc.returncode != 0 or " 0% packet loss" not in proc.stdout:
            failures.append(f"{source.name} -> {target.address}: rc={proc.returncode} {proc.stdout[-120:]!r}")
    assert not failures, "\n".join(failures)


def test_star_members_reach_host_gateway(make_star: MakeStar, iproute2: IpTool) -> None:
    star = make_star(2)
    with diyc.IPRoute() as host:
        bridge = host.get_link(star.bridge)
        assert bridge.kind == "bridge"
        assert f"{star.gateway}/24" in {addr.cidr for addr in host.addrs(star.bridge)}
        for member in star:
            assert host.get_link(member.host_ifname).master == star.bridge
    for member in star:
        assert_reachable(member.netns, star.gateway)
        with diyc.IPRoute(netns=member.netns) as ipr:
            [default] = [route for route in ipr.routes(family=4) if route.dst == "default"]
        assert (default.gateway, default.dev) == (star.gateway, "eth0")
    assert iproute2.ping(star[0].netns, star.gateway).returncode == 0


def test_ping_unanswered_is_a_result_not_an_error(make_star: MakeStar) -> None:
    star = make_star(1, host_gateway=False)
    silent = diyc.ping(star[0].netns, star.host(250), count=2, timeout=0.3)
    assert (silent.received, silent.rtts_ms) == (0, [])
    assert silent.sent <= 2
    # No route at all: still a result.
    no_route = diyc.ping(star[0].netns, "10.255.255.1", count=1, timeout=0.3)
    assert no_route.received == 0


def test_loopback_answers_inside_namespace(netns: diyc.NetNS) -> None:
    assert_reachable(netns, "127.0.0.1")
    assert_reachable(netns, "::1")


def test_bridge_port_down_cuts_member_off(make_star: MakeStar) -> None:
    star = make_star(2, host_gateway=False)
    source, target = star[0], star[1]
    assert_reachable(source.netns, target.address)
    with diyc.IPRoute() as host:
        host.link_set(target.host_ifname, state="down")
    assert_unreachable(source.netns, target.address)
    with diyc.IPRoute() as host:
        host.link_set(target.host_ifname, state="up")
    assert_reachable(source.netns, target.address, within=5.0)


def test_separate_bridges_same_subnet_are_isolated(make_star: MakeStar) -> None:
    """Same /24 on two bridges: only a real L2 join could carry the ping."""
    left = make_star(2, host_gateway=False)
    right = make_star(2, host_gateway=False, subnet=left.subnet, first_host=10)
    for star in (left, right):
        for source, target in star.ordered_pairs():
            assert_reachable(source.netns, target.address)
    for source in left:
        for target in right:
            assert_unreachable(source.netns, target.address)
            assert_unreachable(target.netns, source.address)


def set_default_routes(star: Star) -> None:
    for member in star:
        with diyc.IPRoute(netns=member.netns) as ipr:
            ipr.route_add("default", via=star.gateway)


def test_router_namespace_forwards_only_with_ip_forward(
    make_star: MakeStar, make_netns: Callable[..., diyc.NetNS], iproute2: IpTool
) -> None:
    left, right = make_star(2, host_gateway=False), make_star(2, host_gateway=False)
    for star in (left, right):
        set_default_routes(star)
    # Two bridges and no router: no path across.
    assert_unreachable(left[0].netns, right[0].address)

    router = make_netns()
    left.attach(router, ifname="eth0", host_number=1)
    right.attach(router, ifname="eth1", host_number=1)
    diyc.sysctl_set(router, "net.ipv4.ip_forward", "0")
    assert diyc.sysctl_get(router, "net.ipv4.ip_forward").strip() == "0"
    assert_reachable(left[0].netns, left.gateway)
    assert_reachable(right[0].netns, right.gateway)
    assert_unreachable(left[0].netns, right[0].address)

    diyc.sysctl_set(router, "net.ipv4.ip_forward", "1")
    assert diyc.sysctl_get(router, "net.ipv4.ip_forward").strip() == "1"
    for source in left:
        for target in right:
            assert_reachable(source.netns, target.address)
            assert_reachable(target.netns, source.address)
    proc = iproute2.ping(left[1].netns, right[1].address)
    assert proc.returncode == 0, proc.stdout

    diyc.sysctl_set(router, "net.ipv4.ip_forward", "0")
    assert_unreachable(right[0].netns, left[0].address)


def test_point_to_point_ipv4(make_p2p: Callable[..., PointToPoint]) -> None:
    link = make_p2p()
    assert_reachable(link.a, link.address_b, count=3)
    assert_reachable(link.b, link.address_a, count=3)
    with diyc.IPRoute(netns=link.a) as ipr:
        assert ipr.get_link("eth0").kind == "veth"
        assert f"{link.address_a}/24" in {addr.cidr for addr in ipr.addrs("eth0")}


def test_assert_helpers_name_both_ends(make_star: MakeStar) -> None:
    star = make_star(1, host_gateway=False)
    member = star[0]
    with pytest.raises(AssertionError) as excinfo:
        assert_reachable(member.netns, star.host(250), count=1, timeout=0.2)
    assert member.netns.name in str(excinfo.value) and star.host(250) in str(excinfo.value)
    assert "0/1" in str(excinfo.value)
    with pytest.raises(AssertionError) as excinfo:
        assert_unreachable(member.netns, "127.0.0.1")
    assert member.netns.name in str(excinfo.value) and "127.0.0.1" in str(excinfo.value)
