"""diycd under load, across restarts and after being killed mid-flight."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

import pytest

import diyc
from diyc.client import Client
from diyc.daemon import DiycdProcess
from diyc.errors import DiycError
from diyc.pytest_plugin import assert_reachable
from diyc.v1 import network_pb2
from diycd_support import (RunNames, create_network, diyc_links, netns_links, settled_diyc_links, snapshot,
                            state_differences)

pytestmark = pytest.mark.root

MakeNetns = Callable[..., diyc.NetNS]


def address(attachment: network_pb2.Attachment) -> ipaddress.IPv4Address:
    return ipaddress.ip_interface(attachment.ip).ip  # type: ignore[return-value]


@pytest.mark.slow
def test_200_concurrent_attaches(client: Client, names: RunNames, make_netns: MakeNetns) -> None:
    network = create_network(client, names)
    subnet = ipaddress.ip_network(network.subnet)
    namespaces = [make_netns() for _ in range(200)]
    with ThreadPoolExecutor(32) as pool:
        attachments = list(pool.map(lambda ns: client.attach(network.name, netns=ns.name), namespaces))

    addresses = [address(a) for a in attachments]
    assert len(set(addresses)) == 200, "two attachments got the same address"
    reserved = {subnet.network_address, subnet.broadcast_address, ipaddress.ip_address(network.gateway)}
    assert all(ip in subnet and ip not in reserved for ip in addresses)
    assert len({a.host_ifname for a in attachments}) == 200
    listed = client.list_attachments(network.name)  # more than one page (default 100)
    assert sorted(a.ip for a in listed) == sorted(a.ip for a in attachments)
    assert client.get_network(network.name).attachment_count == 200
    for i, j in ((0, 199), (150, 3)):
        assert_reachable(namespaces[i], str(addresses[j]), within=3)

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda ns: client.detach(network.name, netns=ns.name), namespaces))
    assert client.list_attachments(network.name) == []
    assert client.get_network(network.name).attachment_count == 0
    assert settled_diyc_links(names.prefix, {network.bridge}) == {network.bridge}


def _check_consistent(client: Client, names: RunNames, networks: list[network_pb2.Network],
                      namespaces: dict[str, diyc.NetNS]) -> list[network_pb2.Attachment]:
    """What a restarted diycd lists is exactly what the kernel has, and it works."""
    listed = {n.name: n for n in client.list_networks()}
    assert set(listed) == {n.name for n in networks}
    attachments = client.list_attachments()
    ips = [a.ip for a in attachments]
    assert len(ips) == len(set(ips)), f"two attachments share an address: {sorted(ips)}"

    links = diyc_links(names.prefix)
    expected = {n.bridge for n in networks} | {a.host_ifname for a in attachments}
    assert set(links) == expected, (f"labelled links without a record: {sorted(set(links) - expected)}; "
                                    f"records without a link: {sorted(expected - set(links))}")
    for att in attachments:
        link = links[att.host_ifname]
        assert link.master == listed[att.network].bridge and link.state == "up", link
        assert_reachable(namespaces[att.netns_name], att.gateway, within=3)
    attached = {a.netns_name for a in attachments}
    for name, ns in namespaces.items():
        if name not in attached:
            assert netns_links(ns) == ["lo"], f"{name} is not listed but kept {netns_links(ns)}"
    return attachments


@pytest.mark.slow
def test_sigkill_during_a_burst_of_attaches(diycd: DiycdProcess, names: RunNames, make_netns: MakeNetns) -> None:
    with diycd.client(timeout=10) as client:
        network = create_network(client, names)
        namespaces = {ns.name: ns for ns in (make_netns() for _ in range(50))}
        done = threading.Semaphore(0)
        with ThreadPoolExecutor(16) as pool:
            futures: list[Future[network_pb2.Attachment]] = []
            for name in namespaces:
                future = pool.submit(client.attach, network.name, netns=name)
                future.add_done_callback(lambda _: done.release())
                futures.append(future)
            for _ in range(15):
                done.acquire(timeout=30)
            diycd.kill()
            wait(futures, timeout=60)
    succeeded = [f.result() for f in futures if f.exception() is None]
    failed = [f.exception() for f in futures if f.exception() is not None]
    assert all(isinstance(exc, DiycError) for exc in failed), failed
    assert failed, f"all {len(succeeded)} attaches finished before the kill; the test proved nothing"

    diycd.start(timeout=15)
    with diycd.client() as client:
        attachments = _check_consistent(client, names, [network], namespaces)
        # What the client saw succeed must have survived.
        assert {a.ip for a in succeeded} <= {a.ip for a in attachments}
        attached = {a.netns_name for a in attachments}
        remaining = [name for name in namespaces if name not in attached]
        for name in remaining:
            client.attach(network.name, netns=name)
        final = client.list_attachments(network.name)
        assert len(final) == 50 and len({a.ip for a in final}) == 50


@pytest.mark.slow
def test_state_survives_restarts(diycd: DiycdProcess, names: RunNames, make_netns: MakeNetns) -> None:
    namespaces: dict[str, diyc.NetNS] = {}
    with diycd.client() as client:
        plain = create_network(client, names)
        internal = create_network(client, names, internal=True, mtu=1400)
        for network, extra in ((plain, {}), (plain, {"ifname": "net1", "mac": "02:42:0a:00:00:09"}),
                               (internal, {"ip": str(ipaddress.ip_network(internal.subnet).network_address + 9)})):
            ns = make_netns()
            namespaces[ns.name] = ns
            client.attach(network.name, netns=ns.name, **extra)
        before = snapshot(client)

    assert diycd.stop() == 0, f"diycd did not exit cleanly on SIGTERM\n{diycd.log_tail()}"
    diycd.start(timeout=15)
    with diycd.client() as client:
        after = snapshot(client)
        assert after == before, "state changed across a clean restart:\n  " + "\n  ".join(
            state_differences(before, after))
        _check_consistent(client, names, [plain, internal], namespaces)

    diycd.kill()
    diycd.start(timeout=15)
    with diycd.client() as client:
        after = snapshot(client)
        assert after == before, "state changed across a crash:\n  " + "\n  ".join(
            state_differences(before, after))
        _check_consistent(client, names, [plain, internal], namespaces)
        # And it still allocates without colliding with what it recovered.
        fresh = client.attach(plain.name, netns=make_netns().name)
        assert fresh.ip not in {a["ip"] for a in before[1]}
