"""Helpers for the crash and race tests of diycd.

Three things live here, shared by ``test_faults.py`` and ``test_races.py``:

* the fault points diycd has, read from ``server/fault.h`` itself, so a point
  added there is exercised without anyone remembering to add a test;
* ``fault_diycd``, a factory of diycd instances whose environment can arm a
  fault point (``DIYC_FAULT``) and that clean up after themselves whatever a
  crash left behind, each with an nftables table of its own so its rules can
  be read without those of any other diycd on the host;
* :func:`check_consistent`, the one invariant every scenario ends with: each
  network, attachment and container either fully exists (listed, and its
  bridge, veth, namespace, cgroup and record are there and work) or fully
  does not (not listed, and nothing of it is left in the kernel, the cgroup
  trees, the mount table or the state directory).
"""

from __future__ import annotations

import errno
import glob
import ipaddress
import itertools
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import diyc
from diyc.client import Client
from diyc.daemon import DiycdProcess, DiycdProcessError
from diyc.errors import DiycError
from diyc.v1 import container_pb2, network_pb2
from diycd_support import HostLink, RunNames, eventually, host_links, netns_links, nft

if TYPE_CHECKING:
    from diyc.pytest_plugin import CleanupRegistry

REPO = Path(__file__).resolve().parents[2]
FAULT_HEADER = REPO / "server" / "fault.h"
CGROUP_ROOT = "/sys/fs/cgroup"
# Containers' cgroups sit below this parent in every hierarchy (Containers::Options).
CGROUP_PARENT = "diyc"
FAULT_ENV = "DIYC_FAULT"
# Second octets the diycd tests use for subnets (see diycd_support.RunNames).
_SUBNET_SECONDS = range(228, 256)


# --------------------------------------------------------------------------
# Fault points


def fault_points(header: Path = FAULT_HEADER) -> list[str]:
    """The names in ``kFaultPoints`` of server/fault.h, in declaration order.

    Parsed from the header rather than listed here, so the crash tests cover
    a point as soon as it exists. Comments are dropped first: a quoted word
    in one must not become a point.
    """
    text = header.read_text(encoding="utf-8")
    match = re.search(r"kFaultPoints\[\]\s*=\s*\{(.*?)\};", text, re.S)
    if match is None:
        raise AssertionError(f"{header} has no kFaultPoints[] array")
    body = re.sub(r"//[^\n]*|/\*.*?\*/", "", match.group(1), flags=re.S)
    points = re.findall(r'"([^"\\]+)"', body)
    if not points:
        raise AssertionError(f"kFaultPoints in {header} lists no point")
    return points


# --------------------------------------------------------------------------
# Names diycd derives


def instance_id(state_dir: str) -> str:
    """diycd's instance id for a state directory (server/names.cc InstanceId).

    The id is part of the alias diycd puts on every link it makes, so links
    of this instance can be told from those of any other diycd.
    """
    value = 1469598103934665603
    for byte in state_dir.encode():
        value = ((value ^ byte) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return f"{value & 0xFFFFFF:06x}"


def free_subnet(prefixlen: int, taken: Iterable[ipaddress.IPv4Network] = ()) -> ipaddress.IPv4Network:
    """A 10.228-255.x.0/prefixlen no host route (and nothing in ``taken``) overlaps.

    For subnets larger than the /24s :class:`RunNames` hands out (a /21 holds
    the 1023 ports of a full bridge). The start depends on the pid, so
    concurrent runs rarely try the same block first.
    """
    with diyc.IPRoute() as host:
        routes = [ipaddress.IPv4Network(r.dst, strict=False) for r in host.routes(family=4) if r.dst != "default"]
    avoid = routes + list(taken)
    blocks = [block for second in _SUBNET_SECONDS
              for block in ipaddress.IPv4Network(f"10.{second}.0.0/16").subnets(new_prefix=prefixlen)]
    start = os.getpid() % len(blocks)
    for block in blocks[start:] + blocks[:start]:
        if not any(block.overlaps(net) for net in avoid):
            return block
    raise RuntimeError(f"no /{prefixlen} in 10.228.0.0-10.255.255.255 is free of host routes")


# --------------------------------------------------------------------------
# A diycd whose faults can be armed


@dataclass
class FaultyDiycd:
    """One diycd instance for crash tests, with its own nftables table."""

    process: DiycdProcess
    table: str

    @property
    def state_dir(self) -> Path:
        return Path(self.process.state_dir)

    @property
    def instance(self) -> str:
        return instance_id(self.process.state_dir)

    @property
    def mark(self) -> str:
        """The alias prefix of every link this instance owns."""
        return f"diyc:{self.instance}:"

    def client(self, timeout: float = 30.0) -> Client:
        return self.process.client(timeout=timeout)

    def start(self, fault: str | None = None) -> None:
        """Starts diycd, with ``fault`` armed (DIYC_FAULT) or with none."""
        if fault is None:
            self.process.env.pop(FAULT_ENV, None)
        else:
            self.process.env[FAULT_ENV] = fault
        self.process.start(timeout=15)

    def restart(self, fault: str | None = None) -> None:
        """A clean stop (SIGTERM) if running, then a start with or without a fault."""
        if self.process.running:
            assert self.process.stop() == 0, f"diycd did not exit cleanly on SIGTERM\n{self.process.log_tail()}"
        self.start(fault)

    def wait_exit(self, timeout: float = 15.0) -> int:
        """diycd's exit status once it has ended on its own (negative: killed by that signal)."""
        if not eventually(lambda: not self.process.running, timeout):
            raise AssertionError(f"diycd still runs {timeout:g}s after it should have died\n{self.process.log_tail()}")
        code = self.process.returncode
        assert code is not None
        return code

    def links(self) -> dict[str, HostLink]:
        """Host links carrying this instance's mark."""
        return {name: link for name, link in host_links().items() if (link.alias or "").startswith(self.mark)}

    def network_links(self, network: str) -> dict[str, HostLink]:
        return {name: link for name, link in self.links().items() if link.alias == self.mark + network}

    def nft_text(self) -> str:
        """This instance's nftables table as `nft list table` prints it; "" when absent."""
        listed = nft("list", "table", "inet", self.table, check=False)
        return listed.stdout if listed.returncode == 0 else ""

    def log_since(self, start: int) -> str:
        return self.process.log()[start:]


def expect_fault_kill(diycd: FaultyDiycd, point: str, call: Callable[[], object]) -> DiycError:
    """Runs ``call``, which must reach fault ``point``: UNAVAILABLE, then diycd dead by SIGKILL.

    The fault's own log line proves the kill came from the point and not
    from a crash of diycd elsewhere.
    """
    __tracebackhide__ = True
    try:
        result = call()
    except DiycError as exc:
        error = exc
    else:
        raise AssertionError(f"the call returned {result!r} instead of dying at fault point {point}\n"
                             f"{diycd.process.log_tail()}")
    assert error.code == "UNAVAILABLE", f"expected UNAVAILABLE when diycd dies, got {error.code}: {error}"
    code = diycd.wait_exit()
    assert code == -signal.SIGKILL, f"diycd ended with status {code}, not SIGKILL\n{diycd.process.log_tail()}"
    assert f"fault point {point} reached: SIGKILL" in diycd.process.log(), diycd.process.log_tail()
    return error


# Instance directories are numbered across the session: every factory shares
# the session's diycd root.
_instance_numbers = itertools.count(1)


class DiycdFactory:
    """Makes :class:`FaultyDiycd` instances and cleans up each at teardown.

    Teardown restarts a dead instance without a fault (so the startup
    reconcile runs), removes every container, network and image through it,
    stops it, and then looks for anything it left: links with its mark, its
    nftables table, container cgroups, nsfs mounts under its state directory.
    Whatever it finds fails the test and is removed.
    """

    def __init__(self, binary: str, root: Path, names: RunNames) -> None:
        self._binary = binary
        self._root = root
        self._names = names
        self.instances: list[FaultyDiycd] = []

    def __call__(self, fault: str | None = None, *, start: bool = True) -> FaultyDiycd:
        base = self._root / f"f{next(_instance_numbers)}"
        base.mkdir(mode=0o755)
        table = f"diyc_{self._names.prefix}_{base.name}"
        env = dict(os.environ)
        env.pop(FAULT_ENV, None)
        process = DiycdProcess(self._binary, socket=str(base / "run" / "diyc.sock"), state_dir=str(base / "state"),
                               extra_args=("--nft-table", table), env=env)
        instance = FaultyDiycd(process, table)
        self.instances.append(instance)
        if start:
            instance.start(fault)
        return instance

    def tear_down(self) -> list[str]:
        problems: list[str] = []
        for instance in reversed(self.instances):
            problems += [f"{instance.process.state_dir}: {p}" for p in _tear_down(instance)]
        return problems


def _tear_down(instance: FaultyDiycd) -> list[str]:
    process = instance.process
    problems: list[str] = []
    if process.pid is None:  # never started
        return problems
    try:
        if not process.running:
            instance.start()
        with process.client() as client:
            for container in client.list_containers(all=True):
                _note(problems, f"remove container {container.name!r}",
                      lambda: client.remove_container(container.name, force=True))
            for network in client.list_networks():
                _note(problems, f"delete network {network.name!r}",
                      lambda: client.delete_network(network.name, force=True))
            for image in client.list_images():
                _note(problems, f"remove image {image.name!r}", lambda: client.remove_image(image.name))
    except (DiycError, DiycdProcessError, OSError) as exc:
        # OSError: the binary cannot be run (e.g. it is being rebuilt).
        problems.append(f"could not clean up through diycd: {str(exc).splitlines()[0]}")
    finally:
        try:
            process.stop()
        except DiycdProcessError as exc:
            problems.append(str(exc).splitlines()[0])
    problems += _remove_leftover_containers(instance)
    links = instance.links()
    if links:
        problems.append(f"links of this instance remained (removed now): {sorted(links)}")
        with diyc.IPRoute() as host:
            for name in sorted(links, key=lambda n: links[n].kind == "bridge"):
                try:
                    host.link_del(name)
                except diyc.DiycError:
                    pass
    if instance.nft_text():
        problems.append(f"nftables table inet {instance.table} remained (deleted now)")
        nft("delete", "table", "inet", instance.table, check=False)
    return problems


def _remove_leftover_containers(instance: FaultyDiycd) -> list[str]:
    """Removes by hand what containers diycd could not remove: processes, cgroups, namespace mounts.

    Only processes of this instance's containers are killed: those in their
    cgroups and the diyc-init monitors whose command line names the
    instance's state directory.
    """
    problems: list[str] = []
    containers_dir = instance.state_dir / "containers"
    for name in _listdir(containers_dir):
        cgroups = container_cgroups(name)
        monitors = diyc_init_processes(str(containers_dir / name) + "/")
        if not cgroups and not monitors:
            continue
        problems.append(f"container {name} left cgroups {cgroups} and monitors {monitors} (removed now)")
        pids = set(monitors)
        for path in cgroups:
            try:
                pids.update(int(pid) for pid in Path(path, "cgroup.procs").read_text().split())
            except OSError:
                pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for path in cgroups:
            if not eventually(lambda: _rmdir(path), 5):
                problems.append(f"could not remove cgroup {path}")
    for mount in ns_mounts_under(str(containers_dir)):
        problems.append(f"nsfs mount {mount} remained (unmounted now)")
        subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
    return problems


def _rmdir(path: str) -> bool:
    """rmdir, True once the directory is gone (EBUSY while exiting processes leave a cgroup)."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def _note(problems: list[str], what: str, action: Callable[[], object]) -> None:
    try:
        action()
    except DiycError as exc:
        problems.append(f"{what} failed: {exc.code}: {exc}")


def _listdir(path: str | Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


@pytest.fixture
def fault_diycd(diycd_binary: str, diycd_root: Path, names: RunNames,
                diyc_cleanup: CleanupRegistry) -> Iterator[DiycdFactory]:
    """A factory of diycd instances whose fault points can be armed.

    Depends on the plugin's cleanup registry so that namespaces made with
    ``make_netns`` (and mounts a test registered there) outlive the
    instances' teardown.
    """
    from diyc.pytest_plugin import require_root

    require_root()
    factory = DiycdFactory(diycd_binary, diycd_root, names)
    yield factory
    problems = factory.tear_down()
    if problems:
        logs = "\n".join(f"--- {i.process.log_path}:\n{i.process.log_tail()}" for i in factory.instances)
        pytest.fail("fault_diycd teardown:\n  " + "\n  ".join(problems) + "\n" + logs, pytrace=False)


@pytest.fixture(scope="session")
def fault_rootfs(diycd_root: Path) -> Path:
    """A busybox root filesystem to import as an image, built once per session.

    A directory of its own: the suite's other fixtures may build theirs in
    the same session root.
    """
    from diyc.images import build_busybox_rootfs

    try:
        return build_busybox_rootfs(diycd_root / "fault-busybox-rootfs")
    except (OSError, ValueError) as exc:
        pytest.skip(f"cannot build a busybox image: {exc}")


# --------------------------------------------------------------------------
# Host inspection


def container_cgroups(name: str) -> list[str]:
    """The cgroup directories of container ``name`` in every hierarchy (v1 and v2)."""
    patterns = (f"{CGROUP_ROOT}/*/{CGROUP_PARENT}/{name}", f"{CGROUP_ROOT}/{CGROUP_PARENT}/{name}")
    # Container names hold no glob characters ([A-Za-z0-9_.-]).
    return sorted({path for pattern in patterns for path in glob.glob(pattern) if os.path.isdir(path)})


def _mounts() -> list[tuple[str, str]]:
    """(fstype, mount point) of every mount this process sees."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            found.append((fields[fields.index("-") + 1], point))
    return found


def ns_mounts_under(directory: str) -> list[str]:
    return [point for fstype, point in _mounts() if fstype == "nsfs" and point.startswith(directory + "/")]


def mounts_referring_to(text: str) -> list[str]:
    """Mounts (of any type) whose mount point holds ``text``."""
    return [f"{fstype} on {point}" for fstype, point in _mounts() if text in point]


def diyc_init_processes(text: str) -> list[int]:
    """diyc-init processes whose command line holds ``text`` (e.g. a container's directory)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{entry}/exe").removesuffix(" (deleted)")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
        except OSError:
            continue
        if os.path.basename(exe) == "diyc-init" and text in cmdline:
            found.append(int(entry))
    return found


def process_alive(pid: int) -> bool:
    """True while pid runs (a zombie counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def proc_counts(pid: int) -> tuple[int, int, int]:
    """(open fds, threads, VmRSS in KiB) of a process."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    threads = len(os.listdir(f"/proc/{pid}/task"))
    rss = 0
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return fds, threads, rss


def fill_filesystem(path: Path) -> int:
    """Writes ``path`` until its filesystem is full (ENOSPC); returns the bytes written."""
    chunk = b"\0" * 4096
    written = 0
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n = f.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return written
            written += n or 0
            if not n:
                return written


# --------------------------------------------------------------------------
# The invariant


@dataclass
class Observed:
    """What diycd lists after a check: the outcome of the scenario."""

    networks: dict[str, network_pb2.Network]
    attachments: list[network_pb2.Attachment]
    containers: dict[str, container_pb2.Container]
    problems: list[str] = field(default_factory=list)

    def attached(self, network: str, netns: str) -> network_pb2.Attachment | None:
        return next((a for a in self.attachments if a.network == network and a.netns_name == netns), None)


def flush_neighbours(ns: diyc.NetNS) -> None:
    """Empties a namespace's neighbour (ARP) cache.

    diycd's bridges take the MAC address of one of their ports, so it
    changes when ports come and go, and a namespace can keep a stale entry
    for its gateway for up to ~45 s (``test_detach_keeps_others_reachable``
    shows that bug on its own). A crash check flushes first, so what it
    measures is whether the attachment itself is wired, not that bug.
    """
    subprocess.run(["nsenter", f"--net={ns.path}", "ip", "neigh", "flush", "all"], capture_output=True, timeout=30,
                   check=False)


def _ping_ok(ns: diyc.NetNS | str, address: str, within: float = 3.0) -> bool:
    if isinstance(ns, diyc.NetNS):
        flush_neighbours(ns)
    deadline = time.monotonic() + within
    while True:
        if diyc.ping(ns, address, count=1, timeout=0.5).received:
            return True
        if time.monotonic() > deadline:
            return False


def _record_names(directory: Path) -> set[str]:
    """Every entry of a record directory (records are NAME.json; anything else is stray)."""
    return set(_listdir(directory))


def check_consistent(
    diycd: FaultyDiycd,
    client: Client,
    *,
    networks: Iterable[str] = (),
    namespaces: Mapping[str, diyc.NetNS] = {},
    containers: Iterable[str] = (),
    quarantined: bool = False,
    settle: float = 3.0,
) -> Observed:
    """Asserts that everything either fully exists or fully does not; returns what is listed.

    ``networks``, ``namespaces`` and ``containers`` name what the scenario
    touched (the check covers everything listed in any case). Fully exists
    means: listed, its kernel objects present, carrying this instance's
    mark and working (an attachment's gateway answers pings from its
    namespace; a running container's namespace, cgroups and process are
    there) and its record in the state directory. Fully does not: not
    listed, and no link, nftables rule, namespace interface, cgroup, nsfs
    mount, diyc-init process or record of it anywhere. Addresses are never
    handed out twice. Links are compared once they settle (a detach deletes
    its veth in a batch a few milliseconds later).
    """
    state = diycd.state_dir
    problems: list[str] = []
    listed = {n.name: n for n in client.list_networks()}
    attachments = client.list_attachments()
    listed_containers = {c.name: c for c in client.list_containers(all=True)}
    bridges = {n.bridge: n for n in listed.values()}

    # Links: exactly the listed bridges and veths carry the mark.
    expected_links = (set(bridges) | {a.host_ifname for a in attachments} |
                      {n.vxlan.device for n in listed.values() if n.HasField("vxlan")})
    eventually(lambda: set(diycd.links()) == expected_links, settle)
    links = diycd.links()
    if set(links) != expected_links:
        problems.append(f"marked links without a listed owner: {sorted(set(links) - expected_links)}; "
                        f"listed objects without their link: {sorted(expected_links - set(links))}")
    table = diycd.nft_text()

    # Networks.
    for name in sorted(set(networks) | set(listed)):
        record = state / "networks" / f"{name}.json"
        if name in listed:
            network = listed[name]
            bridge = links.get(network.bridge)
            if bridge is None or bridge.kind != "bridge" or bridge.state != "up" or bridge.alias != diycd.mark + name:
                problems.append(f"network {name!r} is listed but its bridge is {bridge}")
            else:
                with diyc.IPRoute() as host:
                    cidrs = {a.cidr for a in host.addrs(network.bridge)}
                gateway = f"{network.gateway}/{ipaddress.ip_network(network.subnet).prefixlen}"
                if gateway not in cidrs:
                    problems.append(f"bridge {network.bridge} of network {name!r} lacks its gateway {gateway}: {cidrs}")
            if f'"diyc:net:{name}"' not in table or f'"{network.bridge}"' not in table:
                problems.append(f"network {name!r} is listed but has no rules in inet {diycd.table}")
            if not record.exists() or json.loads(record.read_text()).get("phase") != "READY":
                problems.append(f"network {name!r} is listed but its record is {_describe(record)}")
        else:
            try:
                client.get_network(name)
                problems.append(f"network {name!r} is not listed but GetNetwork finds it")
            except DiycError as exc:
                if exc.code != "NOT_FOUND":
                    problems.append(f"GetNetwork of unlisted {name!r}: {exc.code}: {exc}")
            leftovers = diycd.network_links(name)
            if leftovers:
                problems.append(f"network {name!r} is not listed but left links {sorted(leftovers)}")
            if f'"diyc:net:{name}"' in table:
                problems.append(f"network {name!r} is not listed but its rules remain in inet {diycd.table}")
            if record.exists():
                problems.append(f"network {name!r} is not listed but its record remains: {_describe(record)}")
    if _record_names(state / "networks") != {f"{n}.json" for n in listed}:
        problems.append(f"network records {sorted(_record_names(state / 'networks'))} "
                        f"do not match the listed networks {sorted(listed)}")

    # Attachments.
    for kind, values in (("address", [a.ip for a in attachments]), ("host veth", [a.host_ifname for a in attachments])):
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            problems.append(f"{kind} handed out twice: {duplicates}")
    inside: dict[str, set[str]] = {}
    for a in attachments:
        what = f"attachment {a.host_ifname} ({a.netns_name or a.container} on {a.network!r}, {a.ip})"
        network = listed.get(a.network)
        veth = links.get(a.host_ifname)
        if network is None:
            problems.append(f"{what} is listed but its network is not")
        elif veth is None or veth.kind != "veth" or veth.master != network.bridge or veth.state != "up":
            problems.append(f"{what} is listed but its host veth is {veth}")
        if not (state / "attachments" / f"{a.host_ifname}.json").exists():
            problems.append(f"{what} is listed but has no record")
        try:
            ns = (diyc.NetNS.open(a.netns_name) if a.netns_name
                  else diyc.NetNS.open(path=str(state / "containers" / a.container / "netns")))
        except diyc.DiycError as exc:
            problems.append(f"{what} is listed but its namespace cannot be opened: {exc}")
            continue
        with ns:
            with diyc.IPRoute(netns=ns) as ipr:
                cidrs = {x.cidr for x in ipr.addrs(a.ifname)} if ipr.find_link(a.ifname) else set()
            if a.ip not in cidrs:
                problems.append(f"{what} is listed but {a.ifname} in its namespace has {sorted(cidrs)}")
            elif not _ping_ok(ns, a.gateway):
                problems.append(f"{what} is listed but its gateway {a.gateway} does not answer")
        if a.netns_name:
            inside.setdefault(a.netns_name, set()).add(a.ifname)
    for name, ns in namespaces.items():
        want = {"lo"} | inside.get(name, set())
        eventually(lambda: set(netns_links(ns)) == want, settle)
        have = set(netns_links(ns))
        if have != want:
            problems.append(f"namespace {name} holds {sorted(have)}, but its listed attachments explain {sorted(want)}")
    if _record_names(state / "attachments") != {f"{a.host_ifname}.json" for a in attachments}:
        problems.append(f"attachment records {sorted(_record_names(state / 'attachments'))} do not match the "
                        f"listed attachments {sorted(a.host_ifname for a in attachments)}")

    # Containers.
    containers_dir = state / "containers"
    for name in sorted(set(containers) | set(listed_containers)):
        directory = containers_dir / name
        if name in listed_containers:
            container = listed_containers[name]
            if not (directory / "container.json").exists():
                problems.append(f"container {name!r} is listed but has no record")
            if container.state == container_pb2.Container.RUNNING:
                if not ns_mounts_under(str(directory)):
                    problems.append(f"running container {name!r} has no namespace mount")
                if not container_cgroups(name):
                    problems.append(f"running container {name!r} has no cgroup")
                if not process_alive(container.pid):
                    problems.append(f"running container {name!r}: its pid {container.pid} is gone")
        else:
            try:
                client.get_container(name)
                problems.append(f"container {name!r} is not listed but GetContainer finds it")
            except DiycError as exc:
                if exc.code != "NOT_FOUND":
                    problems.append(f"GetContainer of unlisted {name!r}: {exc.code}: {exc}")
            for leftover in (container_cgroups(name) + mounts_referring_to(str(directory))
                             + [f"diyc-init pid {p}" for p in diyc_init_processes(str(directory))]):
                problems.append(f"container {name!r} is not listed but left {leftover}")
            if directory.exists():
                problems.append(f"container {name!r} is not listed but left {directory}: {_listdir(directory)}")
            stale = [a.host_ifname for a in attachments if a.container == name]
            if stale:
                problems.append(f"container {name!r} is not listed but attachments of it are: {stale}")
    if set(_listdir(containers_dir)) != set(listed_containers):
        problems.append(f"container directories {_listdir(containers_dir)} do not match the listed containers "
                        f"{sorted(listed_containers)}")

    if not quarantined and _listdir(state / "quarantine"):
        problems.append(f"records were quarantined: {_listdir(state / 'quarantine')}")
    observed = Observed(listed, attachments, listed_containers, problems)
    assert not problems, "inconsistent after recovery:\n  " + "\n  ".join(problems) + \
        f"\n--- diycd log:\n{diycd.process.log_tail()}"
    return observed


def _describe(path: Path) -> str:
    try:
        return repr(path.read_text()[:200])
    except FileNotFoundError:
        return "missing"


def ok_or_not_found(call: Callable[[], Any]) -> str:
    """Runs a delete-like call; returns "OK" or "NOT_FOUND", raising on anything else."""
    try:
        call()
    except DiycError as exc:
        if exc.code != "NOT_FOUND":
            raise
        return "NOT_FOUND"
    return "OK"
