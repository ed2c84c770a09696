"""Fixtures that run a real diycd against the real kernel.

``diycd``
    A started :class:`diyc.daemon.DiycdProcess` with a socket and state
    directory of its own. At teardown every container it still has is
    removed with force, then every image, then every network is deleted with
    force (restarting diycd first if the test left it dead), then it is
    stopped; host links still labelled for this run's networks, cgroups of
    this run's containers and mounts under its state directory fail the test
    and are removed.
``client``
    A :class:`diyc.client.Client` on that diycd.
``names``
    :class:`RunNames`: run-prefixed network and bridge names, 10.228-255.x.0/24
    subnets no host route uses.
``busybox_rootfs`` (session)
    A busybox root filesystem directory (:func:`diyc.images.build_busybox_rootfs`),
    built once per run.
``busybox``
    The name of an image imported from it into the test's diycd, removed at
    teardown.

``diycd`` depends on the plugin's cleanup registry, so namespaces made with
``make_netns`` outlive diycd's teardown: networks are deleted while their
namespaces still exist, which is the ordinary order of things.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import re
import signal
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from diyc.client import Client
from diyc.daemon import DiycdProcess, DiycdProcessError, find_diycd
from diyc.errors import DiycError
from diyc.images import build_busybox_rootfs
from diycd_support import RunNames, diyc_links, nft, nft_tables

if TYPE_CHECKING:
    # Imported for real only once the suite's conftest has registered the
    # plugin, so pytest can still rewrite its assertions.
    from diyc.pytest_plugin import CleanupRegistry



def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes several seconds (hundreds of namespaces, restarts)")


@pytest.fixture(scope="session")
def diycd_binary() -> str:
    try:
        binary = find_diycd()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    if not os.access(binary, os.X_OK):
        pytest.skip(f"diycd binary {binary} is not executable (not built yet?)")
    return binary


@pytest.fixture(scope="session")
def names() -> RunNames:
    return RunNames()


@pytest.fixture(scope="session")
def diycd_root(names: RunNames) -> Iterator[Path]:
    """A world-traversable scratch directory (0755) for sockets and state.

    pytest's own tmp_path lives under a 0700 directory, where a non-root
    client would be stopped before ever reaching diycd's socket; here only
    diycd's own permissions stand in the way.
    """
    root = Path(tempfile.mkdtemp(prefix=f"{names.prefix}-diycd-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def nft_table(names: RunNames) -> str:
    """The nftables table (family inet) this run's diycd instances use.

    Not diycd's default `diyc`: every instance replaces its table whole, so
    sharing one would wipe the rules of a diycd serving on this host.
    """
    return f"diyc_{names.prefix}"


@pytest.fixture(scope="session", autouse=True)
def _diyc_table_guard(nft_table: str) -> Iterator[None]:
    """Removes this run's nftables table if a diycd left it behind."""
    yield
    if shutil.which("nft", path="/usr/sbin:/sbin:/usr/bin") and f"inet {nft_table}" in nft_tables():
        nft("delete", "table", "inet", nft_table, check=False)
        warnings.warn(f"the nftables table `inet {nft_table}` outlived every diycd of this run; removed it")


@dataclass(frozen=True)
class DiycdPaths:
    socket: str
    state_dir: str


_instances = itertools.count(1)


@pytest.fixture
def diycd_paths(diycd_root: Path) -> DiycdPaths:
    """Fresh paths; the socket's directory does not exist yet, diycd makes it."""
    base = diycd_root / f"d{next(_instances)}"
    base.mkdir(mode=0o755)
    base.chmod(0o755)
    return DiycdPaths(socket=str(base / "run" / "diyc.sock"), state_dir=str(base / "state"))


@pytest.fixture
def diycd(diycd_binary: str, diycd_paths: DiycdPaths, diyc_cleanup: CleanupRegistry,
          names: RunNames, nft_table: str) -> Iterator[DiycdProcess]:
    from diyc.pytest_plugin import require_root

    require_root()
    process = DiycdProcess(diycd_binary, socket=diycd_paths.socket, state_dir=diycd_paths.state_dir,
                           extra_args=["--nft-table", nft_table])
    process.start(timeout=15)
    try:
        yield process
    finally:
        problems = _tear_down(process, names)
        if problems:
            pytest.fail("diycd teardown:\n  " + "\n  ".join(problems) + f"\n--- diycd log:\n{process.log_tail()}",
                        pytrace=False)


def _tear_down(process: DiycdProcess, names: RunNames) -> list[str]:
    """Removes every container, image and network, stops diycd, and removes what it left behind."""
    problems: list[str] = []
    try:
        if not process.running:
            process.start(timeout=15)
        with process.client() as client:
            # Containers first: removing one detaches it and frees its image.
            for container in client.list_containers(all=True):
                try:
                    client.remove_container(container.name, force=True)
                except DiycError as exc:
                    problems.append(f"forced removal of container {container.name!r} failed: {exc.code}: {exc}")
            for image in client.list_images():
                try:
                    client.remove_image(image.name)
                except DiycError as exc:
                    problems.append(f"removal of image {image.name!r} failed: {exc.code}: {exc}")
            for network in client.list_networks():
                try:
                    client.delete_network(network.name, force=True)
                except DiycError as exc:
                    problems.append(f"force-delete of network {network.name!r} failed: {exc.code}: {exc}")
    except (DiycError, DiycdProcessError) as exc:
        problems.append(f"could not clean up through diycd: {exc}")
    finally:
        try:
            process.stop()
        except DiycdProcessError as exc:
            problems.append(str(exc).splitlines()[0])
    leftovers = diyc_links(names.prefix)
    if leftovers:
        problems.append("host links of deleted networks remained (removed now): " + ", ".join(sorted(leftovers)))
        _remove_links(leftovers)
    cgroups = container_cgroups(f"{names.prefix}-*")
    if cgroups:
        problems.append("cgroups of removed containers remained (removed now): " + ", ".join(cgroups))
        _remove_cgroups(cgroups)
    mounts = mounts_under(process.state_dir)
    if mounts:
        problems.append("mounts under diycd's state directory remained (unmounted now): " + ", ".join(mounts))
        for mount_point in reversed(mounts):
            subprocess.run(["umount", "-l", mount_point], capture_output=True, check=False)
    return problems


def container_cgroups(name_pattern: str) -> list[str]:
    """cgroup directories of containers named like the glob pattern, in every hierarchy.

    diycd puts a container's cgroup at diyc/NAME: once per cgroup v1
    controller (and in the v2 tree of a hybrid host), or once on a pure v2 host.
    """
    found = set(glob.glob(f"/sys/fs/cgroup/*/diyc/{name_pattern}")) | set(glob.glob(f"/sys/fs/cgroup/diyc/{name_pattern}"))
    return sorted(path for path in found if os.path.isdir(path))


def _remove_cgroups(paths: Sequence[str]) -> None:
    for path in paths:
        try:
            with open(os.path.join(path, "cgroup.procs"), encoding="ascii") as procs:
                for pid in procs.read().split():
                    with contextlib.suppress(OSError):
                        os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass
    for path in paths:
        # Children before parents; rmdir is how a cgroup is removed.
        for root, _, _ in os.walk(path, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(root)


def mounts_under(path: str) -> list[str]:
    """Mount points of this mount namespace at or below ``path``, in mount order."""
    prefix = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as mountinfo:
        for line in mountinfo:
            mount_point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if mount_point == prefix or mount_point.startswith(prefix + "/"):
                found.append(mount_point)
    return found


def _remove_links(links: dict[str, object]) -> None:
    import diyc

    with diyc.IPRoute() as host:
        # veths first: removing one end takes its peer, and bridges go last.
        for name in sorted(links, key=lambda n: getattr(links[n], "kind", None) == "bridge"):
            try:
                host.link_del(name)
            except diyc.DiycError:
                pass


@pytest.fixture
def client(diycd: DiycdProcess) -> Iterator[Client]:
    with diycd.client() as c:
        yield c


# --------------------------------------------------------------------------
# Images and containers


@pytest.fixture(scope="session")
def busybox_rootfs(diycd_root: Path) -> Path:
    if shutil.which("busybox", path="/bin:/usr/bin") is None:
        pytest.skip("needs Debian's busybox-static (/bin/busybox)")
    try:
        return build_busybox_rootfs(diycd_root / "busybox-rootfs")
    except ValueError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def busybox(client: Client, busybox_rootfs: Path) -> Iterator[str]:
    """An image of the busybox root filesystem in the test's diycd."""
    client.import_image("busybox", directory=str(busybox_rootfs))
    yield "busybox"
    # A container a failed test left behind still holds the image; the
    # diycd teardown removes both.
    with contextlib.suppress(DiycError):
        client.remove_image("busybox")
