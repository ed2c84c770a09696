"""Helpers for the diycd tests: run-unique names and subnets, host inspection.

Everything a test asks diycd to create carries the run's prefix (the same
one the diyc pytest plugin gives namespaces and links), so concurrent runs
and anything else on the host are never touched.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import diyc
from diyc.cli import to_dict
from diyc.client import Client
from diyc.v1 import network_pb2

PYTHON = "/usr/bin/python3"
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(diyc.__file__)))
ALIAS_PREFIX = "diyc:"
MAX_IFNAME_LEN = 15
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
# Second octets of the test subnets: 10.228.0.0-10.255.255.0, away from the
# 10.100-10.227 range the plugin's own topologies use.
_SUBNET_BASE = 228
_SUBNET_SPAN = 28


def _b36(value: int) -> str:
    digits = ""
    while True:
        value, rem = divmod(value, 36)
        digits = _B36[rem] + digits
        if not value:
            return digits


class RunNames:
    """Names and subnets for diycd objects, unique within and across runs."""

    def __init__(self, prefix: str | None = None) -> None:
        # Imported late: the suite's conftest registers the plugin first.
        from diyc.pytest_plugin import session_names

        self.prefix = prefix or session_names().prefix
        self._counter = itertools.count(1)
        self._subnets = itertools.count(0)
        self._second = _SUBNET_BASE + os.getpid() % _SUBNET_SPAN
        self._lock = threading.Lock()

    def network(self, tag: str = "net") -> str:
        return f"{self.prefix}-{tag}{_b36(next(self._counter))}"

    def bridge(self) -> str:
        # "d" keeps clear of the plugin's own link tags (b, v, p, l, n).
        name = f"{self.prefix}d{_b36(next(self._counter))}"
        assert len(name) <= MAX_IFNAME_LEN, name
        return name

    def subnet24(self) -> ipaddress.IPv4Network:
        """A /24 no host route overlaps (so no foreign bridge holds it)."""
        with self._lock:
            taken = _host_ipv4_routes()
            for _ in range(256 * _SUBNET_SPAN):
                index = next(self._subnets)
                second = _SUBNET_BASE + (self._second - _SUBNET_BASE + index // 256) % _SUBNET_SPAN
                candidate = ipaddress.IPv4Network(f"10.{second}.{index % 256}.0/24")
                if not any(candidate.overlaps(route) for route in taken):
                    return candidate
        raise RuntimeError("every candidate test subnet overlaps a host route")

    def subnet(self, prefixlen: int = 24) -> str:
        """A subnet of the given length (24 or longer) carved from a fresh /24."""
        if not 24 <= prefixlen <= 30:
            raise ValueError(f"test subnets are /24 to /30, not /{prefixlen}")
        block = self.subnet24()
        return str(next(block.subnets(new_prefix=prefixlen)))


def _host_ipv4_routes() -> list[ipaddress.IPv4Network]:
    with diyc.IPRoute() as host:
        return [ipaddress.IPv4Network(route.dst, strict=False)
                for route in host.routes(family=4) if route.dst != "default"]


def create_network(client: Client, names: RunNames, *, prefixlen: int = 24, **kwargs: Any) -> network_pb2.Network:
    """A network with a run-unique name, bridge and subnet; keyword arguments override them.

    ``bridge=None`` leaves the bridge name to diycd.
    """
    name = kwargs.pop("name", None) or names.network()
    subnet = kwargs.pop("subnet", None) or names.subnet(prefixlen)
    kwargs.setdefault("bridge", names.bridge())
    return client.create_network(name, subnet, **kwargs)


# --------------------------------------------------------------------------
# Host inspection


@dataclass(frozen=True)
class HostLink:
    name: str
    kind: str | None
    master: str | None
    alias: str | None
    state: str


def host_links() -> dict[str, HostLink]:
    with diyc.IPRoute() as host:
        return {link.name: HostLink(link.name, link.kind, link.master, link.alias, link.state)
                for link in host.links()}


def alias_network(alias: str | None) -> str | None:
    """The network a diycd owner alias names: "diyc:NAME" or "diyc:INSTANCE:NAME".

    Network names cannot hold ':', so the name is whatever follows the last one.
    """
    if not alias or not alias.startswith(ALIAS_PREFIX):
        return None
    return alias.rsplit(":", 1)[1]


def diyc_links(prefix: str) -> dict[str, HostLink]:
    """Host links diycd labelled as belonging to one of this run's networks."""
    return {name: link for name, link in host_links().items()
            if (alias_network(link.alias) or "").startswith(prefix)}


def eventually(check: Callable[[], bool], timeout: float = 3.0) -> bool:
    """True once check() is; False if it never is within the timeout.

    For what diycd finishes in the background: a detach stops traffic and
    frees the address at once, and deletes the veth pair in a batch a few
    milliseconds later.
    """
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def settled_diyc_links(prefix: str, expected: set[str], timeout: float = 3.0) -> set[str]:
    """diyc_links once they equal `expected`, or whatever they are at the timeout.

    A detach stops traffic at once but deletes the veth in a batch a few
    milliseconds later (deleting links one by one costs the kernel ~20 ms
    each), so a test that counts links waits for the batch.
    """
    deadline = time.monotonic() + timeout
    while True:
        links = set(diyc_links(prefix))
        if links == expected or time.monotonic() > deadline:
            return links
        time.sleep(0.02)


def netns_links(netns: diyc.NetNS | str) -> list[str]:
    with diyc.IPRoute(netns=netns) as ipr:
        return sorted(link.name for link in ipr.links())


def nft(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    assert binary is not None, "nft is not installed"
    return subprocess.run([binary, *args], capture_output=True, text=True, check=check, timeout=30)


def nft_tables() -> list[str]:
    """`nft list tables` as 'family name' strings."""
    return [line.removeprefix("table ").strip() for line in nft("list", "tables").stdout.splitlines()
            if line.startswith("table ")]


_CIDR = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}/\d{1,2}\b")


def masqueraded_subnets(table: str) -> set[str]:
    """IPv4 CIDRs that `nft list table` text masquerades.

    Understands a subnet on the masquerade rule itself, a set (@name) of
    subnets on it, and one level of jump/goto into a chain that masquerades.
    """
    sets = {m.group(1): set(_CIDR.findall(m.group(2)))
            for m in re.finditer(r"^\s*set (\S+) \{(.*?)^\s*\}", table, re.M | re.S)}
    chains = {m.group(1): m.group(2)
              for m in re.finditer(r"^\s*chain (\S+) \{(.*?)^\s*\}", table, re.M | re.S)}
    masq_chains = {name for name, body in chains.items() if "masquerade" in body}
    found: set[str] = set()
    for line in table.splitlines():
        jumps = re.findall(r"\b(?:jump|goto) (\S+)", line)
        if "masquerade" not in line and not any(target in masq_chains for target in jumps):
            continue
        found.update(_CIDR.findall(line))
        for ref in re.findall(r"@(\w+)", line):
            found.update(sets.get(ref, ()))
    return found


def other_diycd_pids(own: Iterable[int | None]) -> list[int]:
    """diycd processes on this host that these tests did not start."""
    mine = {pid for pid in own if pid}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in mine:
            continue
        try:
            exe = os.readlink(f"/proc/{entry}/exe")
        except OSError:
            continue
        if os.path.basename(exe.removesuffix(" (deleted)")) == "diycd":
            found.append(int(entry))
    return found


def snapshot(client: Client) -> State:
    """Networks and attachments as sorted plain data, for comparing states."""
    networks = sorted((to_dict(n) for n in client.list_networks()), key=lambda d: d["name"])
    attachments = sorted((to_dict(a) for a in client.list_attachments()),
                         key=lambda d: (d["network"], d["ip"]))
    return networks, attachments


State = tuple[list[dict[str, Any]], list[dict[str, Any]]]


def state_differences(before: State, after: State) -> list[str]:
    """Field by field, how two snapshots differ (for assertion messages)."""
    differences: list[str] = []
    for kind, key, old, new in (("network", ("name",), before[0], after[0]),
                                ("attachment", ("network", "host_ifname"), before[1], after[1])):
        old_by = {tuple(d.get(k) for k in key): d for d in old}
        new_by = {tuple(d.get(k) for k in key): d for d in new}
        for ident in sorted(old_by.keys() - new_by.keys()):
            differences.append(f"{kind} {ident} is gone")
        for ident in sorted(new_by.keys() - old_by.keys()):
            differences.append(f"{kind} {ident} appeared")
        for ident in sorted(old_by.keys() & new_by.keys()):
            for field in sorted(old_by[ident].keys() | new_by[ident].keys()):
                was, now = old_by[ident].get(field), new_by[ident].get(field)
                if was != now:
                    differences.append(f"{kind} {ident}: {field} was {was!r}, now {now!r}")
    return differences


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for `python3 -m diyc` in a subprocess."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DIYC_SOCKET")}
    env["PYTHONPATH"] = PACKAGE_ROOT
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Runs `/usr/bin/python3 -m diyc ARGS...`, capturing text output."""
    return subprocess.run([PYTHON, "-m", "diyc", *args], capture_output=True, text=True, timeout=timeout,
                          env=kwargs.pop("env", None) or cli_env(), **kwargs)
