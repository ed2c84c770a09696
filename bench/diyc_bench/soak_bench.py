"""``bench/run.sh --soak N``: the soak (diyc_bench.soak) against a private diycd.

The diycd has its own socket, state directory and nftables table; every name
carries the bench prefix ``db<pid>``. Results go to OUT/soak.json, soak.md
and soak.png; the exit status is 1 when anything grew (or anything failed),
with the reasons on stderr.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import diyc
from diyc.daemon import DiycdProcess
from diyc.images import build_busybox_rootfs

from .containers import cgroup_leftovers
from .host import (Cleanup, Names, delete_nft_table, handle_termination, host_links, nft_table_exists, pick_subnets,
                   remove_tree, run)
from .machine import loadavg, machine_info
from .progress import Progress, note
from .soak import SoakPlan, SoakResult, run_soak, verdict
from .soak_report import render_soak_markdown, write_soak_outputs
from .soak_sample import SoakTarget

__all__ = ["WARM_UP_CYCLES", "run_soak_command"]

WARM_UP_CYCLES = 10
_SAMPLES = 50  # about this many samples, whatever the number of cycles
_IMAGE = "busybox"


def _preflight(build_dir: Path) -> list[str]:
    problems = []
    if os.geteuid() != 0:
        problems.append("run as root: the soak creates namespaces, links and containers")
    for binary in ("server/diycd", "server/diyc-init"):
        if not os.access(build_dir / binary, os.X_OK):
            problems.append(f"missing {build_dir / binary}: build with `sudo ci/build.sh`")
    if not Path("/bin/busybox").exists():
        problems.append("missing /bin/busybox: install busybox-static (`sudo ci/install-deps.sh`)")
    if not shutil.which("nft"):
        problems.append("missing nft: install nftables (`sudo ci/install-deps.sh`)")
    if importlib.util.find_spec("matplotlib") is None:
        problems.append("missing matplotlib for soak.png: install python3-matplotlib (`sudo ci/install-deps.sh`)")
    return problems


def _commit() -> str:
    """The checked-out commit, marked dirty when the tree has changes (the binary may hold them)."""
    repo = Path(__file__).resolve().parents[2]
    head = run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], check=False).stdout.decode().strip()
    dirty = run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"], check=False).stdout
    return (head or "unknown") + (" (dirty tree)" if dirty.strip() else "")


class _Soak:
    """Owns the soak's diycd, image, namespace and scratch directory, and removes them all."""

    def __init__(self, build_dir: Path) -> None:
        self.build_dir = build_dir
        self.names = Names.for_process()
        self.table = f"diyc_soak_{os.getpid()}"
        self.netns = self.names.netns("soak")
        self.cleanup = Cleanup()
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.names.prefix}-soak-", dir="/tmp"))
        self.cleanup.push("remove temporary directory", lambda: remove_tree(self.tmp))
        self.diycd: DiycdProcess | None = None

    def start(self) -> None:
        self.cleanup.push("delete nftables table", lambda: delete_nft_table(self.table))
        self.diycd = DiycdProcess(self.build_dir / "server" / "diycd", socket=str(self.tmp / "run" / "diyc.sock"),
                                  state_dir=str(self.tmp / "state"), extra_args=["--nft-table", self.table])
        self.cleanup.push("stop diycd", self._stop_diycd)
        self.diycd.start(timeout=15)
        rootfs = build_busybox_rootfs(self.tmp / "rootfs")
        with self.diycd.client() as client:
            client.import_image(_IMAGE, directory=str(rootfs))
        diyc.NetNS.create(self.netns).close()
        self.cleanup.push("remove the soak namespace", lambda: diyc.NetNS.remove_name(self.netns))

    def run(self, cycles: int) -> SoakResult:
        assert self.diycd is not None and self.diycd.pid is not None
        block = pick_subnets(os.getpid()).block(30)
        subnet, anchor = list(block.subnets(new_prefix=24))[:2]
        plan = SoakPlan(cycles=cycles, warm_up=WARM_UP_CYCLES, every=max(1, cycles // _SAMPLES), subnet=str(subnet),
                        anchor_subnet=str(anchor), image=_IMAGE, netns=self.netns)
        target = SoakTarget(pid=self.diycd.pid, state_dir=Path(self.diycd.state_dir), nft_table=self.table,
                            prefix=self.names.prefix)
        progress = Progress(f"soak {cycles} cycles", cycles)
        with self.diycd.client(timeout=60) as client:
            result = run_soak(client, target, plan, on_progress=lambda _: progress.advance())
        progress.finish()
        return result

    def _stop_diycd(self) -> list[str]:
        """Removes every container, image and network through diycd, then stops it."""
        errors: list[str] = []
        if self.diycd is None:
            return errors
        if self.diycd.running:
            try:
                with self.diycd.client(timeout=60) as client:
                    for container in client.list_containers(all=True):
                        client.remove_container(container.name, force=True)
                    for image in client.list_images():
                        client.remove_image(image.name)
                    for network in client.list_networks():
                        client.delete_network(network.name, force=True)
            except diyc.DiycError as exc:
                errors.append(f"clean up through diycd: {exc}")
            status = self.diycd.stop(timeout=30)
            if status not in (0, None):
                errors.append(f"diycd exited with status {status} on SIGTERM")
        elif self.diycd.returncode not in (0, None):
            errors.append(f"diycd died during the soak with status {self.diycd.returncode}: "
                          f"{self.diycd.log_tail()}")
        return errors

    def finish(self) -> list[str]:
        """Removes everything; returns cleanup errors and whatever of the soak is still on the host."""
        problems = self.cleanup.run_all()
        if any(self.names.owns_netns(n) for n in diyc.NetNS.list()):
            problems.append("soak namespace left")
        if links := host_links(self.names):
            problems.append(f"links left: {links[:5]}")
        if nft_table_exists(self.table):
            problems.append(f"nftables table inet {self.table} left")
        if cgroups := cgroup_leftovers(self.names):
            problems.append(f"cgroups left: {cgroups[:5]}")
        if self.tmp.exists():
            problems.append(f"temporary directory {self.tmp} left")
        return problems


def run_soak_command(cycles: int, out: Path, build_dir: Path, command: str) -> int:
    problems = _preflight(build_dir)
    if problems:
        for problem in problems:
            print(f"bench: {problem}", file=sys.stderr)
        return 2
    context: dict[str, Any] = {"command": command, "machine": machine_info(),
                               "diyc_commit": _commit(), "diycd": str(build_dir / "server" / "diycd")}
    started = time.monotonic()
    result: SoakResult | None = None
    interrupted = False
    soak = _Soak(build_dir)
    with handle_termination():
        try:
            soak.start()
            result = soak.run(cycles)
        except KeyboardInterrupt as exc:
            interrupted = True
            note(f"interrupted ({exc or 'Ctrl-C'}): cleaning up")
        except Exception as exc:
            context["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            cleanup_problems = soak.finish()
    context["duration_s"] = round(time.monotonic() - started, 1)
    context["loadavg_end"] = loadavg()
    if result is None:
        for problem in [context.get("error", "soak did not run"), *cleanup_problems]:
            print(f"bench: soak FAILED: {problem}", file=sys.stderr)
        return 130 if interrupted else 1
    problems = verdict(result) + [f"cleanup: {p}" for p in cleanup_problems]
    write_soak_outputs(result, problems, context, out)
    print(render_soak_markdown(result, problems, context))
    if problems:
        print("\nbench: SOAK FAILED\n" + "\n".join(f"bench:   {p}" for p in problems), file=sys.stderr)
    note(f"soak results in {out}/soak.md, soak.json, soak.png ({context['duration_s']} s)")
    if interrupted:
        return 130
    return 0 if not problems else 1
