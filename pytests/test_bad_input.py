"""Bad input reaching the kernel-facing API: right exception, nothing left behind."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TypeAlias

import pytest

import diyc
from diyc.pytest_plugin import CleanupRegistry, NameAllocator
from iptool import IpTool

pytestmark = pytest.mark.root

HostGuard: TypeAlias = Callable[[], AbstractContextManager[None]]


def bad_ifnames(prefix: str) -> list[str]:
    return [
        prefix + "x" * (16 - len(prefix)),  # 16 bytes
        f"{prefix}/x",
        f"{prefix} x",
        f"{prefix}:x",
        f"{prefix}\tx",
        f"{prefix}\0x",
        "",
        ".",
        "..",
        "all",
        "default",
    ]


@pytest.fixture
def tracked_bad_names(diyc_names: NameAllocator, diyc_cleanup: CleanupRegistry) -> list[str]:
    """Invalid names, registered anyway in case the core wrongly creates one."""
    names = bad_ifnames(diyc_names.prefix)
    for name in names:
        if "\0" not in name and "/" not in name and name not in ("", ".", ".."):
            try:
                diyc_cleanup.track_link(name)
            except RuntimeError:
                pytest.skip(f"host already has a link named {name!r}")
    return names


def test_bridge_add_rejects_bad_names(tracked_bad_names: list[str], host_unchanged: HostGuard) -> None:
    with host_unchanged(), diyc.IPRoute() as host:
        for name in tracked_bad_names:
            with pytest.raises(diyc.InvalidArgumentError) as excinfo:
                host.bridge_add(name, mtu=1500)
            assert excinfo.value.code == "INVALID_ARGUMENT", repr(name)


def test_veth_add_rejects_bad_names(
    tracked_bad_names: list[str],
    diyc_names: NameAllocator,
    diyc_cleanup: CleanupRegistry,
    netns: diyc.NetNS,
    host_unchanged: HostGuard,
) -> None:
    good = diyc_names.link("v")
    diyc_cleanup.track_link(good)
    with host_unchanged(), diyc.IPRoute() as host:
        for bad in tracked_bad_names:
            with pytest.raises(diyc.InvalidArgumentError):
                host.veth_add(bad, peer="eth0", peer_netns=netns)
            with pytest.raises(diyc.InvalidArgumentError):
                host.veth_add(good, peer=bad, peer_netns=netns)
            with pytest.raises(diyc.InvalidArgumentError):
                host.veth_add(good, peer=bad)
        assert host.find_link(good) is None
    with diyc.IPRoute(netns=netns) as ipr:
        assert [link.name for link in ipr.links()] == ["lo"]


def test_link_set_rejects_bad_rename_and_values(netns: diyc.NetNS, diyc_names: NameAllocator) -> None:
    with diyc.IPRoute(netns=netns) as ipr:
        ipr.veth_add("va", peer="vb")
        for bad in bad_ifnames(diyc_names.prefix):
            with pytest.raises(diyc.InvalidArgumentError):
                ipr.link_set("va", ifname=bad)
        for bad_mac in ("02:00:00:00:00", "02:00:00:00:00:0g", "0200.0000.0001", "02-00-00-00-00-01"):
            with pytest.raises(diyc.InvalidArgumentError):
                ipr.link_set("va", address=bad_mac)
        with pytest.raises(ValueError):
            ipr.link_set("va", state="sideways")
        assert sorted(link.name for link in ipr.links()) == ["lo", "va", "vb"]


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "10.1/8", "300.1.1.1/24", "010.0.0.1/8", "1.2.3.4 /24", "10.0.0.0/",
                                  "fd00::/129", "fd00:::1/64"])
def test_addr_add_rejects_bad_cidr(netns: diyc.NetNS, cidr: str, iproute2: IpTool) -> None:
    with diyc.IPRoute(netns=netns) as ipr:
        with pytest.raises(diyc.InvalidArgumentError):
            ipr.addr_add("lo", cidr)
        with pytest.raises(diyc.InvalidArgumentError):
            ipr.addr_del("lo", cidr)
        assert {addr.cidr for addr in ipr.addrs("lo")} == {"127.0.0.1/8", "::1/128"}
    assert iproute2.addrs("lo", netns) == {"127.0.0.1/8", "::1/128"}


@pytest.mark.parametrize(
    ("dst", "kwargs"),
    [
        ("10.9.0.0/33", {"dev": "lo"}),
        ("10.1/8", {"dev": "lo"}),
        ("300.1.1.0/24", {"dev": "lo"}),
        ("10.9.0.0/16", {"via": "10.1"}),
        ("10.9.0.0/16", {"via": "300.1.1.1"}),
        ("10.9.0.0/16", {"via": "10.0.0.1/32"}),
        ("default", {"via": "fd00::1x"}),
        ("10.9.0.5/16", {"dev": "lo"}),  # host bits set in a destination
        ("fd00:99::/64", {"via": "10.0.0.1"}),  # families disagree
    ],
)
def test_route_add_rejects_bad_input(netns: diyc.NetNS, dst: str, kwargs: dict[str, str]) -> None:
    with diyc.IPRoute(netns=netns) as ipr:
        before = ipr.routes(family=4) + ipr.routes(family=6)
        with pytest.raises(diyc.InvalidArgumentError):
            ipr.route_add(dst, **kwargs)
        after = ipr.routes(family=4) + ipr.routes(family=6)
    assert [(r.dst, r.gateway, r.dev) for r in after] == [(r.dst, r.gateway, r.dev) for r in before]


def test_duplicate_bridge(make_bridge: Callable[..., diyc.Link], host_unchanged: HostGuard) -> None:
    original = make_bridge(mtu=1400)
    with host_unchanged(), diyc.IPRoute() as host:
        with pytest.raises(diyc.AlreadyExistsError) as excinfo:
            host.bridge_add(original.name, mtu=1500)
        assert excinfo.value.code == "ALREADY_EXISTS"
        still = host.get_link(original.name)
    assert (still.index, still.mtu, still.kind) == (original.index, 1400, "bridge")


def test_duplicate_veth_names(
    make_bridge: Callable[..., diyc.Link],
    netns: diyc.NetNS,
    diyc_names: NameAllocator,
    diyc_cleanup: CleanupRegistry,
    host_unchanged: HostGuard,
) -> None:
    taken = make_bridge()
    fresh = diyc_names.link("v")
    diyc_cleanup.track_link(fresh)
    with diyc.IPRoute(netns=netns) as ipr:
        ipr.bridge_add("eth0", mtu=1500)  # occupies the peer's name inside netns
    with host_unchanged(), diyc.IPRoute() as host:
        with pytest.raises(diyc.AlreadyExistsError):
            host.veth_add(taken.name, peer="eth0", peer_netns=netns)
        with pytest.raises(diyc.AlreadyExistsError):
            host.veth_add(fresh, peer="eth0", peer_netns=netns)
        with pytest.raises(diyc.AlreadyExistsError):
            host.veth_add(fresh, peer=taken.name)
        assert host.find_link(fresh) is None
        assert host.get_link(taken.name).kind == "bridge"
    with diyc.IPRoute(netns=netns) as ipr:
        assert ipr.get_link("eth0").kind == "bridge"
        assert sorted(link.name for link in ipr.links()) == ["eth0", "lo"]


def test_duplicate_netns(netns: diyc.NetNS, host_unchanged: HostGuard) -> None:
    with host_unchanged(), pytest.raises(diyc.AlreadyExistsError):
        diyc.NetNS.create(netns.name)
    assert os.stat(netns.path).st_ino == os.fstat(netns.fd).st_ino


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", "x" * 256, "a\0b"])
def test_netns_create_rejects_bad_names(name: str, host_unchanged: HostGuard) -> None:
    with host_unchanged(), pytest.raises(diyc.InvalidArgumentError):
        diyc.NetNS.create(name)


def test_missing_namespace(
    diyc_names: NameAllocator, diyc_cleanup: CleanupRegistry, host_unchanged: HostGuard
) -> None:
    missing = diyc_names.netns()
    name = diyc_names.link("v")
    diyc_cleanup.track_link(name)
    with host_unchanged():
        expect_missing_namespace(missing, name)
    assert missing not in diyc.NetNS.list()


def expect_missing_namespace(missing: str, name: str) -> None:
    with pytest.raises(diyc.NotFoundError):
        diyc.NetNS.open(missing)
    with pytest.raises(diyc.NotFoundError):
        diyc.IPRoute(netns=missing)
    with pytest.raises(diyc.NotFoundError):
        diyc.sysctl_get(missing, "net.ipv4.ip_forward")
    with pytest.raises(diyc.NotFoundError):
        diyc.ping(missing, "127.0.0.1", count=1, timeout=0.2)
    with diyc.IPRoute() as host:
        with pytest.raises(diyc.NotFoundError):
            host.veth_add(name, peer="eth0", peer_netns=missing)
        assert host.find_link(name) is None


@pytest.mark.parametrize("handle", ["object", "name"])
def test_veth_into_removed_namespace(
    handle: str,
    make_netns: Callable[..., diyc.NetNS],
    diyc_names: NameAllocator,
    diyc_cleanup: CleanupRegistry,
    iproute2: IpTool,
    host_unchanged: HostGuard,
) -> None:
    ns = make_netns()
    removed_name = ns.name
    ns.remove()
    target: diyc.NetNS | str = ns if handle == "object" else removed_name
    name = diyc_names.link("v")
    diyc_cleanup.track_link(name)
    with host_unchanged(), diyc.IPRoute() as host:
        with pytest.raises((diyc.NotFoundError, diyc.InvalidArgumentError)):
            host.veth_add(name, peer="eth0", peer_netns=target)
        assert host.find_link(name) is None
    assert name not in iproute2.link_names()
    assert removed_name not in diyc.NetNS.list()


def test_missing_links(netns: diyc.NetNS) -> None:
    with diyc.IPRoute(netns=netns) as ipr:
        ipr.veth_add("va", peer="vb")
        for call in (
            lambda: ipr.get_link("nope0"),
            lambda: ipr.link_del("nope0"),
            lambda: ipr.link_set("nope0", state="up"),
            lambda: ipr.link_set("va", master="nope0"),
            lambda: ipr.addr_add("nope0", "10.0.0.1/24"),
            lambda: ipr.route_add("10.9.0.0/16", dev="nope0"),
        ):
            with pytest.raises(diyc.NotFoundError):
                call()
        assert ipr.get_link("va").master is None


@pytest.mark.parametrize(
    "key",
    ["net/../../../etc/hostname", "net.ipv4..ip_forward", "../net/ipv4/ip_forward", "/net/ipv4/ip_forward", "",
     "net.ipv4.ip forward", "net.ipv4.ip_forward\0", "net.ipv4.*"],
)
def test_sysctl_bad_keys(netns: diyc.NetNS, key: str) -> None:
    with pytest.raises(diyc.InvalidArgumentError):
        diyc.sysctl_get(netns, key)
    if ".." not in key:  # never risk a write outside /proc/sys should validation regress
        with pytest.raises(diyc.InvalidArgumentError):
            diyc.sysctl_set(netns, key, "1")


def test_sysctl_missing_key(netns: diyc.NetNS) -> None:
    with pytest.raises(diyc.NotFoundError):
        diyc.sysctl_get(netns, "net.ipv4.no_such_knob")


@pytest.mark.parametrize("address", ["300.1.1.1", "10.1", "", "fd00:::1", "localhost"])
def test_ping_rejects_bad_address(netns: diyc.NetNS, address: str) -> None:
    with pytest.raises(diyc.InvalidArgumentError):
        diyc.ping(netns, address, count=1, timeout=0.2)


@pytest.mark.parametrize(("count", "timeout"), [(0, 1.0), (-1, 1.0), (1, 0.0), (1, -1.0), (1, float("nan"))])
def test_ping_rejects_bad_count_or_timeout(netns: diyc.NetNS, count: int, timeout: float) -> None:
    with pytest.raises(diyc.InvalidArgumentError):
        diyc.ping(netns, "127.0.0.1", count=count, timeout=timeout)


@pytest.mark.parametrize("mtu", [67, 65536])
def test_bridge_add_bad_mtu_leaves_nothing(
    mtu: int, diyc_names: NameAllocator, diyc_cleanup: CleanupRegistry, host_unchanged: HostGuard
) -> None:
    name = diyc_names.link("b")
    diyc_cleanup.track_link(name)
    with host_unchanged(), diyc.IPRoute() as host:
        with pytest.raises(diyc.InvalidArgumentError):
            host.bridge_add(name, mtu=mtu)
        assert host.find_link(name) is None


def test_link_set_bad_mtu_keeps_old_value(netns: diyc.NetNS) -> None:
    with diyc.IPRoute(netns=netns) as ipr:
        ipr.veth_add("va", peer="vb")
        for mtu in (67, 1 << 20):
            with pytest.raises(diyc.InvalidArgumentError):
                ipr.link_set("va", mtu=mtu)
        assert ipr.get_link("va").mtu == 1500
