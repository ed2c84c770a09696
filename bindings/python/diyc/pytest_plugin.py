"""pytest fixtures for tests that build real network topologies with diyc.

Load it with ``-p diyc.pytest_plugin`` (or from a conftest's
``pytest_configure`` via ``config.pluginmanager.import_plugin``).

Every resource is created under a per-run name prefix (``dt`` plus four base-36
characters of the pid, or ``$DIYC_TEST_PREFIX``) and registered for removal
*before* it is created, so a test that fails half-way, raises
``KeyboardInterrupt`` or receives SIGTERM still leaves nothing behind.  Cleanup
only ever removes names that did not exist when they were registered: the
plugin never touches interfaces, namespaces or sysctls it did not create.
With the default prefix generated names are at most 11 characters, well
inside the 15-byte limit of interface names.

Fixtures (all function-scoped unless noted; those that touch the kernel skip
the test when not running as root):

``diyc_names`` (session)
    :class:`NameAllocator`: ``.prefix``, ``.netns()``, ``.link(tag)``,
    ``.subnet4()`` (``10.X.Y.0/24``), ``.subnet6()`` (``fd00:77:R:C::/64``).
``diyc_cleanup``
    :class:`CleanupRegistry` for the current test. ``track_netns(name)`` and
    ``track_link(name)`` register a host-namespace link or a namespace before a
    test creates it itself; ``add(description, fn)`` registers anything else.
    Actions run last-in first-out at teardown; failures become a teardown error.
``diyc_net``
    :class:`NetFactory`, the object behind the ``make_*`` fixtures.
``make_netns(name=None, *, lo_up=True, dad=True)`` / ``netns``
    A named namespace (``ip netns`` style); ``dad=False`` turns IPv6 duplicate
    address detection off inside it so addresses are usable at once.
``make_bridge(name=None, *, mtu=1500, netns=None, addresses=(), dad=True)`` / ``bridge``
    A bridge (host namespace by default), optionally with addresses.
``make_veth(name=None, *, peer=None, netns=None, peer_netns=None, up=True)`` / ``veth_pair``
    A :class:`VethPair`; ``veth_pair`` has its host end in the host namespace
    and its peer ``eth0`` inside a fresh namespace.
``make_star(n, *, ipv6=False, host_gateway=True, dad=False, mtu=1500, subnet=None, first_host=2)``
    :class:`Star`: one bridge in the host namespace and ``n`` namespaces, each
    with ``eth0`` (a veth whose other end is on the bridge) addressed ``.2``,
    ``.3``, ... of a fresh /24, lo up.  With ``host_gateway`` the bridge holds
    ``.1`` and every namespace routes by default through it; without it ``.1``
    is left for a router attached later with :meth:`Star.attach`.
``make_p2p(*, ipv6=False, dad=False)``
    :class:`PointToPoint`: two namespaces whose ``eth0`` ends are one veth.
``assert_reachable`` / ``assert_unreachable``
    The functions of the same name, for tests that prefer fixtures.
``host_unchanged``
    ``with host_unchanged(): ...`` fails if the block left new host links,
    ``/run/netns`` entries, netns mounts or namespace fds behind (for calls
    that are expected to fail cleanly).

Helpers importable from this module: :func:`assert_reachable`,
:func:`assert_unreachable`, :func:`describe_netns`, :func:`have_root`,
:func:`require_root`, :func:`host_unchanged`, :class:`HostSnapshot` and
:func:`guard_host_state`, a generator for a session fixture that fails when
the host namespace gained links, ``/run/netns`` entries, netns mounts or
namespace file descriptors, or the host gained what diycd makes besides:
nftables tables named ``diyc*``, overlay mounts and nsfs mounts outside
``/run/netns``, cgroups named ``diyc*`` (and the ones right below them) in
every cgroup hierarchy, or diycd/diyc-init processes.  Leak checks compare
the whole host unless ``DIYC_LEAK_CHECK=prefix`` narrows them to this run's
names (:func:`leak_check_prefix`), which keeps concurrent runs from flagging
each other's resources.

The ``root`` marker skips a test unless the process is root with
CAP_NET_ADMIN and CAP_SYS_ADMIN.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import pytest

import diyc

NetnsRef: TypeAlias = "diyc.NetNS | str | None"

NETNS_DIR = "/run/netns"
MAX_IFNAME_LEN = 15
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_PREFIX_ENV = "DIYC_TEST_PREFIX"
_LEAK_CHECK_ENV = "DIYC_LEAK_CHECK"
_PREFIX_RE = re.compile(r"[a-z][a-z0-9]{1,7}")
_CAP_NET_ADMIN = 12
_CAP_SYS_ADMIN = 21


# --------------------------------------------------------------------------
# Privileges


def have_root() -> bool:
    """True when namespaces and links can be made: euid 0 holding the caps."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    caps = int(line.split()[1], 16)
                    return all(caps >> bit & 1 for bit in (_CAP_NET_ADMIN, _CAP_SYS_ADMIN))
    except OSError:
        pass
    return True


def require_root() -> None:
    """Skips the calling test when it could only fail with EPERM."""
    if not have_root():
        pytest.skip("needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)")


# --------------------------------------------------------------------------
# Names and subnets


def _b36(value: int, width: int = 0) -> str:
    digits = ""
    while value:
        value, rem = divmod(value, 36)
        digits = _B36[rem] + digits
    return digits.rjust(width, "0") or "0"


def _default_prefix() -> str:
    configured = os.environ.get(_PREFIX_ENV)
    if configured is not None:
        if not _PREFIX_RE.fullmatch(configured):
            raise pytest.UsageError(
                f"{_PREFIX_ENV}={configured!r}: expected 2-8 characters [a-z0-9], starting with a letter"
            )
        return configured
    return "dt" + _b36(os.getpid() % 36**4, 4)


class NameAllocator:
    """Hands out run-unique names and subnets.

    The prefix keeps concurrent runs (different pids) apart; the counter keeps
    tests of one run apart.  Subnets derive their middle octets from the pid
    too, so concurrent runs rarely draw the same /24, and stars with a host
    gateway also skip any subnet the host already routes.
    """

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or _default_prefix()
        self._names = itertools.count(1)
        self._subnets4 = itertools.count(0)
        self._subnets6 = itertools.count(0)
        self._run = os.getpid()

    def _next(self, tag: str) -> str:
        name = f"{self.prefix}{tag}{_b36(next(self._names))}"
        if len(name.encode()) > MAX_IFNAME_LEN:
            raise RuntimeError(f"generated name {name!r} exceeds {MAX_IFNAME_LEN} bytes")
        return name

    def netns(self) -> str:
        """A namespace name unused by this run."""
        return self._next("n")

    def link(self, tag: str = "l") -> str:
        """An interface name unused by this run; tag is a one-letter hint."""
        return self._next(tag[:1] or "l")

    def subnet4(self) -> ipaddress.IPv4Network:
        """A /24 in 10.100.0.0-10.227.255.0 picked by pid and counter."""
        index = next(self._subnets4)
        second = 100 + (self._run + index // 256) % 128
        return ipaddress.IPv4Network(f"10.{second}.{index % 256}.0/24")

    def subnet6(self) -> ipaddress.IPv6Network:
        """A ULA /64 under fd00:77::/32 picked by pid and counter."""
        index = next(self._subnets6)
        return ipaddress.IPv6Network(f"fd00:77:{self._run & 0xFFFF:x}:{index & 0xFFFF:x}::/64")


# --------------------------------------------------------------------------
# Cleanup


class CleanupError(Exception):
    """Raised at teardown when some cleanup action failed."""


@dataclass
class _Action:
    description: str
    run: Callable[[], None]


def _ip_binary() -> str | None:
    return shutil.which("ip") or next(
        (path for path in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip") if os.access(path, os.X_OK)), None
    )


def _run_ip(*args: str) -> None:
    """Last-resort cleanup through iproute2 when diyc itself failed."""
    binary = _ip_binary()
    if binary is None:
        raise RuntimeError("iproute2 `ip` is not installed")
    subprocess.run([binary, *args], check=True, capture_output=True, timeout=30)


def _netns_entry(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def _host_link_exists(name: str) -> bool:
    try:
        with diyc.IPRoute() as ipr:
            return ipr.find_link(name) is not None
    except diyc.InvalidArgumentError:
        return False


def _close_quietly(ns: diyc.NetNS) -> None:
    try:
        ns.close()
    except (diyc.DiycError, OSError, ValueError):
        pass


class CleanupRegistry:
    """Undo log for one test.

    Registering before creating means a half-finished creation is undone too;
    the "must not exist yet" checks make sure the undo can only hit objects the
    test itself brought into being.
    """

    def __init__(self) -> None:
        self._actions: list[_Action] = []

    def add(self, description: str, fn: Callable[[], None]) -> None:
        """Runs fn at teardown (last registered runs first)."""
        self._actions.append(_Action(description, fn))

    def track_netns(self, name: str) -> None:
        """Removes /run/netns/NAME at teardown; it must not exist now."""
        if os.path.lexists(_netns_entry(name)):
            raise RuntimeError(f"refusing to track netns {name!r}: it already exists")
        self.add(f"remove netns {name}", functools.partial(self._remove_netns, name))

    def track_link(self, name: str) -> None:
        """Deletes host-namespace link NAME at teardown; it must not exist now."""
        if _host_link_exists(name):
            raise RuntimeError(f"refusing to track link {name!r}: it already exists")
        self.add(f"delete link {name}", functools.partial(self._delete_host_link, name))

    def run(self) -> list[str]:
        """Runs and forgets every action; returns what failed, as messages."""
        errors: list[str] = []
        while self._actions:
            action = self._actions.pop()
            try:
                action.run()
            except Exception as exc:  # noqa: BLE001 - every action must get its turn
                errors.append(f"{action.description}: {type(exc).__name__}: {exc}")
        return errors

    @staticmethod
    def _remove_netns(name: str) -> None:
        entry = _netns_entry(name)
        if not os.path.lexists(entry):
            return
        if not os.path.ismount(entry):
            # A creation that failed after making the placeholder file.
            os.unlink(entry)
            raise CleanupError(f"{entry} was left as a plain file (no namespace mounted); removed it")
        try:
            with diyc.NetNS.open(name) as ns:
                ns.remove()
        except diyc.NotFoundError:
            return
        except diyc.DiycError:
            _run_ip("netns", "delete", name)
            raise

    @staticmethod
    def _delete_host_link(name: str) -> None:
        try:
            with diyc.IPRoute() as ipr:
                if ipr.find_link(name) is not None:
                    ipr.link_del(name)
        except diyc.NotFoundError:
            return  # gone meanwhile, e.g. with its veth peer
        except diyc.InvalidArgumentError:
            return  # not a name the kernel could hold
        except diyc.DiycError:
            _run_ip("link", "delete", "dev", name)
            raise


# --------------------------------------------------------------------------
# Topologies


@dataclass(frozen=True)
class VethPair:
    """Both ends of a veth; a netns of None is the host namespace."""

    name: str
    netns: diyc.NetNS | None
    peer: str
    peer_netns: diyc.NetNS | None


@dataclass(frozen=True)
class Member:
    """A namespace plugged into a :class:`Star`."""

    netns: diyc.NetNS
    ifname: str
    host_ifname: str
    address: str
    address6: str | None = None

    @property
    def name(self) -> str:
        return self.netns.name or self.netns.path


@dataclass
class Star:
    """Namespaces sharing one bridge in the host namespace."""

    bridge: str
    subnet: ipaddress.IPv4Network
    gateway: str
    subnet6: ipaddress.IPv6Network | None
    gateway6: str | None
    members: list[Member]
    _factory: NetFactory = field(repr=False)
    _next_host: int = field(default=2, repr=False)

    def __iter__(self) -> Iterator[Member]:
        return iter(self.members)

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, index: int) -> Member:
        return self.members[index]

    @property
    def namespaces(self) -> list[diyc.NetNS]:
        return [member.netns for member in self.members]

    @property
    def addresses(self) -> list[str]:
        return [member.address for member in self.members]

    @property
    def addresses6(self) -> list[str]:
        return [member.address6 for member in self.members if member.address6]

    def ordered_pairs(self) -> Iterator[tuple[Member, Member]]:
        """Every (source, destination) pair of distinct members."""
        return itertools.permutations(self.members, 2)

    def host(self, number: int) -> str:
        """The IPv4 address .NUMBER of the subnet."""
        return str(self.subnet.network_address + number)

    def host6(self, number: int) -> str:
        """The IPv6 address ::NUMBER of the IPv6 subnet."""
        if self.subnet6 is None:
            raise ValueError("this star has no IPv6 subnet")
        return str(self.subnet6.network_address + number)

    def attach(
        self,
        netns: diyc.NetNS,
        *,
        ifname: str = "eth0",
        host_number: int | None = None,
        default_route: bool = False,
    ) -> Member:
        """Plugs another namespace into the bridge, e.g. a router at ``.1``.

        The new member is returned but not added to ``members``, so pairwise
        checks keep covering only the namespaces the star was built with.
        """
        if host_number is None:
            host_number = self._take_host_number()
        return self._factory._plug(self, netns, ifname, host_number, default_route)

    def _take_host_number(self) -> int:
        number = self._next_host
        self._next_host += 1
        if number >= self.subnet.num_addresses - 1:
            raise ValueError(f"no free address left in {self.subnet}")
        return number


@dataclass(frozen=True)
class PointToPoint:
    """Two namespaces joined by one veth, ``eth0`` on both sides."""

    a: diyc.NetNS
    b: diyc.NetNS
    subnet: ipaddress.IPv4Network
    address_a: str
    address_b: str
    subnet6: ipaddress.IPv6Network | None
    address6_a: str | None
    address6_b: str | None
    ifname: str = "eth0"


def disable_dad(netns: NetnsRef) -> None:
    """Turns IPv6 duplicate address detection off in a namespace we own.

    Both ``all`` and ``default`` matter: the kernel skips DAD only when both
    the global and the per-interface switch are off, and interfaces created
    later copy ``default``.
    """
    if netns is None:
        raise ValueError("refusing to change IPv6 settings of the host namespace")
    for scope in ("all", "default"):
        diyc.sysctl_set(netns, f"net.ipv6.conf.{scope}.accept_dad", "0")


def wait_forwarding(ports: Sequence[str], timeout: float = 5.0) -> None:
    """Returns once every host bridge port has carrier and forwards.

    A veth's carrier reaches its bridge through the kernel's link watch,
    which may take a moment after both ends are up; a packet sent before
    that is dropped, and a first ping would come back short.
    """
    deadline = time.monotonic() + timeout

    def ready(port: str) -> bool:
        try:
            with open(f"/sys/class/net/{port}/operstate", encoding="ascii") as f:
                up = f.read().strip() == "up"
            with open(f"/sys/class/net/{port}/brport/state", encoding="ascii") as f:
                return up and f.read().strip() == "3"  # BR_STATE_FORWARDING
        except OSError:
            return False

    pending = list(ports)
    while pending := [port for port in pending if not ready(port)]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"bridge ports not forwarding after {timeout:g}s: {pending}")
        time.sleep(0.01)


class NetFactory:
    """Creates namespaces, links and topologies that undo themselves."""

    def __init__(self, names: NameAllocator, cleanup: CleanupRegistry) -> None:
        self.names = names
        self.cleanup = cleanup

    def netns(self, name: str | None = None, *, lo_up: bool = True, dad: bool = True) -> diyc.NetNS:
        """A new named namespace; lo is brought up unless lo_up is False."""
        require_root()
        name = name or self.names.netns()
        self.cleanup.track_netns(name)
        ns = diyc.NetNS.create(name)
        self.cleanup.add(f"close netns handle {name}", functools.partial(_close_quietly, ns))
        if not dad:
            disable_dad(ns)
        if lo_up:
            with diyc.IPRoute(netns=ns) as ipr:
                ipr.lo_up()
        return ns

    def bridge(
        self,
        name: str | None = None,
        *,
        mtu: int = 1500,
        netns: diyc.NetNS | None = None,
        addresses: Sequence[str] = (),
        dad: bool = True,
    ) -> diyc.Link:
        """A bridge, created up; in the host namespace unless netns is given.

        A bridge inside a namespace goes away with it, so only host bridges
        are registered for deletion.
        """
        require_root()
        name = name or self.names.link("b")
        if netns is None:
            self.cleanup.track_link(name)
        with diyc.IPRoute(netns=netns) as ipr:
            link = ipr.bridge_add(name, mtu=mtu)
            if not dad:
                diyc.sysctl_set(netns, f"net.ipv6.conf.{name}.accept_dad", "0")
            for cidr in addresses:
                ipr.addr_add(name, cidr)
        return link

    def veth(
        self,
        name: str | None = None,
        *,
        peer: str | None = None,
        netns: diyc.NetNS | None = None,
        peer_netns: diyc.NetNS | None = None,
        up: bool = True,
    ) -> VethPair:
        """A veth pair; the peer defaults to ``eth0`` when it goes elsewhere."""
        require_root()
        name = name or self.names.link("v")
        if peer is None:
            peer = "eth0" if peer_netns is not None else self.names.link("p")
        if netns is None:
            self.cleanup.track_link(name)
            if peer_netns is None:
                self.cleanup.track_link(peer)
        with diyc.IPRoute(netns=netns) as ipr:
            ipr.veth_add(name, peer=peer, peer_netns=peer_netns)
            if up:
                ipr.link_set(name, state="up")
        if up:
            with diyc.IPRoute(netns=peer_netns if peer_netns is not None else netns) as ipr:
                ipr.link_set(peer, state="up")
        return VethPair(name, netns, peer, peer_netns)

    def star(
        self,
        n: int,
        *,
        ipv6: bool = False,
        host_gateway: bool = True,
        dad: bool = False,
        mtu: int = 1500,
        subnet: str | ipaddress.IPv4Network | None = None,
        first_host: int = 2,
    ) -> Star:
        """n namespaces on one fresh host bridge (see the module docstring).

        ``subnet`` and ``first_host`` let two stars share one IPv4 subnet on
        separate bridges, which shows whether the bridges are really apart.
        """
        require_root()
        if not 1 <= n <= 200:
            raise ValueError(f"a star holds 1..200 namespaces, not {n}")
        if first_host < 2:
            raise ValueError("host number 1 is the gateway; members start at 2 or later")
        if subnet is not None:
            subnet = ipaddress.IPv4Network(subnet)
            if host_gateway:
                raise ValueError("an explicit subnet is only for stars without a host gateway")
        else:
            subnet = self._free_subnet4() if host_gateway else self.names.subnet4()
        subnet6 = self.names.subnet6() if ipv6 else None
        gateway = str(subnet.network_address + 1)
        gateway6 = str(subnet6.network_address + 1) if subnet6 else None
        host_addresses: list[str] = []
        if host_gateway:
            host_addresses.append(f"{gateway}/{subnet.prefixlen}")
            if subnet6 is not None:
                host_addresses.append(f"{gateway6}/{subnet6.prefixlen}")
        bridge = self.bridge(mtu=mtu, addresses=host_addresses, dad=dad)
        star = Star(bridge.name, subnet, gateway, subnet6, gateway6, [], self, first_host)
        for _ in range(n):
            ns = self.netns(dad=dad)
            star.members.append(self._plug(star, ns, "eth0", star._take_host_number(), host_gateway))
        wait_forwarding([member.host_ifname for member in star.members])
        return star

    def p2p(self, *, ipv6: bool = False, dad: bool = False) -> PointToPoint:
        """Two namespaces directly connected; a gets .1 (::1), b gets .2 (::2)."""
        require_root()
        a, b = self.netns(dad=dad), self.netns(dad=dad)
        subnet = self.names.subnet4()
        subnet6 = self.names.subnet6() if ipv6 else None
        self.veth("eth0", peer="eth0", netns=a, peer_netns=b)
        addresses: dict[str, tuple[str, str | None]] = {}
        for number, ns in ((1, a), (2, b)):
            v4 = str(subnet.network_address + number)
            v6 = str(subnet6.network_address + number) if subnet6 else None
            with diyc.IPRoute(netns=ns) as ipr:
                ipr.addr_add("eth0", f"{v4}/{subnet.prefixlen}")
                if subnet6 is not None:
                    ipr.addr_add("eth0", f"{v6}/{subnet6.prefixlen}")
            addresses["ab"[number - 1]] = (v4, v6)
        return PointToPoint(
            a, b, subnet, addresses["a"][0], addresses["b"][0], subnet6, addresses["a"][1], addresses["b"][1]
        )

    def _plug(self, star: Star, ns: diyc.NetNS, ifname: str, number: int, default_route: bool) -> Member:
        host_end = self.names.link("v")
        self.cleanup.track_link(host_end)
        with diyc.IPRoute() as host:
            host.veth_add(host_end, peer=ifname, peer_netns=ns)
            host.link_set(host_end, master=star.bridge, state="up")
        address = star.host(number)
        address6 = star.host6(number) if star.subnet6 is not None else None
        with diyc.IPRoute(netns=ns) as ipr:
            ipr.addr_add(ifname, f"{address}/{star.subnet.prefixlen}")
            if address6 is not None and star.subnet6 is not None:
                ipr.addr_add(ifname, f"{address6}/{star.subnet6.prefixlen}")
            ipr.link_set(ifname, state="up")
            if default_route:
                ipr.route_add("default", via=star.gateway)
                if address6 is not None:
                    ipr.route_add("default", via=star.gateway6)
        return Member(ns, ifname, host_end, address, address6)

    def _free_subnet4(self) -> ipaddress.IPv4Network:
        """A subnet no host route overlaps, so a host bridge never shadows one."""
        with diyc.IPRoute() as host:
            taken = [
                ipaddress.ip_network(route.dst, strict=False)
                for route in host.routes(family=4)
                if route.dst != "default"
            ]
        for _ in range(256):
            candidate = self.names.subnet4()
            if not any(candidate.overlaps(net) for net in taken):
                return candidate
        raise RuntimeError("every candidate test subnet overlaps a host route")


# --------------------------------------------------------------------------
# Reachability


def describe_netns(netns: NetnsRef) -> str:
    """How a namespace reads in an assertion message."""
    if netns is None:
        return "host namespace"
    if isinstance(netns, str):
        return f"netns {netns!r}"
    return f"netns {netns.name!r}" if netns.name else f"netns at {netns.path}"


def assert_reachable(
    netns: NetnsRef,
    address: str,
    *,
    count: int = 2,
    timeout: float = 1.0,
    min_received: int | None = None,
    within: float = 0.0,
) -> Any:
    """Asserts that echo replies come back; returns the diyc.PingResult.

    All ``count`` replies are required unless ``min_received`` says otherwise.
    ``within`` keeps retrying for that many seconds, for paths that need time
    to settle (IPv6 DAD, neighbour discovery).
    """
    __tracebackhide__ = True
    needed = count if min_received is None else min_received
    deadline = time.monotonic() + within
    attempts = 0
    while True:
        attempts += 1
        result = diyc.ping(netns, address, count=count, timeout=timeout)
        if result.received >= needed:
            return result
        if time.monotonic() >= deadline:
            retried = f", {attempts} attempts over {within:g}s" if within else ""
            raise AssertionError(
                f"{describe_netns(netns)} cannot reach {address}: {result.received}/{result.sent} "
                f"echo replies, needed {needed} (timeout {timeout:g}s per reply{retried})"
            )
        time.sleep(0.2)


def assert_unreachable(netns: NetnsRef, address: str, *, count: int = 1, timeout: float = 0.5) -> Any:
    """Asserts that no echo reply comes back; returns the diyc.PingResult."""
    __tracebackhide__ = True
    result = diyc.ping(netns, address, count=count, timeout=timeout)
    if result.received:
        raise AssertionError(
            f"{describe_netns(netns)} unexpectedly reached {address}: "
            f"{result.received}/{result.sent} echo replies"
        )
    return result


# --------------------------------------------------------------------------
# Host state snapshots (leak detection)


def _host_links() -> frozenset[str]:
    binary = _ip_binary()
    if binary is None:
        return frozenset(os.listdir("/sys/class/net"))
    out = subprocess.run([binary, "-o", "link", "show"], check=True, capture_output=True, text=True).stdout
    # "4: eth0@if5: <BROADCAST,...": the name sits between the first two ": ".
    return frozenset(line.split(": ", 2)[1].split("@", 1)[0] for line in out.splitlines() if ": " in line)


def _netns_entries() -> frozenset[str]:
    try:
        return frozenset(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return frozenset()


def _unescape_mount_field(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _netns_mounts() -> collections.Counter[str]:
    mounts: collections.Counter[str] = collections.Counter()
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as mountinfo:
        for line in mountinfo:
            mount_point = _unescape_mount_field(line.split()[4])
            if mount_point == NETNS_DIR or mount_point.startswith(NETNS_DIR + "/"):
                mounts[mount_point] += 1
    return mounts


def _foreign_netns_fds() -> dict[int, str]:
    """Open fds of this process naming a network namespace other than its own."""
    own = f"net:[{os.stat('/proc/self/ns/net').st_ino}]"
    found: dict[int, str] = {}
    for entry in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{entry}")
        except OSError:
            continue
        if target.startswith("net:[") and target != own:
            found[int(entry)] = target
    return found


# Objects diycd makes outside the network namespace. Its nftables tables,
# cgroups and processes all carry "diyc" in their names; its containers'
# roots are overlay mounts and their namespaces nsfs bind mounts (outside
# /run/netns: under the state directory).
DIYC_NAME_PREFIX = "diyc"
CGROUP_ROOT = "/sys/fs/cgroup"
DIYC_PROGRAMS = frozenset({"diycd", "diyc-init"})
_AUDITED_MOUNT_TYPES = frozenset({"overlay", "nsfs"})


def _nft_binary() -> str | None:
    return shutil.which("nft") or next(
        (path for path in ("/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft") if os.access(path, os.X_OK)), None
    )


def _diyc_nft_tables() -> frozenset[str]:
    """nftables tables named diyc*, as "family name" (what `nft list tables` prints).

    Empty when nft is missing or may not be run (not root): the audit then
    cannot see tables, and says nothing rather than failing every run.
    """
    binary = _nft_binary()
    if binary is None:
        return frozenset()
    try:
        out = subprocess.run([binary, "list", "tables"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    if out.returncode != 0:
        return frozenset()
    tables = set()
    for line in out.stdout.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "table" and words[2].startswith(DIYC_NAME_PREFIX):
            tables.add(f"{words[1]} {words[2]}")
    return frozenset(tables)


def _audited_mounts(prefix: str | None) -> collections.Counter[str]:
    """Overlay mounts, nsfs mounts outside /run/netns, and any mount whose path holds ``prefix``.

    Keys read "TYPE on PATH". /run/netns is left to :func:`_netns_mounts`,
    which knows the self-mount of that directory is expected.
    """
    mounts: collections.Counter[str] = collections.Counter()
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            try:
                fstype = fields[fields.index("-") + 1]
            except (ValueError, IndexError):
                continue
            mount_point = _unescape_mount_field(fields[4])
            if mount_point == NETNS_DIR or mount_point.startswith(NETNS_DIR + "/"):
                continue
            if fstype in _AUDITED_MOUNT_TYPES or (prefix and prefix in mount_point):
                mounts[f"{fstype} on {mount_point}"] += 1
    return mounts


def _cgroup_hierarchies(root: str = CGROUP_ROOT) -> list[str]:
    """The cgroup root and every directory right below it (v1 hierarchies, v2's unified)."""
    found = [root]
    try:
        with os.scandir(root) as entries:
            found += sorted(entry.path for entry in entries if entry.is_dir(follow_symlinks=False))
    except OSError:
        pass
    return found


def _diyc_cgroups(root: str = CGROUP_ROOT) -> frozenset[str]:
    """Directories named diyc* in each hierarchy, and the cgroups right below them.

    diycd puts every container's cgroup under a shared ``diyc`` parent in
    each hierarchy (memory, pids, cpu, freezer on v1; one tree on v2), so a
    leaked container shows up one level below it.
    """
    found: set[str] = set()
    for hierarchy in _cgroup_hierarchies(root):
        try:
            with os.scandir(hierarchy) as entries:
                parents = [e.path for e in entries
                           if e.name.startswith(DIYC_NAME_PREFIX) and e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        for parent in parents:
            found.add(parent)
            try:
                with os.scandir(parent) as children:
                    found.update(c.path for c in children if c.is_dir(follow_symlinks=False))
            except OSError:
                continue
    return frozenset(found)


def _process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat, which tells a reused pid from the original."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _diyc_processes() -> frozenset[tuple[int, int, str]]:
    """Running diycd and diyc-init processes as (pid, start time, description).

    Matched by the executable's name, so a binary rebuilt while it runs
    ("... (deleted)") still counts; zombies have no exe and do not.
    """
    found: set[tuple[int, int, str]] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{entry}/exe").removesuffix(" (deleted)")
        except OSError:
            continue
        if os.path.basename(exe) not in DIYC_PROGRAMS:
            continue
        start = _process_start_time(int(entry))
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if start is not None:
            found.add((int(entry), start, cmdline or exe))
    return frozenset(found)


@dataclass(frozen=True)
class HostSnapshot:
    """What a test run can leave behind on the host.

    The first four fields cover the network side (links, ``/run/netns``,
    netns mounts, namespace fds of this process); the others what diycd
    makes besides: nftables tables named diyc*, overlay/nsfs mounts (and
    mounts below paths holding the run's prefix), cgroups named diyc* and
    the ones right below them, and diycd/diyc-init processes. They default
    to empty so snapshots built by hand for the network side still work.
    """

    links: frozenset[str]
    netns_entries: frozenset[str]
    netns_mounts: tuple[tuple[str, int], ...]
    netns_fds: tuple[tuple[int, str], ...]
    nft_tables: frozenset[str] = frozenset()
    mounts: tuple[tuple[str, int], ...] = ()
    cgroups: frozenset[str] = frozenset()
    processes: frozenset[tuple[int, int, str]] = frozenset()

    @classmethod
    def capture(cls) -> HostSnapshot:
        return cls(
            links=_host_links(),
            netns_entries=_netns_entries(),
            netns_mounts=tuple(sorted(_netns_mounts().items())),
            netns_fds=tuple(sorted(_foreign_netns_fds().items())),
            nft_tables=_diyc_nft_tables(),
            mounts=tuple(sorted(_audited_mounts(session_names().prefix).items())),
            cgroups=_diyc_cgroups(),
            processes=_diyc_processes(),
        )

    def leaks_since(self, before: HostSnapshot, *, prefix: str | None = None) -> list[str]:
        """Everything present now that was not present in ``before``.

        One new mount of /run/netns onto itself is allowed: like ``ip netns``,
        diyc makes that directory a shared mount once and keeps it.  With
        ``prefix``, links and namespaces named otherwise are ignored, for hosts
        where other programs create and delete them at the same time.
        """

        def ours(name: str) -> bool:
            return prefix is None or name.startswith(prefix)

        leaks = [f"host link {name}" for name in sorted(self.links - before.links) if ours(name)]
        leaks += [
            f"{NETNS_DIR}/{name}" for name in sorted(self.netns_entries - before.netns_entries) if ours(name)
        ]
        grown = collections.Counter(dict(self.netns_mounts))
        grown.subtract(collections.Counter(dict(before.netns_mounts)))
        grown[NETNS_DIR] -= 1
        leaks += [
            f"mount on {path} (x{n})"
            for path, n in sorted(grown.items())
            if n > 0 and (path == NETNS_DIR or ours(os.path.basename(path)))
        ]
        old_fds = set(before.netns_fds)
        leaks += [f"fd {fd} -> {target}" for fd, target in self.netns_fds if (fd, target) not in old_fds]
        leaks += self._diyc_leaks_since(before, prefix)
        return leaks

    def _diyc_leaks_since(self, before: HostSnapshot, prefix: str | None) -> list[str]:
        """New nftables tables, mounts, cgroups and processes (see the class docstring).

        With ``prefix`` only those whose name (table), path (mount, cgroup)
        or command line holds it count: the run's diycd instances live under
        paths carrying the prefix, and its containers are named with it.
        """

        def ours(text: str) -> bool:
            return prefix is None or prefix in text

        leaks = [f"nftables table {table}" for table in sorted(self.nft_tables - before.nft_tables)
                 if ours(table.split()[-1])]
        grown = collections.Counter(dict(self.mounts))
        grown.subtract(collections.Counter(dict(before.mounts)))
        leaks += [f"{what} (x{n})" for what, n in sorted(grown.items()) if n > 0 and ours(what)]
        # A container's cgroup is named after it, below a parent that is not.
        leaks += [f"cgroup {path}" for path in sorted(self.cgroups - before.cgroups)
                  if ours(os.path.relpath(path, CGROUP_ROOT))]
        old_processes = {(pid, start) for pid, start, _ in before.processes}
        leaks += [f"process {pid} ({command})" for pid, start, command in sorted(self.processes)
                  if (pid, start) not in old_processes and ours(command)]
        return leaks


class HostStateLeak(AssertionError):
    """The host namespace kept something a test run created."""


def leak_check_prefix() -> str | None:
    """The name prefix leak checks are narrowed to, None for the whole host.

    ``DIYC_LEAK_CHECK=prefix`` narrows them to this run's prefix, for hosts
    where other programs (or other test runs) create links at the same time;
    the default, ``host``, compares everything.
    """
    scope = os.environ.get(_LEAK_CHECK_ENV, "host")
    if scope not in ("host", "prefix"):
        raise pytest.UsageError(f"{_LEAK_CHECK_ENV}={scope!r}: expected 'host' or 'prefix'")
    return session_names().prefix if scope == "prefix" else None


@contextlib.contextmanager
def host_unchanged(prefix: str | None = None) -> Iterator[None]:
    """Fails if the block left new host links, namespaces, netns mounts or fds, or diycd objects.

    (diycd objects: nftables tables, overlay/nsfs mounts, cgroups and
    processes, as :class:`HostSnapshot` lists them.)
    """
    __tracebackhide__ = True
    before = HostSnapshot.capture()
    yield
    leaks = HostSnapshot.capture().leaks_since(before, prefix=prefix)
    if leaks:
        raise HostStateLeak("the block left host state behind: " + "; ".join(leaks))


def guard_host_state(settle: float = 5.0, *, prefix: str | None = None) -> Iterator[None]:
    """Body of a session fixture: snapshot, yield, compare, fail on leaks.

    Namespaces are torn down by the kernel asynchronously (their veths vanish
    a moment after the last reference goes), so the comparison is retried for
    ``settle`` seconds before anything counts as leaked (diyc-init monitors
    and cgroups also take a moment to go).  ``prefix`` narrows the check to
    names starting with it, and for diycd's objects to names, paths and
    command lines holding it (see :meth:`HostSnapshot.leaks_since`).
    """
    before = HostSnapshot.capture()
    yield
    deadline = time.monotonic() + settle
    while True:
        leaks = HostSnapshot.capture().leaks_since(before, prefix=prefix)
        if not leaks or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if leaks:
        raise HostStateLeak("the test session leaked host state: " + "; ".join(leaks))


# --------------------------------------------------------------------------
# pytest hooks and fixtures


_SIGTERM_KEY = pytest.StashKey[bool]()


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "root: needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN); skipped otherwise")
    # SIGTERM would end the process without teardown; as KeyboardInterrupt it
    # lets pytest run every finalizer, so nothing stays in the kernel.
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
        config.stash[_SIGTERM_KEY] = True


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.stash.get(_SIGTERM_KEY, False):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def pytest_report_header(config: pytest.Config) -> str:
    return f"diyc: test resource prefix {session_names().prefix!r}, root={have_root()}"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None:
        require_root()


@functools.cache
def session_names() -> NameAllocator:
    """The allocator shared by every test of this process."""
    return NameAllocator()


@pytest.fixture(scope="session")
def diyc_names() -> NameAllocator:
    return session_names()


@pytest.fixture
def diyc_cleanup() -> Iterator[CleanupRegistry]:
    registry = CleanupRegistry()
    yield registry
    errors = registry.run()
    if errors:
        raise CleanupError("cleanup failed:\n  " + "\n  ".join(errors))


@pytest.fixture
def diyc_net(diyc_names: NameAllocator, diyc_cleanup: CleanupRegistry) -> NetFactory:
    return NetFactory(diyc_names, diyc_cleanup)


@pytest.fixture
def make_netns(diyc_net: NetFactory) -> Callable[..., diyc.NetNS]:
    return diyc_net.netns


@pytest.fixture
def netns(diyc_net: NetFactory) -> diyc.NetNS:
    return diyc_net.netns()


@pytest.fixture
def make_bridge(diyc_net: NetFactory) -> Callable[..., diyc.Link]:
    return diyc_net.bridge


@pytest.fixture
def bridge(diyc_net: NetFactory) -> diyc.Link:
    return diyc_net.bridge()


@pytest.fixture
def make_veth(diyc_net: NetFactory) -> Callable[..., VethPair]:
    return diyc_net.veth


@pytest.fixture
def veth_pair(diyc_net: NetFactory) -> VethPair:
    return diyc_net.veth(peer_netns=diyc_net.netns())


@pytest.fixture
def make_star(diyc_net: NetFactory) -> Callable[..., Star]:
    return diyc_net.star


@pytest.fixture
def make_p2p(diyc_net: NetFactory) -> Callable[..., PointToPoint]:
    return diyc_net.p2p


@pytest.fixture(name="host_unchanged")
def _host_unchanged_fixture() -> Callable[[], contextlib.AbstractContextManager[None]]:
    prefix = leak_check_prefix()
    return functools.partial(host_unchanged, prefix)


@pytest.fixture(name="assert_reachable")
def _assert_reachable_fixture() -> Callable[..., Any]:
    return assert_reachable


@pytest.fixture(name="assert_unreachable")
def _assert_unreachable_fixture() -> Callable[..., Any]:
    return assert_unreachable
