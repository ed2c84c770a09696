"""Container start: diycd's RunContainer against runc, on the same busybox rootfs.

Three operations, each timed on the caller's side and repeated:

- start (running): RunContainer of ``sleep`` returns once the command runs;
  ``runc run -d`` returns once the detached container runs;
- remove (running): RemoveContainer(force) against ``runc delete -f``;
- run /bin/true to exit: RunContainer + WaitContainer against a foreground
  ``runc run`` (which also deletes the container when it exits).

Neither side gets a network beyond a fresh namespace: runc's default spec
makes an empty network namespace, and diycd makes one when no network is
asked for.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from diyc.daemon import DiycdProcess
from diyc.images import build_busybox_rootfs
from diyc.v1 import container_pb2, node_pb2_grpc

from .host import BenchError, Names, run
from .progress import Progress
from .scenario import no_gc

__all__ = ["ContainerBench", "ContainerPhase", "cgroup_leftovers"]

_SLEEP = ["/bin/sleep", "3600"]
_TRUE = ["/bin/true"]
_TIMEOUT = 60.0
_RUNNING = container_pb2.Container.RUNNING


@dataclass
class ContainerPhase:
    """Timings of one operation of one runtime."""

    op: str
    method_key: str
    label: str
    samples_ns: list[int]
    wall_ns: int


def cgroup_leftovers(names: Names) -> list[str]:
    """cgroup directories named after bench containers (diycd's under diyc/, runc's at the top)."""
    found = []
    root = Path("/sys/fs/cgroup")
    for pattern in (f"*/{names.prefix}-*", f"*/diyc/{names.prefix}-*", f"{names.prefix}-*"):
        found.extend(str(p) for p in root.glob(pattern))
    return sorted(found)


class ContainerBench:
    """Starts, runs and removes busybox containers with diycd and with runc."""

    def __init__(self, diycd: DiycdProcess, names: Names, tmp: Path, starts: int) -> None:
        self.diycd = diycd
        self.names = names
        self.starts = starts
        self.dir = tmp / "containers"
        self.image = f"{names.prefix}-busybox"
        self.runc_root = self.dir / "runc-state"
        self.runc = shutil.which("runc") or "/usr/sbin/runc"
        self._channel: grpc.Channel | None = None
        self._stub: node_pb2_grpc.NodeStub | None = None

    # -- setup

    def prepare(self) -> None:
        """Builds the rootfs, imports it into diycd, writes two runc bundles."""
        self.dir.mkdir(parents=True, exist_ok=True)
        rootfs = build_busybox_rootfs(self.dir / "rootfs")
        self._channel = grpc.insecure_channel(f"unix:{self.diycd.socket}")
        self._stub = node_pb2_grpc.NodeStub(self._channel)
        self._rpc(self._stub.ImportImage, container_pb2.ImportImageRequest(name=self.image, directory=str(rootfs)))
        runc_rootfs = self.dir / "runc-rootfs"
        shutil.copytree(rootfs, runc_rootfs, symlinks=True)
        self.runc_root.mkdir()
        self._bundle("sleep", runc_rootfs, _SLEEP)
        self._bundle("true", runc_rootfs, _TRUE)

    def _bundle(self, name: str, rootfs: Path, args: list[str]) -> None:
        """An OCI bundle from `runc spec`, edited: our rootfs, writable, no terminal."""
        bundle = self.dir / f"bundle-{name}"
        bundle.mkdir()
        run([self.runc, "spec", "--bundle", str(bundle)])
        config_path = bundle / "config.json"
        config = json.loads(config_path.read_text())
        config["root"] = {"path": str(rootfs), "readonly": False}
        config["process"]["terminal"] = False
        config["process"]["args"] = args
        config_path.write_text(json.dumps(config, indent=2))

    def _rpc(self, method: Callable[..., object], request: object) -> object:
        try:
            return method(request, timeout=_TIMEOUT)
        except grpc.RpcError as exc:
            raise BenchError(f"diycd {type(request).__name__}: {exc.code().name}: {exc.details()}") from None

    # -- diycd

    def _diyc_start(self, name: str) -> int:
        assert self._stub is not None
        start = time.perf_counter_ns()
        container = self._rpc(self._stub.RunContainer,
                               container_pb2.RunContainerRequest(name=name, image=self.image, command=_SLEEP))
        elapsed = time.perf_counter_ns() - start
        if container.state != _RUNNING:  # type: ignore[attr-defined]
            raise BenchError(f"diycd RunContainer {name}: state {container.state}, not RUNNING")  # type: ignore[attr-defined]
        return elapsed

    def _diyc_remove(self, name: str) -> int:
        assert self._stub is not None
        start = time.perf_counter_ns()
        self._rpc(self._stub.RemoveContainer, container_pb2.RemoveContainerRequest(name=name, force=True))
        return time.perf_counter_ns() - start

    def _diyc_true(self, name: str) -> int:
        assert self._stub is not None
        start = time.perf_counter_ns()
        self._rpc(self._stub.RunContainer,
                  container_pb2.RunContainerRequest(name=name, image=self.image, command=_TRUE))
        ended = self._rpc(self._stub.WaitContainer, container_pb2.WaitContainerRequest(name=name))
        elapsed = time.perf_counter_ns() - start
        if ended.exit_code != 0 or ended.signal != 0:  # type: ignore[attr-defined]
            raise BenchError(f"diycd container {name} running /bin/true ended with {ended}")
        self._rpc(self._stub.RemoveContainer, container_pb2.RemoveContainerRequest(name=name, force=True))
        return elapsed

    # -- runc

    def _runc(self, *args: str, detach_stdio: bool = False) -> None:
        """runc with the private state root. A detached container keeps its
        stdio open, so its stderr goes to a file, not a pipe we would wait on."""
        with tempfile.TemporaryFile() as err:
            done = subprocess.run([self.runc, "--root", str(self.runc_root), *args], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=err, check=False, timeout=_TIMEOUT)
            if done.returncode != 0:
                err.seek(0)
                raise BenchError(f"runc {' '.join(args)} exited {done.returncode}: "
                                 f"{err.read().decode(errors='replace').strip()}")

    def _runc_start(self, name: str) -> int:
        start = time.perf_counter_ns()
        self._runc("run", "-d", "--bundle", str(self.dir / "bundle-sleep"), name)
        elapsed = time.perf_counter_ns() - start
        state = json.loads(run([self.runc, "--root", str(self.runc_root), "state", name]).stdout)
        if state.get("status") != "running":
            raise BenchError(f"runc container {name} is {state.get('status')!r}, not running")
        return elapsed

    def _runc_remove(self, name: str) -> int:
        start = time.perf_counter_ns()
        self._runc("delete", "-f", name)
        return time.perf_counter_ns() - start

    def _runc_true(self, name: str) -> int:
        start = time.perf_counter_ns()
        self._runc("run", "--bundle", str(self.dir / "bundle-true"), name)
        return time.perf_counter_ns() - start

    # -- the runs

    def run(self) -> list[ContainerPhase]:
        """Start+remove for diycd then runc, then run-to-exit for each; one warm-up each."""
        phases: list[ContainerPhase] = []
        for key, label, start, remove in (("diyc", "diyc RunContainer", self._diyc_start, self._diyc_remove),
                                          ("runc", "runc", self._runc_start, self._runc_remove)):
            phases.extend(self._start_remove(key, label, start, remove))
        for key, label, once in (("diyc", "diyc RunContainer", self._diyc_true), ("runc", "runc", self._runc_true)):
            phases.append(self._repeat("run /bin/true to exit", key, label, once))
        return phases

    def _start_remove(self, key: str, label: str, start: Callable[[str], int],
                      remove: Callable[[str], int]) -> list[ContainerPhase]:
        warm_up = self.names.netns(f"{key}-s")
        start(warm_up)
        remove(warm_up)
        starts: list[int] = []
        removes: list[int] = []
        progress = Progress(f"container start+remove {key}", self.starts)
        with no_gc():
            for i in range(self.starts):
                name = self.names.netns(f"{key}-s{i}")
                starts.append(start(name))
                removes.append(remove(name))
                progress.advance()
        progress.finish()
        # The two operations alternate, so each one's wall time is its own sum.
        return [ContainerPhase("start (running)", key, label, starts, sum(starts)),
                ContainerPhase("remove (running)", key, label, removes, sum(removes))]

    def _repeat(self, op: str, key: str, label: str, once: Callable[[str], int]) -> ContainerPhase:
        once(self.names.netns(f"{key}-t"))  # warm-up
        samples: list[int] = []
        progress = Progress(f"container {op} {key}", self.starts)
        began = time.perf_counter_ns()
        with no_gc():
            for i in range(self.starts):
                samples.append(once(self.names.netns(f"{key}-t{i}")))
                progress.advance()
        progress.finish()
        return ContainerPhase(op, key, label, samples, time.perf_counter_ns() - began)

    # -- teardown

    def leftovers(self) -> list[str]:
        """Containers or cgroups of the bench still present on either side."""
        problems: list[str] = []
        if self._stub is not None:
            listed = self._rpc(self._stub.ListContainers, container_pb2.ListContainersRequest(all=True))
            mine = [c.name for c in listed.containers if c.name.startswith(self.names.prefix)]  # type: ignore[attr-defined]
            if mine:
                problems.append(f"diycd still has containers {mine[:5]}")
        if self.runc_root.exists():
            ids = run([self.runc, "--root", str(self.runc_root), "list", "-q"]).stdout.decode().split()
            if ids:
                problems.append(f"runc still has containers {ids[:5]}")
        cgroups = cgroup_leftovers(self.names)
        if cgroups:
            problems.append(f"cgroups left: {cgroups[:5]}")
        return problems

    def remove_all(self) -> list[str]:
        """Removes every bench container on both sides and the image; returns errors."""
        errors: list[str] = []
        if self._stub is not None:
            try:
                listed = self._rpc(self._stub.ListContainers, container_pb2.ListContainersRequest(all=True))
                for c in listed.containers:  # type: ignore[attr-defined]
                    if c.name.startswith(self.names.prefix):
                        self._rpc(self._stub.RemoveContainer, container_pb2.RemoveContainerRequest(name=c.name, force=True))
                images = self._rpc(self._stub.ListImages, container_pb2.ListImagesRequest())
                if any(i.name == self.image for i in images.images):  # type: ignore[attr-defined]
                    self._rpc(self._stub.RemoveImage, container_pb2.RemoveImageRequest(name=self.image))
            except BenchError as exc:
                errors.append(str(exc))
        if self.runc_root.exists():
            listing = run([self.runc, "--root", str(self.runc_root), "list", "-q"], check=False)
            for runc_id in listing.stdout.decode().split():
                done = run([self.runc, "--root", str(self.runc_root), "delete", "-f", runc_id], check=False)
                if done.returncode != 0:
                    errors.append(f"runc delete -f {runc_id}: {done.stderr.decode(errors='replace').strip()}")
        return errors

    def close(self) -> list[str]:
        """remove_all(), then drops the connection to diycd."""
        errors = self.remove_all()
        if self._channel is not None:
            self._channel.close()
            self._channel = None
            self._stub = None
        return errors
