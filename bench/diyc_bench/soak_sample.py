"""What the soak counts on the host and in diycd, one sample at a time.

Three kinds of numbers. *Owned* counts are of objects only the soak's own
diycd and names make (links labelled for the soak's networks, namespaces
and cgroups with its prefix, mounts below its state directory, rules in its
nftables table, diycd's fds, threads, children and state files): nothing
else on the host moves them, so the soak asserts they do not grow.
*Bounded* ones (diycd's route-netlink sockets and malloc arenas) move by
design and are held to a ceiling. *Host* totals (every link, namespace, mount, overlay mount, cgroup below any
``diyc`` parent) are recorded for the reader but never asserted: tests and
other programs running on the same host change them at any moment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import diyc

__all__ = ["BOUNDED_FIELDS", "DEFAULT_MALLOC_ARENAS", "HOST_FIELDS", "OWNED_FIELDS", "Sample", "SoakTarget", "malloc_arena_limit", "owned_differences", "take_sample"]

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_NETNS_DIR = Path("/run/netns")
_ALIAS_PREFIX = "diyc:"


@dataclass(frozen=True)
class SoakTarget:
    """The diycd under test and the names of what the soak makes through it."""

    pid: int
    state_dir: Path
    nft_table: str
    prefix: str  # every network, container and namespace name of the soak starts with it


@dataclass(frozen=True)
class Sample:
    """One observation, after ``cycles`` measured cycles (0: the baseline, after the warm-up)."""

    cycles: int
    elapsed_s: float
    # owned: asserted not to grow
    links: int  # host links whose diyc owner alias names one of the soak's networks
    netns: int  # /run/netns entries with the soak's prefix
    mounts: int  # mounts at or below the state directory (containers' namespaces; their root is
    # mounted in their own mount namespace, which leaves with them)
    nft_rules: int  # rules and set elements in diycd's nftables table
    cgroups: int  # cgroup directories of the soak's containers, every hierarchy
    fds: int  # diycd's open file descriptors, route-netlink sockets aside
    route_sockets: int  # diycd's route-netlink sockets: one per thread at most (see below)
    malloc_arenas: int  # diycd's glibc malloc arenas: at most its limit (see below)
    threads: int  # diycd's threads
    children: int  # live or zombie processes whose parent is diycd
    monitors: int  # diyc-init processes of the soak's containers
    state_files: int  # files and directories below the state directory
    # not asserted
    rss_kib: int
    host_links: int
    host_netns: int
    host_mounts: int
    host_overlay_mounts: int
    host_diyc_cgroups: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


#: Counts that must come back to their baseline exactly.
OWNED_FIELDS = ("links", "netns", "mounts", "nft_rules", "cgroups", "fds", "threads", "children", "monitors",
                "state_files")
#: diycd keeps one route-netlink socket per thread (server/host_socket.h),
#: closed when the thread ends, and gRPC's synchronous server retires and
#: starts worker threads as calls come and go: their number follows the
#: threads that happened to serve a network call, so the soak asserts at most
#: one per live thread rather than an exact count.
#: diycd caps glibc's malloc arenas (server/main.cc): without the cap
#: every gRPC worker thread that meets contention gets a new one, up to
#: eight per core, and RSS climbs with them. Counted from the memory map: the
#: main arena plus one 64 MiB-aligned heap per other arena (an arena grown
#: past 64 MiB would chain a second heap; diycd's never get near that).
BOUNDED_FIELDS = ("route_sockets", "malloc_arenas")
DEFAULT_MALLOC_ARENAS = 2  # server/main.cc kMallocArenas
#: Host-wide totals, shown for context.
HOST_FIELDS = ("host_links", "host_netns", "host_mounts", "host_overlay_mounts", "host_diyc_cgroups")
assert set(OWNED_FIELDS + BOUNDED_FIELDS + HOST_FIELDS + ("cycles", "elapsed_s", "rss_kib")) == {f.name for f in fields(Sample)}


def owned_differences(sample: Sample, baseline: Sample) -> dict[str, tuple[int, int]]:
    """Owned counts that differ from the baseline: field -> (baseline, now)."""
    return {name: (getattr(baseline, name), getattr(sample, name)) for name in OWNED_FIELDS
            if getattr(sample, name) != getattr(baseline, name)}


def take_sample(target: SoakTarget, cycles: int, elapsed_s: float) -> Sample:
    links, host_links = _links(target.prefix)
    netns_entries = _netns_entries()
    mount_points = list(_mount_points())
    state = os.path.realpath(target.state_dir)
    cgroups, diyc_cgroups = _cgroups(target.prefix)
    fds, route_sockets = _fds(target.pid)
    return Sample(
        cycles=cycles,
        elapsed_s=round(elapsed_s, 3),
        links=links,
        netns=sum(1 for name in netns_entries if name.startswith(target.prefix)),
        mounts=sum(1 for point, _ in mount_points if point == state or point.startswith(state + "/")),
        nft_rules=nft_rule_count(target.nft_table),
        cgroups=cgroups,
        fds=fds - route_sockets,
        route_sockets=route_sockets,
        malloc_arenas=1 + _malloc_heaps(target.pid),
        threads=_count_dir(f"/proc/{target.pid}/task"),
        children=len(_children(target.pid)),
        monitors=_monitors(state),
        state_files=sum(len(dirs) + len(files) for _, dirs, files in os.walk(target.state_dir)),
        rss_kib=_rss_kib(target.pid),
        host_links=host_links,
        host_netns=len(netns_entries),
        host_mounts=len(mount_points),
        host_overlay_mounts=sum(1 for _, fstype in mount_points if fstype == "overlay"),
        host_diyc_cgroups=diyc_cgroups,
    )


def _links(prefix: str) -> tuple[int, int]:
    """(links labelled for the soak's networks, all host links).

    The alias is ``diyc:INSTANCE:NETWORK``; network names cannot hold ':'.
    """
    with diyc.IPRoute() as host:
        links = host.links()
    owned = sum(1 for link in links
                if link.alias and link.alias.startswith(_ALIAS_PREFIX)
                and link.alias.rsplit(":", 1)[1].startswith(prefix))
    return owned, len(links)


def _netns_entries() -> list[str]:
    try:
        return os.listdir(_NETNS_DIR)
    except FileNotFoundError:
        return []


def _mount_points() -> Iterator[tuple[str, str]]:
    """(mount point, filesystem type) of every mount of this mount namespace."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as mountinfo:
        for line in mountinfo:
            parts = line.split()
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[4])
            fstype = parts[parts.index("-") + 1]
            yield point, fstype


def _cgroups(prefix: str) -> tuple[int, int]:
    """(cgroups of the soak's containers, all cgroups right below a ``diyc*`` parent).

    diycd puts a container's cgroup at PARENT/NAME in every v1 hierarchy and
    in the v2 tree (pure v2: the tree is the root itself).
    """
    parents = [p for pattern in ("diyc*", "*/diyc*") for p in _CGROUP_ROOT.glob(pattern) if p.is_dir()]
    below = [child.name for parent in parents for child in _subdirs(parent)]
    return sum(1 for name in below if name.startswith(prefix)), len(below)


def _subdirs(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir()]
    except OSError:  # removed meanwhile
        return []


def nft_rule_count(table: str) -> int:
    """Rules plus set and map elements in table ``inet TABLE`` (0 when it does not exist)."""
    nft = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    if nft is None:
        raise RuntimeError("nft is not installed")
    done = subprocess.run([nft, "-j", "list", "table", "inet", table], capture_output=True, text=True,
                          timeout=30, check=False)
    if done.returncode != 0:
        if "No such file or directory" in done.stderr:
            return 0
        raise RuntimeError(f"nft list table inet {table}: {done.stderr.strip()}")
    count = 0
    for item in json.loads(done.stdout).get("nftables", []):
        if "rule" in item:
            count += 1
        for kind in ("set", "map"):
            if kind in item:
                count += len(item[kind].get("elem", []))
    return count


def _count_dir(path: str) -> int:
    return len(os.listdir(path))


_HEAP_SIZE = 64 << 20  # glibc's HEAP_MAX_SIZE on 64-bit


def _malloc_heaps(pid: int) -> int:
    """Heaps of glibc's non-main arenas: anonymous mappings of 64 MiB in total
    (the part in use, then the reserved rest) starting 64 MiB-aligned."""
    regions = []
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            parts = line.split()
            start, end = (int(x, 16) for x in parts[0].split("-"))
            regions.append((start, end, len(parts) > 5))
    heaps = 0
    for i, (start, end, named) in enumerate(regions):
        if named or start % _HEAP_SIZE:
            continue
        j = i + 1
        while end - start < _HEAP_SIZE and j < len(regions) and regions[j][0] == end and not regions[j][2]:
            end = regions[j][1]
            j += 1
        heaps += end - start == _HEAP_SIZE
    return heaps


def malloc_arena_limit(pid: int) -> int:
    """The arena limit diycd runs with: MALLOC_ARENA_MAX from its environment, else its own default."""
    with open(f"/proc/{pid}/environ", "rb") as environ:
        for entry in environ.read().split(b"\0"):
            if entry.startswith(b"MALLOC_ARENA_MAX="):
                return int(entry.split(b"=", 1)[1])
    return DEFAULT_MALLOC_ARENAS


def _fds(pid: int) -> tuple[int, int]:
    """(open fds, of which route-netlink sockets) of a process."""
    route = set()
    with open(f"/proc/{pid}/net/netlink", encoding="ascii") as table:
        next(table)  # sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
        for line in table:
            parts = line.split()
            if parts[1] == "0":  # NETLINK_ROUTE
                route.add(f"socket:[{parts[-1]}]")
    fds = 0
    sockets = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        fds += 1
        sockets += target in route
    return fds, sockets


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def _proc_stat(pid: str) -> tuple[str, int] | None:
    """(command, parent pid) of a process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            text = stat.read()
    except OSError:
        return None
    command = text[text.index("(") + 1:text.rindex(")")]
    return command, int(text[text.rindex(")") + 2:].split()[1])


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _proc_stat(entry)) is not None and stat[1] == pid:
            found.append(int(entry))
    return found


def _monitors(state_dir: str) -> int:
    """diyc-init processes whose command line names the state directory."""
    count = 0
    needle = state_dir.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or (stat := _proc_stat(entry)) is None or not stat[0].startswith("diyc-init"):
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if needle in cmdline.read():
                    count += 1
        except OSError:
            continue
    return count

