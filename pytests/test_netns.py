"""Named network namespaces: create, list, open by name/path/pid, remove."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

import diyc
from diyc.pytest_plugin import CleanupRegistry, NameAllocator
from iptool import IpTool

pytestmark = pytest.mark.root


def ns_inode(ns: diyc.NetNS) -> int:
    return os.fstat(ns.fd).st_ino


def path_inode(path: str) -> int:
    return os.stat(path).st_ino


def netns_mount_points() -> set[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        return {line.split()[4] for line in mountinfo}


@pytest.fixture
def fresh_name(diyc_names: NameAllocator, diyc_cleanup: CleanupRegistry) -> str:
    """A namespace name the test will create itself, removed at teardown."""
    name = diyc_names.netns()
    diyc_cleanup.track_netns(name)
    return name


def test_create_binds_namespace_like_ip_netns(fresh_name: str, iproute2: IpTool) -> None:
    with diyc.NetNS.create(fresh_name) as ns:
        assert ns.name == fresh_name
        assert ns.path == f"/run/netns/{fresh_name}"
        assert isinstance(ns.fd, int) and ns.fd >= 0
        assert ns_inode(ns) == path_inode(ns.path)
        assert ns_inode(ns) != path_inode("/proc/self/ns/net")
        assert ns.path in netns_mount_points()
        assert fresh_name in diyc.NetNS.list()
        assert fresh_name in iproute2.netns_list()
    # Leaving the `with` of create() removes the namespace.
    assert fresh_name not in diyc.NetNS.list()
    assert fresh_name not in iproute2.netns_list()
    assert not os.path.lexists(f"/run/netns/{fresh_name}")
    assert f"/run/netns/{fresh_name}" not in netns_mount_points()


def test_list_is_sorted_names(make_netns: Callable[..., diyc.NetNS]) -> None:
    first, second = make_netns(), make_netns()
    names = diyc.NetNS.list()
    assert {first.name, second.name} <= set(names)
    assert names == sorted(names)
    assert set(names) == set(os.listdir("/run/netns"))


def test_new_namespace_is_empty_and_isolated(make_netns: Callable[..., diyc.NetNS]) -> None:
    ns = make_netns(lo_up=False)
    with diyc.IPRoute(netns=ns) as ipr:
        links = ipr.links()
        assert [link.name for link in links] == ["lo"]
        assert links[0].index == 1 and links[0].state == "down"
        ipr.lo_up()
        assert ipr.get_link("lo").state == "up"
        loopback = {addr.cidr for addr in ipr.addrs("lo")}
    assert {"127.0.0.1/8", "::1/128"} <= loopback


def test_open_by_name_shares_the_namespace(netns: diyc.NetNS) -> None:
    with diyc.NetNS.open(netns.name) as opened:
        assert opened.name == netns.name
        assert opened.path == netns.path
        assert opened.fd != netns.fd
        assert ns_inode(opened) == ns_inode(netns)
    # Leaving the `with` of open() only closes the handle.
    assert netns.name in diyc.NetNS.list()
    with diyc.IPRoute(netns=netns.name) as ipr:
        assert [link.name for link in ipr.links()] == ["lo"]


def test_open_by_path(netns: diyc.NetNS) -> None:
    with diyc.NetNS.open(path=netns.path) as opened:
        assert opened.path == netns.path
        assert ns_inode(opened) == ns_inode(netns)


def test_open_current_pid_is_host_namespace() -> None:
    pid = os.getpid()
    with diyc.NetNS.open(pid=pid) as host:
        assert host.name is None
        assert str(pid) in host.path
        assert ns_inode(host) == path_inode("/proc/self/ns/net")


@pytest.fixture
def process_in(iproute2: IpTool) -> Iterator[Callable[[diyc.NetNS], int]]:
    """Starts `sleep` inside a namespace; returns its pid once it has joined."""
    started: list[subprocess.Popen[bytes]] = []

    def start(ns: diyc.NetNS) -> int:
        proc = subprocess.Popen([iproute2.ip, "netns", "exec", ns.name, "sleep", "60"])
        started.append(proc)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if path_inode(f"/proc/{proc.pid}/ns/net") == ns_inode(ns):
                    return proc.pid
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        raise AssertionError(f"pid {proc.pid} did not enter {ns.name} within 5s")

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def test_open_by_pid_of_process_inside(netns: diyc.NetNS, process_in: Callable[[diyc.NetNS], int]) -> None:
    pid = process_in(netns)
    with diyc.NetNS.open(pid=pid) as opened:
        assert ns_inode(opened) == ns_inode(netns)
        assert opened.path == f"/proc/{pid}/ns/net"


def test_remove_unmounts_and_unlinks(fresh_name: str, iproute2: IpTool) -> None:
    ns = diyc.NetNS.create(fresh_name)
    try:
        ns.remove()
        assert fresh_name not in diyc.NetNS.list()
        assert fresh_name not in iproute2.netns_list()
        assert not os.path.lexists(f"/run/netns/{fresh_name}")
        assert f"/run/netns/{fresh_name}" not in netns_mount_points()
        with pytest.raises(diyc.NotFoundError):
            diyc.NetNS.open(fresh_name)
    finally:
        ns.close()


def test_namespace_seen_by_ip_netns_exec(netns: diyc.NetNS, iproute2: IpTool) -> None:
    with diyc.IPRoute(netns=netns) as ipr:
        ipr.bridge_add("br-probe", mtu=1400)
    assert "br-probe" in iproute2.link_names(netns)
    assert "br-probe" not in iproute2.link_names()


def test_duplicate_create_fails_and_keeps_original(netns: diyc.NetNS, iproute2: IpTool) -> None:
    with diyc.IPRoute(netns=netns) as ipr:
        ipr.bridge_add("br-mark", mtu=1500)
    before = path_inode(netns.path)
    with pytest.raises(diyc.AlreadyExistsError) as excinfo:
        diyc.NetNS.create(netns.name)
    assert excinfo.value.code == "ALREADY_EXISTS"
    assert path_inode(netns.path) == before == ns_inode(netns)
    assert "br-mark" in iproute2.link_names(netns.name)
    assert diyc.NetNS.list().count(netns.name) == 1


def test_open_missing_namespace(diyc_names: NameAllocator) -> None:
    missing = diyc_names.netns()
    with pytest.raises(diyc.NotFoundError) as excinfo:
        diyc.NetNS.open(missing)
    assert isinstance(excinfo.value, LookupError)
    assert excinfo.value.code == "NOT_FOUND"
    with pytest.raises(diyc.NotFoundError):
        diyc.NetNS.open(path=f"/run/netns/{missing}")
    with pytest.raises(diyc.NotFoundError):
        diyc.IPRoute(netns=missing)
    assert missing not in diyc.NetNS.list()


def test_open_pid_of_exited_process() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    with pytest.raises(diyc.NotFoundError):
        diyc.NetNS.open(pid=child.pid)


def test_sysctl_is_per_namespace(netns: diyc.NetNS) -> None:
    host_value = diyc.sysctl_get(None, "net.ipv4.ip_forward")
    wanted = "0" if host_value.strip() == "1" else "1"
    diyc.sysctl_set(netns, "net.ipv4.ip_forward", wanted)
    assert diyc.sysctl_get(netns, "net.ipv4.ip_forward").strip() == wanted
    assert diyc.sysctl_get(netns.name, "net.ipv4.ip_forward").strip() == wanted
    assert diyc.sysctl_get(None, "net.ipv4.ip_forward") == host_value


def test_longest_name(diyc_names: NameAllocator, diyc_cleanup: CleanupRegistry, iproute2: IpTool) -> None:
    name = diyc_names.netns().ljust(255, "x")
    diyc_cleanup.track_netns(name)
    with diyc.NetNS.create(name) as ns:
        assert ns.name == name
        assert name in diyc.NetNS.list()
        assert name in iproute2.netns_list()
    assert name not in diyc.NetNS.list()


@pytest.mark.parametrize("path", ["/etc/hostname", "/proc/self/ns/mnt", "/proc/self/ns/uts", "/run/netns"])
def test_open_path_that_is_no_network_namespace(path: str) -> None:
    with pytest.raises(diyc.InvalidArgumentError):
        diyc.NetNS.open(path=path)


@pytest.mark.parametrize("pid", [0, -1])
def test_open_invalid_pid(pid: int) -> None:
    with pytest.raises(diyc.InvalidArgumentError):
        diyc.NetNS.open(pid=pid)


def test_open_needs_exactly_one_selector(netns: diyc.NetNS) -> None:
    with pytest.raises(diyc.InvalidArgumentError):
        diyc.NetNS.open(netns.name, pid=os.getpid())
    with pytest.raises(diyc.InvalidArgumentError):
        diyc.NetNS.open()


def test_removed_handle_is_unusable(make_netns: Callable[..., diyc.NetNS]) -> None:
    ns = make_netns()
    ns.remove()
    with pytest.raises(diyc.NotFoundError):
        diyc.IPRoute(netns=ns)
    with pytest.raises(diyc.NotFoundError):
        diyc.sysctl_get(ns, "net.ipv4.ip_forward")
    with pytest.raises(diyc.NotFoundError):
        diyc.ping(ns, "127.0.0.1", count=1, timeout=0.2)
