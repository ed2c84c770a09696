"""Attachment keys: a caller's own name for an attachment (what CNI runtimes use).

A key is unique per network together with ifname, lets the caller detach
after the namespace is gone, filters ListAttachments, survives a restart,
and drives CollectAttachments (garbage collection of keyed attachments).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

import diyc
from diyc.client import Client
from diyc.daemon import DiycdProcess
from diyc.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from diycd_support import RunNames, create_network

pytestmark = pytest.mark.root

MakeNetns = Callable[..., diyc.NetNS]


def test_key_is_stored_unique_and_filters_the_list(client: Client, names: RunNames, make_netns: MakeNetns) -> None:
    network = create_network(client, names)
    a, b = make_netns(), make_netns()
    att = client.attach(network.name, netns=a.name, key="ctr-a")
    assert att.key == "ctr-a"
    # The same key with the same ifname is taken, even from another namespace.
    with pytest.raises(AlreadyExistsError, match="ctr-a"):
        client.attach(network.name, netns=b.name, key="ctr-a")
    # Another ifname under the same key is a second attachment.
    second = client.attach(network.name, netns=a.name, key="ctr-a", ifname="net1")
    unkeyed = client.attach(network.name, netns=b.name)
    assert unkeyed.key == ""
    listed = client.list_attachments(network.name, key="ctr-a")
    assert sorted(x.ifname for x in listed) == ["eth0", "net1"]
    assert client.list_attachments(key="nobody") == []
    assert {x.host_ifname for x in client.list_attachments(network.name)} == {
        att.host_ifname, second.host_ifname, unkeyed.host_ifname}


@pytest.mark.parametrize("key", ["-leading-dash", "has space", "a/b", "x" * 256, "ünï"])
def test_malformed_keys_are_refused(client: Client, names: RunNames, make_netns: MakeNetns, key: str) -> None:
    network = create_network(client, names)
    ns = make_netns()
    with pytest.raises(InvalidArgumentError, match="invalid attachment key"):
        client.attach(network.name, netns=ns.name, key=key)
    with pytest.raises(InvalidArgumentError, match="invalid attachment key"):
        client.detach(network.name, key=key)
    assert client.list_attachments(network.name) == []


def test_detach_by_key_needs_no_namespace_and_is_idempotent(
        client: Client, names: RunNames, make_netns: MakeNetns) -> None:
    network = create_network(client, names)
    ns = make_netns()
    att = client.attach(network.name, netns=ns.name, key="gone-ns")
    # The namespace disappears first, as when a runtime deletes it before DEL.
    subprocess.run(["ip", "netns", "del", ns.name], check=True)
    client.detach(network.name, key="gone-ns")
    assert client.list_attachments(network.name) == []
    client.detach(network.name, key="gone-ns")  # second DEL: still fine
    # The address is free again: a static attach of the same address works.
    ns2 = make_netns()
    again = client.attach(network.name, netns=ns2.name, ip=att.ip.split("/")[0], key="gone-ns")
    assert again.ip == att.ip
    with pytest.raises(NotFoundError):
        client.detach(names.network(), key="gone-ns")


def test_keys_survive_a_restart(client: Client, names: RunNames, make_netns: MakeNetns,
                                diycd: DiycdProcess) -> None:
    network = create_network(client, names)
    ns = make_netns()
    att = client.attach(network.name, netns=ns.name, key="durable")
    diycd.restart()
    with diycd.client() as fresh:
        listed = fresh.list_attachments(network.name, key="durable")
        assert [x.host_ifname for x in listed] == [att.host_ifname]
        with pytest.raises(AlreadyExistsError):
            fresh.attach(network.name, netns=make_netns().name, key="durable")
        fresh.detach(network.name, key="durable")
        assert fresh.list_attachments(network.name) == []


def test_collect_detaches_keyed_attachments_not_listed(
        client: Client, names: RunNames, make_netns: MakeNetns) -> None:
    network = create_network(client, names)
    other = create_network(client, names)
    keep = client.attach(network.name, netns=make_netns().name, key="keep")
    drop = client.attach(network.name, netns=make_netns().name, key="drop")
    drop_second_if = client.attach(network.name, netns=make_netns().name, key="keep", ifname="net1")
    unkeyed = client.attach(network.name, netns=make_netns().name)
    elsewhere = client.attach(other.name, netns=make_netns().name, key="drop")

    detached = client.collect_attachments(network.name, [("keep", "eth0")])
    assert sorted(x.host_ifname for x in detached) == sorted([drop.host_ifname, drop_second_if.host_ifname])
    remaining = {x.host_ifname for x in client.list_attachments(network.name)}
    assert remaining == {keep.host_ifname, unkeyed.host_ifname}
    # Other networks are not touched; a second collect finds nothing more.
    assert [x.host_ifname for x in client.list_attachments(other.name)] == [elsewhere.host_ifname]
    assert client.collect_attachments(network.name, [("keep", "eth0")]) == []
    with pytest.raises(NotFoundError):
        client.collect_attachments(names.network())
