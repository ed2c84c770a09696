"""A root podman (Debian's 4.3) with every path of its own, on the CNI backend.

:class:`Podman` writes a containers.conf, storage.conf and registries.conf
into a scratch directory and points podman at them through
CONTAINERS_CONF, CONTAINERS_STORAGE_CONF and CONTAINERS_REGISTRIES_CONF:
network_backend "cni" with a private network_config_dir and plugin
directories, runtime runc, cgroup_manager cgroupfs, the file events logger,
and graphroot, runroot, tmp_dir, static_dir and volume_path in the scratch
directory. Every podman command runs inside a :class:`PrivateVar` mount
namespace, so what podman and libcni write to /var by default (the blob
cache, /var/lib/cni) lands in scratch space too, and the container mounts
stay out of the host's mount table. Containers are put in a cgroup parent
named after the run, removed by :meth:`Podman.close`.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from pathlib import Path
from typing import Any

from cni_client_support import PrivateVar, RecordingPluginDir


class PodmanError(AssertionError):
    pass


class Podman:
    def __init__(self, scratch: Path, plugins: RecordingPluginDir, *, cgroup_parent: str) -> None:
        self.scratch = scratch
        self.plugins = plugins
        self.network_dir = scratch / "net.d"
        self.cgroup_parent = cgroup_parent
        for directory in ("net.d", "tmp", "libpod", "volumes", "image-tmp", "graph", "run"):
            (scratch / directory).mkdir(parents=True, exist_ok=True)
        self._write_config()
        self.private_var = PrivateVar(scratch / "var")
        self.env = dict(os.environ, CONTAINERS_CONF=str(scratch / "containers.conf"),
                        CONTAINERS_STORAGE_CONF=str(scratch / "storage.conf"),
                        CONTAINERS_REGISTRIES_CONF=str(scratch / "registries.conf"),
                        TMPDIR=str(scratch / "image-tmp"))
        self.env.pop("CNI_ARGS", None)
        self._closed = False

    def _write_config(self) -> None:
        s = self.scratch
        # Podman asks for far higher RLIMIT_NOFILE and RLIMIT_NPROC than the
        # host may grant without CAP_SYS_RESOURCE (CI sandboxes lack it, and
        # runc then fails with EPERM); modest limits below the current ones
        # are always allowed.
        ulimits = [f"nofile={_capped(resource.RLIMIT_NOFILE, 1024)}", f"nproc={_capped(resource.RLIMIT_NPROC, 4096)}"]
        plugin_dirs = ", ".join(json.dumps(d) for d in self.plugins.search_path)
        (s / "containers.conf").write_text(f"""\
[containers]
log_driver = "k8s-file"
default_ulimits = {json.dumps(ulimits)}

[network]
network_backend = "cni"
cni_plugin_dirs = [{plugin_dirs}]
network_config_dir = "{self.network_dir}"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{s / 'tmp' / 'events.log'}"
tmp_dir = "{s / 'tmp'}"
static_dir = "{s / 'libpod'}"
volume_path = "{s / 'volumes'}"
image_copy_tmp_dir = "{s / 'image-tmp'}"
num_locks = 128
""")
        (s / "storage.conf").write_text(f"""\
[storage]
driver = "overlay"
graphroot = "{s / 'graph'}"
runroot = "{s / 'run'}"
""")
        (s / "registries.conf").write_text("unqualified-search-registries = []\n")

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*self.private_var.enter, "podman", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise PodmanError(f"podman {' '.join(args)} failed ({done.returncode}):\n{done.stderr}{done.stdout}")
        return done

    def import_image(self, tar: Path, name: str) -> None:
        self.run("import", str(tar), name)

    def run_container(self, name: str, image: str, *args: str) -> None:
        """``podman run -d`` of ``sleep`` in ``image``; ``args`` go before the image (--network, --ip...).

        With CAP_NET_RAW, which ping needs and podman's packaged defaults
        (/usr/share/containers/containers.conf) leave out.
        """
        self.run("run", "-d", "--name", name, "--cgroup-parent", self.cgroup_parent, "--cap-add", "NET_RAW",
                 *args, image, "sleep", "3600")

    def inspect(self, container: str) -> dict[str, Any]:
        (found,) = json.loads(self.run("inspect", "--type", "container", container).stdout)
        return found

    def address(self, container: str, network: str) -> str:
        return self.inspect(container)["NetworkSettings"]["Networks"][network]["IPAddress"]

    def sandbox(self, container: str) -> str:
        """The path of the container's network namespace (under /run/netns)."""
        return self.inspect(container)["NetworkSettings"]["SandboxKey"]

    def exec(self, container: str, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("exec", container, *command, check=check)

    def close(self) -> list[str]:
        """Removes every container, ends the namespace, removes the cgroups; returns what went wrong.

        Only the first call does anything.
        """
        if self._closed:
            return []
        self._closed = True
        problems: list[str] = []
        done = self.run("rm", "--all", "--force", "--time", "0", check=False)
        if done.returncode != 0:
            problems.append(f"podman rm --all --force failed: {done.stderr.strip()}")
        self.private_var.close()
        problems += remove_cgroup_tree(self.cgroup_parent)
        return problems


def _capped(which: int, cap: int) -> str:
    """``soft:hard`` for a podman ulimit: ``cap``, or the current limit if lower."""
    soft, hard = resource.getrlimit(which)
    value = min(cap, *(limit for limit in (soft, hard) if limit != resource.RLIM_INFINITY))
    return f"{value}:{value}"


def cgroup_dirs(parent: str) -> list[str]:
    """The cgroup directories named ``parent`` at the top of every hierarchy."""
    root = Path("/sys/fs/cgroup")
    found = [root / parent] + [hierarchy / parent for hierarchy in root.iterdir() if hierarchy.is_dir()]
    return [str(path) for path in found if path.is_dir()]


def remove_cgroup_tree(parent: str) -> list[str]:
    """Removes the ``parent`` cgroups podman made (children first); says which were busy."""
    problems = []
    for top in cgroup_dirs(parent):
        for directory, _, _ in sorted(os.walk(top), key=lambda entry: -entry[0].count("/")):
            try:
                os.rmdir(directory)
            except OSError as exc:
                problems.append(f"cgroup {directory} could not be removed: {exc.strerror}")
    return problems


def podman_available() -> str | None:
    """Why podman cannot run here, or None."""
    for tool in ("podman", "conmon", "runc", "nsenter", "unshare"):
        if shutil.which(tool, path="/usr/bin:/usr/sbin:/bin:/sbin:/usr/libexec/podman") is None:
            return f"{tool} is not installed (ci/install-deps.sh installs podman and its dependencies)"
    return None

