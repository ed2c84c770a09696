"""Namespaces, links, addresses and routes: the Python face of diyc's netlink core.

Names follow pyroute2 and the kernel's own keywords (``ifname``, ``mtu``,
``address``, ``master``), but as typed methods instead of string verbs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

from . import _diyc
from .errors import InvalidArgumentError

__all__ = [
    "NetNS",
    "IPRoute",
    "Link",
    "Addr",
    "Route",
    "PingResult",
    "ping",
    "sysctl_get",
    "sysctl_set",
    "validate_ifname",
    "validate_netns_name",
    "parse_cidr",
    "parse_ip",
]


class NetNS:
    """A handle to a network namespace.

    ``NetNS.create(name)`` makes a named namespace exactly as ``ip netns add``
    does; used as a context manager it is removed on exit. Handles from
    ``NetNS.open(...)`` are only closed on exit: the namespace stays.
    """

    def __init__(self, handle: _diyc.Netns, *, owned: bool) -> None:
        self._handle = handle
        self._owned = owned

    @classmethod
    def create(cls, name: str) -> NetNS:
        return cls(_diyc.Netns.create(name), owned=True)

    @classmethod
    def open(cls, name: str | None = None, *, path: str | None = None, pid: int | None = None) -> NetNS:
        """Opens a namespace by name (under /run/netns), nsfs path, or pid."""
        if sum(x is not None for x in (name, path, pid)) != 1:
            raise InvalidArgumentError("NetNS.open takes exactly one of name, path or pid")
        if name is not None:
            return cls(_diyc.Netns.open_name(name), owned=False)
        if path is not None:
            return cls(_diyc.Netns.open_path(path), owned=False)
        assert pid is not None
        return cls(_diyc.Netns.open_pid(pid), owned=False)

    @classmethod
    def current(cls) -> NetNS:
        """The calling thread's namespace."""
        return cls(_diyc.Netns.current(), owned=False)

    @staticmethod
    def list() -> list[str]:
        """Names of the namespaces under /run/netns."""
        return _diyc.Netns.list()

    @staticmethod
    def remove_name(name: str) -> None:
        """Removes /run/netns/NAME (NotFoundError if absent)."""
        _diyc.Netns.remove(name)

    @property
    def name(self) -> str | None:
        return self._handle.name or None

    @property
    def path(self) -> str:
        return self._handle.path

    @property
    def fd(self) -> int:
        return self._handle.fd

    @property
    def closed(self) -> bool:
        return not self._handle.valid

    def same_as(self, other: NetNS) -> bool:
        return self._handle.same_as(other._handle)

    def remove(self) -> None:
        """Removes the name and closes the handle."""
        if self.name is None:
            raise InvalidArgumentError(f"netns {self.path!r} has no name to remove")
        try:
            _diyc.Netns.remove(self.name)
        finally:
            self.close()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> NetNS:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._owned and not self.closed:
            self.remove()
        else:
            self.close()

    def __repr__(self) -> str:
        return f"NetNS({self.name or self.path!r})"

    @property
    def _native(self) -> _diyc.Netns:
        return self._handle


def _native_netns(netns: NetNS | str | None) -> _diyc.Netns | None:
    if netns is None:
        return None
    if isinstance(netns, str):
        return _diyc.Netns.open_name(netns)
    if netns.closed:
        # A handle closed by remove(): the namespace is gone for this caller.
        from .errors import NotFoundError
        raise NotFoundError(f"netns {netns.name or netns.path!r} was removed")
    return netns._native


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str | None
    mtu: int
    address: str | None
    state: Literal["up", "down"]
    master: str | None
    alias: str | None = None


@dataclass(frozen=True)
class Addr:
    ifname: str | None
    index: int
    address: str
    prefixlen: int
    family: int

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefixlen}"


@dataclass(frozen=True)
class Route:
    dst: str
    gateway: str | None
    dev: str | None
    family: int


@dataclass(frozen=True)
class PingResult:
    sent: int
    received: int
    rtts_ms: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every request was answered."""
        return self.sent > 0 and self.received == self.sent


LinkRef = int | str


class IPRoute:
    """A route-netlink socket living in one namespace (the host's by default).

    The socket stays in its namespace, so it configures that namespace from
    any thread without the thread ever switching namespace.
    """

    def __init__(self, netns: NetNS | str | None = None) -> None:
        self._keep = netns  # the handle must outlive the socket's creation
        self._sock = _diyc.Socket(_native_netns(netns))

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> IPRoute:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # links

    def bridge_add(self, ifname: str, *, mtu: int | None = None, state: str = "up") -> Link:
        info = self._sock.bridge_add(ifname, mtu or 0, _is_up(state))
        return self._link(info)

    def veth_add(self, ifname: str, *, peer: str, peer_netns: NetNS | str | None = None,
                 mtu: int | None = None, master: str | None = None, state: str = "down",
                 peer_address: str | None = None) -> Link:
        """Creates a veth pair; the peer is made directly in peer_netns under its final name.

        The peer starts down (the kernel cannot bring it up before the pair
        exists); bring it up with an IPRoute in its namespace.
        """
        master_index = self.get_link(master).index if master else 0
        info = self._sock.veth_add(ifname, peer, _native_netns(peer_netns), mtu or 0, master_index,
                                   _is_up(state), peer_address or "", False)
        return self._link(info)

    def link_set(self, link: LinkRef, /, *, state: str | None = None, master: str | None = None,
                 nomaster: bool = False, mtu: int | None = None, address: str | None = None,
                 ifname: str | None = None, alias: str | None = None) -> None:
        """Changes a link (by name or index); ``ifname=`` renames it, as ``ip link set ... name``."""
        if master is not None and nomaster:
            raise InvalidArgumentError("link_set: master and nomaster exclude each other")
        master_index = self.get_link(master).index if master is not None else (0 if nomaster else None)
        self._sock.link_change(link, master_index, None if state is None else _is_up(state), mtu, address,
                               ifname, alias)

    def link_del(self, ifname: LinkRef) -> None:
        self._sock.link_del(ifname)

    def get_link(self, ifname: LinkRef) -> Link:
        """The link; NotFoundError if it does not exist."""
        return self._link(self._sock.get_link(ifname))

    def find_link(self, ifname: LinkRef) -> Link | None:
        info = self._sock.find_link(ifname)
        return None if info is None else self._link(info)

    def links(self) -> list[Link]:
        infos = self._sock.links()
        names = {i.index: i.name for i in infos}
        return [_to_link(i, names.get(i.master_index)) for i in infos]

    def lo_up(self) -> None:
        self._sock.lo_up()

    # addresses

    def addr_add(self, ifname: LinkRef, cidr: str, *, nodad: bool = False) -> None:
        self._sock.addr_add(self._index(ifname), cidr, nodad)

    def addr_del(self, ifname: LinkRef, cidr: str) -> None:
        self._sock.addr_del(self._index(ifname), cidr)

    def addrs(self, ifname: LinkRef | None = None, *, family: int | None = None) -> list[Addr]:
        index = None if ifname is None else self._index(ifname)
        rows = self._sock.addrs(index, family)
        names = self._names() if rows else {}
        return [Addr(names.get(i), i, a, p, f) for (i, a, p, f) in rows]

    # routes

    def route_add(self, dst: str, *, via: str | None = None, dev: LinkRef | None = None) -> None:
        """Adds ``dst`` ("default" or a CIDR) via a gateway and/or a device."""
        self._sock.route_add(dst, via, self._index(dev) if dev is not None else 0)

    def route_del(self, dst: str, *, via: str | None = None, dev: LinkRef | None = None) -> None:
        self._sock.route_del(dst, via, self._index(dev) if dev is not None else 0)

    def routes(self, family: int = 4) -> list[Route]:
        rows = self._sock.routes(family)
        names = self._names() if rows else {}
        return [Route(dst, gw, names.get(oif) if oif else None, fam) for (dst, gw, oif, fam) in rows]

    # helpers

    def _index(self, ifname: LinkRef) -> int:
        return ifname if isinstance(ifname, int) else self._sock.get_link(ifname).index

    def _names(self) -> dict[int, str]:
        return {i.index: i.name for i in self._sock.links()}

    def _link(self, info: _diyc.LinkInfo) -> Link:
        master = None
        if info.master_index:
            found = self._sock.find_link(info.master_index)
            master = found.name if found is not None else None
        return _to_link(info, master)


def _to_link(info: _diyc.LinkInfo, master: str | None) -> Link:
    return Link(index=info.index, name=info.name, kind=info.kind or None, mtu=info.mtu,
                address=info.mac or None, state="up" if info.up else "down", master=master,
                alias=info.alias or None)


def _is_up(state: str) -> bool:
    if state not in ("up", "down"):
        raise InvalidArgumentError(f"state must be 'up' or 'down', not {state!r}")
    return state == "up"


def ping(netns: NetNS | str | None, address: str, *, count: int = 3, timeout: float = 1.0,
         interval: float = 0.0) -> PingResult:
    """ICMP echo from inside ``netns``; unreachable means ``received == 0``, not an error.

    ``timeout`` is how long to wait for each reply, in seconds.
    """
    sent, received, rtts = _diyc.ping(_native_netns(netns), address, count, timeout, interval)
    return PingResult(sent, received, list(rtts))


def sysctl_set(netns: NetNS | str | None, key: str, value: str | int) -> None:
    """Writes /proc/sys/KEY as seen from ``netns`` (net.* keys are per namespace)."""
    _diyc.sysctl_set(_native_netns(netns), key, str(value))


def sysctl_get(netns: NetNS | str | None, key: str) -> str:
    return _diyc.sysctl_get(_native_netns(netns), key)


def validate_ifname(name: str) -> None:
    """Raises InvalidArgumentError unless ``name`` is a valid interface name."""
    _diyc.validate_ifname(name)


def validate_netns_name(name: str) -> None:
    _diyc.validate_netns_name(name)


def parse_cidr(text: str) -> tuple[str, int, int]:
    """Strictly parses "ADDR/LEN" into (address, prefixlen, family 4|6)."""
    return _diyc.parse_cidr(text)


def parse_ip(text: str) -> tuple[str, int]:
    """Strictly parses an address (inet_pton rules) into (address, family 4|6)."""
    return _diyc.parse_ip(text)
