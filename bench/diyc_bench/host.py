"""What the benchmark makes on the host, how it is named, found and removed.

Everything the bench creates carries one prefix, ``db<pid>``: namespaces are
``db<pid>-<i>``, links ``db<pid><letter>...``, CNI container ids
``db<pid>-<i>``. Cleanup and leak checks look for that prefix and nothing
else, so a diycd, a CNI runtime or another bench on the same host is never
touched.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import diyc

__all__ = [
    "BenchError",
    "Cleanup",
    "Interrupted",
    "Names",
    "Slot",
    "Subnets",
    "block_signals",
    "bridge_ports",
    "create_namespaces",
    "delete_links",
    "delete_nft_table",
    "foreign_links_in",
    "handle_termination",
    "host_links",
    "nft_table_exists",
    "pick_subnets",
    "remove_namespaces",
    "remove_tree",
    "run",
    "scrub_namespaces",
    "unmount_under",
]

#: Highest N: one /21 per method leaves room, and a bridge holds 1023 ports
#: (N containers plus the warm-up one).
MAX_CONTAINERS = 1020
_WARM_UP_OFFSET = 2000  # host offset of the warm-up namespace's address in a /21


class BenchError(RuntimeError):
    """A step of the benchmark failed; the run exits non-zero."""


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP: all handled like Ctrl-C, so cleanup runs."""


@dataclass(frozen=True)
class Names:
    """Every name the bench gives to host objects, derived from one prefix."""

    prefix: str

    @classmethod
    def for_process(cls) -> Names:
        return cls(f"db{os.getpid()}")

    def netns(self, tag: str) -> str:
        return f"{self.prefix}-{tag}"

    def link(self, kind: str, tag: str = "") -> str:
        """A link name: prefix, one kind letter, the slot tag (at most 15 bytes)."""
        name = f"{self.prefix}{kind}{tag}"
        if len(name.encode()) > 15:
            raise BenchError(f"interface name {name!r} is longer than 15 bytes")
        return name

    def owns_link(self, name: str) -> bool:
        # The letter after the prefix keeps db12 from matching db123's links.
        return re.fullmatch(re.escape(self.prefix) + r"[a-z].*", name) is not None

    def owns_netns(self, name: str) -> bool:
        return name.startswith(self.prefix + "-")


@dataclass(frozen=True)
class Slot:
    """One container of a size: its namespace and the tag its names derive from."""

    index: int  # -1 for the warm-up slot
    netns: str
    tag: str

    @property
    def host_offset(self) -> int:
        """Host number of its address in a /21 (the gateway is 1)."""
        return _WARM_UP_OFFSET if self.index < 0 else self.index + 2


@dataclass(frozen=True)
class Subnets:
    """Private /21 networks, one per method, inside one unused 10.x.0.0/16."""

    base: ipaddress.IPv4Network

    def block(self, number: int) -> ipaddress.IPv4Network:
        return list(self.base.subnets(new_prefix=21))[number]

    def cycles(self) -> ipaddress.IPv4Network:
        """The /24 of the create/attach/detach/delete memory cycles (block 31)."""
        return next(self.block(31).subnets(new_prefix=24))


def run(argv: Sequence[str], *, input: bytes | None = None, env: dict[str, str] | None = None,
        timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Runs a program, raising BenchError with its stderr when it fails."""
    try:
        done = subprocess.run(list(argv), input=input, env=env, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"{' '.join(argv)}: {exc}") from exc
    if check and done.returncode != 0:
        detail = (done.stderr or done.stdout).decode(errors="replace").strip()
        raise BenchError(f"{' '.join(argv)} exited {done.returncode}: {detail}")
    return done


def _routed_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 destination the host routes, in any table, and its addresses."""
    found: list[ipaddress.IPv4Network] = []
    routes = json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or b"[]")
    for route in routes:
        dst = route.get("dst", "default")
        if dst != "default":
            found.append(ipaddress.ip_network(dst, strict=False))
    for link in json.loads(run(["ip", "-j", "-4", "addr", "show"]).stdout or b"[]"):
        for addr in link.get("addr_info", []):
            found.append(ipaddress.ip_network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    return found


def pick_subnets(seed: int) -> Subnets:
    """A 10.x.0.0/16 (x in 200..254) that nothing on the host routes yet.

    The start of the search depends on the seed (the pid), so two benches
    started together rarely pick the same one.
    """
    used = _routed_networks()
    candidates = list(range(200, 255))
    start = seed % len(candidates)
    for octet in candidates[start:] + candidates[:start]:
        base = ipaddress.IPv4Network(f"10.{octet}.0.0/16")
        if not any(base.overlaps(net) for net in used):
            return Subnets(base)
    raise BenchError("no free 10.x.0.0/16 (x in 200..254): every one overlaps a host route")


def create_namespaces(names: Iterable[str], on_created: Callable[[], None] | None = None) -> None:
    """Creates named namespaces (as `ip netns add`); not part of any timing."""
    for name in names:
        diyc.NetNS.create(name).close()
        if on_created is not None:
            on_created()


def remove_namespaces(names: Names) -> list[str]:
    """Removes every namespace with the prefix; returns errors, never raises."""
    errors: list[str] = []
    for name in diyc.NetNS.list():
        if names.owns_netns(name):
            try:
                diyc.NetNS.remove_name(name)
            except diyc.DiycError as exc:
                errors.append(f"remove netns {name}: {exc}")
    return errors


def host_links(names: Names) -> list[str]:
    """Links in the host namespace that carry the bench prefix."""
    with diyc.IPRoute() as host:
        return sorted(link.name for link in host.links() if names.owns_link(link.name))


def foreign_links_in(netns: str) -> list[str]:
    """Links in a bench namespace besides its loopback (what an attach adds)."""
    with diyc.IPRoute(netns=netns) as ipr:
        return [link.name for link in ipr.links() if link.name != "lo"]


def scrub_namespaces(slots: Iterable[Slot]) -> list[str]:
    """Deletes whatever an interrupted attach left in the namespaces.

    Deleting the namespace end of a veth takes the host end with it, so this
    undoes every method's attach, whoever named the host end.
    """
    errors: list[str] = []
    for slot in slots:
        try:
            with diyc.IPRoute(netns=slot.netns) as ipr:
                for link in ipr.links():
                    if link.name != "lo":
                        ipr.link_del(link.index)
        except diyc.NotFoundError:
            continue
        except diyc.DiycError as exc:
            errors.append(f"scrub {slot.netns}: {exc}")
    return errors


def bridge_ports(bridge: str) -> list[str]:
    """The ports of a bridge ([] if the bridge does not exist)."""
    try:
        return sorted(os.listdir(f"/sys/class/net/{bridge}/brif"))
    except FileNotFoundError:
        return []


def delete_links(names: Names) -> list[str]:
    """Deletes every host link with the prefix; returns errors, never raises."""
    errors: list[str] = []
    with diyc.IPRoute() as host:
        for link in host.links():
            if names.owns_link(link.name):
                try:
                    host.link_del(link.index)
                except diyc.NotFoundError:
                    pass  # a veth whose peer went first
                except diyc.DiycError as exc:
                    errors.append(f"delete link {link.name}: {exc}")
    return errors


def nft_table_exists(table: str) -> bool:
    """True if an inet table of that name exists (diycd's firewall table)."""
    listing = run(["nft", "list", "tables"]).stdout.decode()
    return any(line.split() == ["table", "inet", table] for line in listing.splitlines())


def delete_nft_table(table: str) -> list[str]:
    """Deletes the inet table if it exists; returns the error, if any, as a line."""
    if nft_table_exists(table):
        done = run(["nft", "delete", "table", "inet", table], check=False)
        if done.returncode != 0:
            return [f"nft delete table inet {table}: {done.stderr.decode(errors='replace').strip()}"]
    return []


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below root, deepest first (for unmounting)."""
    prefix = str(root).rstrip("/") + "/"
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == str(root) or point.startswith(prefix):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def unmount_under(root: Path) -> list[str]:
    """Lazily unmounts anything left mounted below root, so removing it is safe."""
    errors: list[str] = []
    for point in _mounts_under(root):
        done = run(["umount", "-l", point], check=False)
        if done.returncode != 0:
            errors.append(f"umount {point}: {done.stderr.decode(errors='replace').strip()}")
    return errors


def remove_tree(root: Path) -> list[str]:
    """Removes the bench's temporary directory, never following a mount."""
    errors = unmount_under(root)
    if _mounts_under(root):
        return errors + [f"{root} still has mounts; left in place"]
    shutil.rmtree(root, ignore_errors=True)
    if root.exists():
        errors.append(f"could not remove {root}")
    return errors


class Cleanup:
    """Undo steps run last-in first-out, each at most once, errors collected.

    Every object the bench creates registers its removal here right away, so
    an error or Ctrl-C at any point still leaves the host as it was.
    """

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], object]]] = []
        self.errors: list[str] = []

    def push(self, what: str, step: Callable[[], object]) -> None:
        self._steps.append((what, step))

    def run_all(self) -> list[str]:
        with block_signals():
            while self._steps:
                what, step = self._steps.pop()
                try:
                    result = step()
                except Exception as exc:  # cleanup must go on whatever failed
                    self.errors.append(f"cleanup {what}: {exc}")
                    continue
                if isinstance(result, list):
                    self.errors.extend(f"cleanup {what}: {e}" for e in result)
        return self.errors


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(f"signal {signal.Signals(signum).name}")


@contextmanager
def handle_termination() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise, so `finally` blocks clean up.

    SIGINT is installed explicitly too: a shell starts background jobs with
    it ignored, and `kill -INT` must still stop a bench started that way.
    """
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def block_signals() -> Iterator[None]:
    """Ignores Ctrl-C and SIGTERM while cleaning up, so cleanup is not cut short."""
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    else:
        previous = {}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
