"""What the tests with real CNI clients (cnitool, podman) share.

* :func:`plugin_binary` finds ``diyc-cni`` (``$DIYC_CNI``, else the repository's
  ``build/cni/diyc-cni``); :func:`cnitool_binary` builds cnitool on demand
  with ``ci/build-cnitool.sh`` from Debian's source package (cached in the build directory's ``tools/``).
* :class:`RecordingPluginDir` is a private ``CNI_PATH`` directory whose
  ``diyc`` is a two-line wrapper: it appends the verb and the CNI_* values of
  each call to a log, then execs the real plugin. That log is how the tests
  know which verbs a client really sent.
* :class:`PrivateVar` is a mount namespace in which ``/var`` is an overlay
  whose writable layer is a scratch directory (and ``/dev/shm`` a private
  tmpfs). libcni writes its result cache to ``/var/lib/cni`` whatever its
  caller says (cnitool cannot move it, podman 4.3 does not), and podman
  writes a blob cache below ``/var/lib/containers`` and shared-memory locks
  in ``/dev/shm``: run inside this namespace, the clients leave the host's
  ``/var`` alone. ``/run/netns`` stays a shared mount, so the namespaces the
  clients make there are the host's (diycd opens them by path).
* :class:`HostFiles` snapshots the host paths those clients would write, to
  prove they did not.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cni_driver import find_plugin

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_PLUGINS = Path("/usr/lib/cni")
# The newest CNI version Debian's libcni 1.1.2 (cnitool, podman 4.3) speaks.
CLIENT_CNI_VERSION = "1.0.0"


def plugin_binary() -> Path:
    """The diyc-cni binary under test (cni_driver.find_plugin); skips the test when it is not built."""
    binary = find_plugin()
    if not os.access(binary, os.X_OK):
        pytest.skip(f"the CNI plugin {binary} is not built (set DIYC_CNI to another build's cni/diyc-cni)")
    return binary


@functools.cache
def cnitool_binary() -> Path:
    """cnitool: ``$DIYC_CNITOOL``, else built by ci/build-cnitool.sh (a no-op once built)."""
    if "DIYC_CNITOOL" in os.environ:
        return Path(os.environ["DIYC_CNITOOL"])
    if shutil.which("go") is None:
        pytest.skip("building cnitool needs Debian's golang-go and golang-github-appc-cni-dev")
    env = dict(os.environ)
    env.setdefault("DIYC_BUILD_DIR", str(_build_dir()))
    done = subprocess.run([str(REPO_ROOT / "ci" / "build-cnitool.sh")], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    if done.returncode != 0:
        pytest.fail(f"ci/build-cnitool.sh failed:\n{done.stderr}", pytrace=False)
    return Path(done.stdout.strip().splitlines()[-1])


def _build_dir() -> Path:
    """The build directory of the plugin under test (…/build-x/cni/diyc-cni -> …/build-x)."""
    configured = os.environ.get("DIYC_CNI")
    return Path(configured).resolve().parent.parent if configured else REPO_ROOT / "build"


@dataclass(frozen=True)
class PluginCall:
    """One execution of the plugin as a client made it."""

    command: str
    container_id: str
    ifname: str
    netns: str
    args: str


class RecordingPluginDir:
    """A CNI_PATH directory whose ``diyc`` logs each call, then runs the real plugin."""

    def __init__(self, directory: Path, plugin: Path, *, plugin_type: str = "diyc") -> None:
        self.directory = directory
        self.log = directory / "calls.log"
        directory.mkdir(parents=True, exist_ok=True)
        wrapper = directory / plugin_type
        # One line per call, fields tab-separated; container ids, interface
        # names, paths and CNI_ARGS hold no tabs.
        wrapper.write_text(
            "#!/bin/sh\n"
            f"printf '%s\\t%s\\t%s\\t%s\\t%s\\n' \"$CNI_COMMAND\" \"$CNI_CONTAINERID\" \"$CNI_IFNAME\" \"$CNI_NETNS\""
            " \"$CNI_ARGS\""
            f" >> '{self.log}'\n"
            f"exec '{plugin}' \"$@\"\n"
        )
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        self.log.touch()

    @property
    def search_path(self) -> list[str]:
        """Directories to search, ours first: the reference plugins come from Debian's package."""
        return [str(self.directory), str(REFERENCE_PLUGINS)]

    def calls(self) -> list[PluginCall]:
        return [PluginCall(*line.split("\t")) for line in self.log.read_text().splitlines() if line]

    def take_calls(self) -> list[PluginCall]:
        """The calls logged since the last take, which are then forgotten."""
        calls = self.calls()
        self.log.write_text("")
        return calls

    def take_verbs(self) -> list[str]:
        return [call.command for call in self.take_calls()]


def write_conflist(directory: Path, name: str, plugins: list[dict[str, Any]]) -> Path:
    """A network configuration list ``NAME.conflist`` (cniVersion 1.0.0) in ``directory``."""
    path = directory / f"{name}.conflist"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cniVersion": CLIENT_CNI_VERSION, "name": name, "plugins": plugins}, indent=2))
    return path


class PrivateVar:
    """A mount namespace where /var is an overlay onto ``scratch`` and /dev/shm is private.

    Entered with :attr:`enter` (an ``nsenter`` prefix); held by a sleeping
    process until :meth:`close`. The namespace keeps the host's mount
    propagation, so mounts under the shared ``/run/netns`` still reach the
    host, while the overlay on ``/var`` (below the private root mount)
    does not.
    """

    def __init__(self, scratch: Path) -> None:
        self.upper = scratch / "upper"
        work = scratch / "work"
        self.upper.mkdir(parents=True)
        work.mkdir()
        script = (f"mount -t overlay diyc-private-var -o lowerdir=/var,upperdir={self.upper},workdir={work} /var"
                  " && mount -t tmpfs -o mode=1777 diyc-private-shm /dev/shm && echo ready && exec sleep infinity")
        # setpriv: the holder dies with the test process, however that ends.
        self._holder = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "--", "unshare", "--mount", "--propagation",
                                         "unchanged", "--", "sh", "-c", script],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self._holder.stdout is not None
        if self._holder.stdout.readline().strip() != "ready":
            self._holder.wait(timeout=10)
            raise RuntimeError(f"could not set up a private /var: {self._holder.stderr.read()}")
        self.enter = ["nsenter", f"--mount=/proc/{self._holder.pid}/ns/mnt", "--"]

    def written(self) -> list[str]:
        """Paths below /var that processes in the namespace created or changed."""
        return sorted("/var/" + str(path.relative_to(self.upper)) for path in self.upper.rglob("*"))

    def close(self) -> None:
        """Ends the namespace (and with it the overlay) once nothing else runs in it."""
        if self._holder.poll() is None:
            self._holder.kill()
        self._holder.wait(timeout=10)
        for stream in (self._holder.stdout, self._holder.stderr):
            if stream is not None:
                stream.close()


# Where cnitool, libcni and podman write by default.
CLIENT_HOST_PATHS = ("/etc/cni", "/etc/containers", "/var/lib/cni", "/var/lib/containers",
                     "/run/containers", "/run/libpod", "/dev/shm/libpod_lock")


class HostFiles:
    """Names, types, sizes and modification times of every file below some host paths."""

    def __init__(self, roots: tuple[str, ...] = CLIENT_HOST_PATHS) -> None:
        self.roots = roots
        self.entries = self._scan()

    def _scan(self) -> dict[str, tuple[int, int, int]]:
        entries: dict[str, tuple[int, int, int]] = {}
        for root in self.roots:
            names = [root]  # a file root; a directory is walked below
            for directory, _, files in os.walk(root):
                names += [os.path.join(directory, f) for f in files]
                if directory != root:
                    names.append(directory)
            for name in names:
                try:
                    info = os.lstat(name)
                except FileNotFoundError:
                    continue
                entries[name] = (stat.S_IFMT(info.st_mode), info.st_size, info.st_mtime_ns)
        return entries

    def changes(self) -> list[str]:
        """What was added, removed or modified since the snapshot."""
        now = self._scan()
        changed = [f"new {path}" for path in sorted(now.keys() - self.entries.keys())]
        changed += [f"removed {path}" for path in sorted(self.entries.keys() - now.keys())]
        changed += [f"modified {path}" for path in sorted(now.keys() & self.entries.keys())
                    if now[path] != self.entries[path]]
        return changed
