"""Links: bridges, veth pairs, link_set and lookups, checked against `ip`."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import diyc
from diyc.pytest_plugin import CleanupRegistry, NameAllocator, VethPair
from iptool import IpTool

pytestmark = pytest.mark.root


def test_bridge_add_in_host(diyc_names: NameAllocator, diyc_cleanup: CleanupRegistry, iproute2: IpTool) -> None:
    name = diyc_names.link("b")
    diyc_cleanup.track_link(name)
    with diyc.IPRoute() as ipr:
        created = ipr.bridge_add(name, mtu=1400)
        fetched = ipr.get_link(name)
    for link in (created, fetched):
        assert (link.name, link.kind, link.mtu, link.state, link.master) == (name, "bridge", 1400, "up", None)
    assert created.index == fetched.index > 0
    seen = iproute2.link(name)
    assert seen is not None
    assert seen["ifindex"] == created.index
    assert seen["mtu"] == 1400
    assert seen["linkinfo"]["info_kind"] == "bridge"
    assert "UP" in seen["flags"]
    assert seen["address"] == fetched.address.lower()


def test_bridge_inside_namespace_stays_there(netns: diyc.NetNS, iproute2: IpTool) -> None:
    with diyc.IPRoute(netns=netns) as ipr:
        link = ipr.bridge_add("br0", mtu=9000)
        assert ipr.get_link("br0").mtu == 9000
    assert link.kind == "bridge"
    assert iproute2.link("br0", netns)["mtu"] == 9000
    with diyc.IPRoute() as host:
        assert host.find_link("br0") is None


def test_veth_peer_created_inside_namespace(
    diyc_names: NameAllocator, diyc_cleanup: CleanupRegistry, netns: diyc.NetNS, iproute2: IpTool
) -> None:
    name = diyc_names.link("v")
    diyc_cleanup.track_link(name)
    with diyc.IPRoute() as host:
        near = host.veth_add(name, peer="eth0", peer_netns=netns)
        assert near.name == name and near.kind == "veth"
        assert host.get_link(name).index == near.index
    with diyc.IPRoute(netns=netns) as ipr:
        peer = ipr.get_link("eth0")
        assert peer.kind == "veth"
        assert sorted(link.name for link in ipr.links()) == ["eth0", "lo"]
        assert ipr.find_link(name) is None
    seen = iproute2.link("eth0", netns)
    assert seen is not None and seen["linkinfo"]["info_kind"] == "veth"
    assert seen["ifindex"] == peer.index
    assert iproute2.link(name)["linkinfo"]["info_kind"] == "veth"


def test_veth_peer_netns_by_name(
    diyc_names: NameAllocator, diyc_cleanup: CleanupRegistry, netns: diyc.NetNS
) -> None:
    name = diyc_names.link("v")
    diyc_cleanup.track_link(name)
    with diyc.IPRoute() as host:
        host.veth_add(name, peer="eth1", peer_netns=netns.name)
    with diyc.IPRoute(netns=netns.name) as ipr:
        assert ipr.get_link("eth1").kind == "veth"


def test_veth_both_ends_in_one_namespace(netns: diyc.NetNS, iproute2: IpTool) -> None:
    with diyc.IPRoute(netns=netns) as ipr:
        near = ipr.veth_add("va", peer="vb")
        peer = ipr.get_link("vb")
        assert (near.kind, peer.kind) == ("veth", "veth")
        assert {"lo", "va", "vb"} == {link.name for link in ipr.links()}
        ipr.link_del("va")
        # Deleting one end of a veth deletes both.
        assert ipr.find_link("va") is None
        assert ipr.find_link("vb") is None
    assert iproute2.link_names(netns) == {"lo"}


def test_host_veth_pair_fixture(veth_pair: VethPair) -> None:
    assert veth_pair.netns is None and veth_pair.peer_netns is not None
    with diyc.IPRoute() as host:
        assert host.get_link(veth_pair.name).state == "up"
    with diyc.IPRoute(netns=veth_pair.peer_netns) as ipr:
        assert ipr.get_link(veth_pair.peer).state == "up"


@pytest.fixture
def wired(netns: diyc.NetNS) -> diyc.NetNS:
    """A namespace holding bridge br0 and veth va (peer vb), all down."""
    with diyc.IPRoute(netns=netns) as ipr:
        ipr.bridge_add("br0", mtu=1500)
        ipr.link_set("br0", state="down")
        ipr.veth_add("va", peer="vb")
    return netns


def test_link_set_master_and_nomaster(wired: diyc.NetNS, iproute2: IpTool) -> None:
    with diyc.IPRoute(netns=wired) as ipr:
        assert ipr.get_link("va").master is None
        ipr.link_set("va", master="br0")
        assert ipr.get_link("va").master == "br0"
        assert iproute2.link("va", wired)["master"] == "br0"
        ipr.link_set("va", nomaster=True)
        assert ipr.get_link("va").master is None
        assert "master" not in iproute2.link("va", wired)


def test_link_set_up_and_down(wired: diyc.NetNS, iproute2: IpTool) -> None:
    with diyc.IPRoute(netns=wired) as ipr:
        assert ipr.get_link("va").state == "down"
        ipr.link_set("va", state="up")
        ipr.link_set("vb", state="up")
        assert ipr.get_link("va").state == "up"
        assert ipr.get_link("vb").state == "up"
        assert "UP" in iproute2.link("va", wired)["flags"]
        ipr.link_set("va", state="down")
        assert ipr.get_link("va").state == "down"
        assert "UP" not in iproute2.link("va", wired)["flags"]


def test_link_set_combined_master_and_state(wired: diyc.NetNS) -> None:
    with diyc.IPRoute(netns=wired) as ipr:
        ipr.link_set("va", master="br0", state="up")
        link = ipr.get_link("va")
    assert (link.master, link.state) == ("br0", "up")


def test_link_set_mtu(wired: diyc.NetNS, iproute2: IpTool) -> None:
    with diyc.IPRoute(netns=wired) as ipr:
        ipr.link_set("va", mtu=1280)
        assert ipr.get_link("va").mtu == 1280
    assert iproute2.link("va", wired)["mtu"] == 1280


def test_link_set_address(wired: diyc.NetNS, iproute2: IpTool) -> None:
    with diyc.IPRoute(netns=wired) as ipr:
        ipr.link_set("va", address="02:d1:7c:00:00:01")
        assert ipr.get_link("va").address.lower() == "02:d1:7c:00:00:01"
        ipr.link_set("va", address="02:D1:7C:00:00:02")
        assert ipr.get_link("va").address.lower() == "02:d1:7c:00:00:02"
    assert iproute2.link("va", wired)["address"] == "02:d1:7c:00:00:02"


def test_link_set_rename(wired: diyc.NetNS, iproute2: IpTool) -> None:
    with diyc.IPRoute(netns=wired) as ipr:
        before = ipr.get_link("va")
        ipr.link_set("va", ifname="renamed0")
        assert ipr.find_link("va") is None
        after = ipr.get_link("renamed0")
        assert (after.index, after.kind) == (before.index, "veth")
    assert "renamed0" in iproute2.link_names(wired)
    assert "va" not in iproute2.link_names(wired)


def test_rename_host_link_then_cleanup(
    diyc_names: NameAllocator,
    diyc_cleanup: CleanupRegistry,
    make_veth: Callable[..., VethPair],
) -> None:
    pair = make_veth(up=False)
    new_name = diyc_names.link("r")
    diyc_cleanup.track_link(new_name)
    with diyc.IPRoute() as host:
        host.link_set(pair.name, ifname=new_name)
        assert host.get_link(new_name).kind == "veth"
        assert host.find_link(pair.name) is None


def test_get_and_find_missing_link(netns: diyc.NetNS) -> None:
    with diyc.IPRoute(netns=netns) as ipr:
        assert ipr.find_link("nope0") is None
        with pytest.raises(diyc.NotFoundError) as excinfo:
            ipr.get_link("nope0")
    assert isinstance(excinfo.value, LookupError)
    assert excinfo.value.code == "NOT_FOUND"


def test_link_del(wired: diyc.NetNS, iproute2: IpTool) -> None:
    with diyc.IPRoute(netns=wired) as ipr:
        ipr.link_del("br0")
        assert ipr.find_link("br0") is None
        assert "br0" not in {link.name for link in ipr.links()}
        with pytest.raises(diyc.NotFoundError):
            ipr.link_del("br0")
    assert "br0" not in iproute2.link_names(wired)


def test_links_lists_everything_with_fields(wired: diyc.NetNS, iproute2: IpTool) -> None:
    with diyc.IPRoute(netns=wired) as ipr:
        ipr.link_set("va", master="br0", mtu=1400)
        links = {link.name: link for link in ipr.links()}
    assert set(links) == {"lo", "br0", "va", "vb"} == iproute2.link_names(wired)
    assert links["br0"].kind == "bridge"
    assert links["va"].kind == links["vb"].kind == "veth"
    assert links["lo"].kind is None
    assert links["va"].master == "br0"
    assert links["vb"].master is None
    assert links["va"].mtu == 1400
    by_ip = {entry["ifname"]: entry for entry in iproute2.json("link", "show", netns=wired)}
    for name, link in links.items():
        assert link.index == by_ip[name]["ifindex"], name
        assert link.mtu == by_ip[name]["mtu"], name


def test_fifteen_byte_name_is_the_limit(
    diyc_names: NameAllocator, diyc_cleanup: CleanupRegistry, iproute2: IpTool
) -> None:
    name = diyc_names.link("b").ljust(15, "x")
    diyc_cleanup.track_link(name)
    with diyc.IPRoute() as host:
        assert host.bridge_add(name, mtu=1500).name == name
        assert host.get_link(name).kind == "bridge"
        with pytest.raises(diyc.InvalidArgumentError):
            host.bridge_add(name + "y", mtu=1500)
        host.link_del(name)
        assert host.find_link(name) is None
    assert name not in iproute2.link_names()


def test_link_set_rename_and_up_in_one_call(wired: diyc.NetNS) -> None:
    with diyc.IPRoute(netns=wired) as ipr:
        ipr.link_set("vb", state="up")
        ipr.link_set("va", ifname="uplink0", state="up", mtu=1400)
        link = ipr.get_link("uplink0")
    assert (link.state, link.mtu, link.kind) == ("up", 1400, "veth")
