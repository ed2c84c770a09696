#!/usr/bin/python3
"""diyc's benchmark suite: diycd side by side with its peers, in one run.

    sudo bench/run.sh [--quick] [--sizes 10,100,500,1000] [--out bench/results]
    sudo bench/run.sh --soak 1000 [--out bench/results]

For every N it joins N network namespaces (made beforehand, not timed) to a
bridge and detaches them again, with each method in turn: diycd over gRPC
(one client, then 8 concurrent clients), the diyc Python bindings
in-process, a raw netlink floor in C++, the CNI reference plugins (bridge +
host-local) and one `ip` process per step. It then times container start
against runc and follows diycd's resident memory. Every scenario ends with
pings between random attached pairs and a check that nothing is left.

Results go to stdout (a table) and to the output folder: results.md,
results.json, chart.png and diycd.log. A failed check or any error makes the
exit status non-zero; slow timings never do.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import diyc
from diyc.daemon import DiycdProcess

from diyc_bench.containers import ContainerBench, cgroup_leftovers
from diyc_bench.host import (
    MAX_CONTAINERS,
    Cleanup,
    Names,
    Slot,
    Subnets,
    create_namespaces,
    delete_links,
    delete_nft_table,
    handle_termination,
    host_links,
    nft_table_exists,
    pick_subnets,
    remove_namespaces,
    remove_tree,
)
from diyc_bench.machine import binary_fingerprints, loadavg, machine_info, versions
from diyc_bench.memory import rss_kib, run_cycles
from diyc_bench.methods import (
    CNI_PLUGIN_DIR,
    AttachMethod,
    BindingsMethod,
    CniMethod,
    DiycCniMethod,
    Context,
    DiycGrpcMethod,
    FloorMethod,
    IpToolMethod,
)
from diyc_bench.progress import Progress, note
from diyc_bench.report import Report, make_row, render_markdown, render_text, set_ratios, write_chart, write_json
from diyc_bench.scenario import Check, ScenarioOutcome, run_scenario
from diyc_bench.soak_bench import run_soak_command

REPO = Path(__file__).resolve().parents[1]
FULL_SIZES = (10, 100, 500, 1000)
QUICK_SIZES = (10, 100)
CONCURRENT_CLIENTS = 8
_SETTLE_SECONDS = 0.5  # lets the kernel finish deferred work between methods
#: Host-wide settings a method may change: the CNI bridge plugin turns on
#: forwarding, diycd raises the input backlog once a bridge has 512+ ports.
_GUARDED_SYSCTLS = ("net/ipv4/ip_forward", "net/core/netdev_max_backlog")


@dataclass(frozen=True)
class Options:
    sizes: tuple[int, ...]
    out: Path
    quick: bool
    cycles: int
    starts: int
    pairs: int
    seed: int
    build_dir: Path
    floor_binary: Path | None
    command: str
    soak: int | None


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes wants numbers like 10,100,500: {text!r}") from None
    if not sizes or sizes[0] < 2 or sizes[-1] > MAX_CONTAINERS:
        raise argparse.ArgumentTypeError(f"every size must be 2..{MAX_CONTAINERS} (one bridge holds 1023 ports)")
    return sizes


def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="N in {10,100}, 100 memory cycles, 20 container starts (for CI, a few minutes)")
    parser.add_argument("--sizes", type=_sizes, help="comma-separated N values (default 10,100,500,1000)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="output folder")
    parser.add_argument("--cycles", type=int, help="create/attach/detach/delete cycles for the memory check")
    parser.add_argument("--starts", type=int, help="container starts per runtime (at least 20)")
    parser.add_argument("--pairs", type=int, default=10, help="ping pairs checked per scenario (at least 10)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random ping pairs")
    parser.add_argument("--build-dir", type=Path, default=Path(os.environ.get("DIYC_BUILD_DIR", REPO / "build")),
                        help="where ci/build.sh built diycd (default: $DIYC_BUILD_DIR, else build/)")
    parser.add_argument("--floor-binary", type=Path, help="netlink_floor to use (default: BUILD_DIR/bench/netlink_floor)")
    parser.add_argument("--soak", type=int, metavar="CYCLES",
                        help="run only the soak: CYCLES create/attach/run/stop/remove cycles, fail on any growth "
                             "(writes soak.md, soak.json, soak.png)")
    args = parser.parse_args(argv)
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    starts = args.starts if args.starts is not None else (20 if args.quick else 50)
    cycles = args.cycles if args.cycles is not None else (100 if args.quick else 1000)
    if starts < 20 or args.pairs < 10 or cycles < 1:
        parser.error("--starts must be at least 20, --pairs at least 10, --cycles at least 1")
    if args.soak is not None and args.soak < 2:
        parser.error("--soak needs at least 2 cycles")
    return Options(sizes=sizes, out=args.out.resolve(), quick=args.quick, cycles=cycles, starts=starts,
                   pairs=args.pairs, seed=args.seed, build_dir=args.build_dir.resolve(),
                   floor_binary=args.floor_binary, command="bench/run.sh " + " ".join(argv), soak=args.soak)


def preflight(opts: Options) -> list[str]:
    """Everything the run needs, checked before anything is created."""
    problems: list[str] = []
    if os.geteuid() != 0:
        problems.append("run as root: the bench creates namespaces, links and containers")
    for binary in ("server/diycd", "server/diyc-init"):
        if not os.access(opts.build_dir / binary, os.X_OK):
            problems.append(f"missing {opts.build_dir / binary}: build with `sudo ci/build.sh`")
    tools = {"runc": "runc", "ip": "iproute2", "nft": "nftables"}
    problems += [f"missing {tool}: install it with `sudo ci/install-deps.sh`" for tool in tools if not shutil.which(tool)]
    for plugin in ("bridge", "host-local"):
        if not os.access(CNI_PLUGIN_DIR / plugin, os.X_OK):
            problems.append(f"missing {CNI_PLUGIN_DIR / plugin}: install containernetworking-plugins "
                            "(`sudo ci/install-deps.sh`)")
    if not Path("/bin/busybox").exists():
        problems.append("missing /bin/busybox: install busybox-static (`sudo ci/install-deps.sh`)")
    if importlib.util.find_spec("matplotlib") is None:
        problems.append("missing matplotlib for chart.png: install python3-matplotlib (`sudo ci/install-deps.sh`)")
    return problems


def diyc_cni_binary(opts: Options) -> Path | None:
    """The diyc-cni plugin, if built; its scenario is skipped without it."""
    candidate = opts.build_dir / "cni" / "diyc-cni"
    return candidate if os.access(candidate, os.X_OK) else None


def floor_binary(opts: Options) -> Path | None:
    """The netlink floor binary, if built; the floor is skipped without it."""
    candidate = opts.floor_binary or opts.build_dir / "bench" / "netlink_floor"
    return candidate if os.access(candidate, os.X_OK) else None


class Run:
    """One benchmark run: owns every host object it makes and removes them all."""

    def __init__(self, opts: Options, report: Report) -> None:
        self.opts = opts
        self.report = report
        self.names = Names.for_process()
        self.table = f"diyc_bench_{os.getpid()}"
        self.cleanup = Cleanup()
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.names.prefix}-", dir="/tmp"))
        self.cleanup.push("remove temporary directory", lambda: remove_tree(self.tmp))
        self.diycd: DiycdProcess | None = None
        self.subnets: Subnets | None = None
        self.rng = random.Random(opts.seed)

    # -- fixtures

    def start(self) -> None:
        self._guard_sysctls()
        self.cleanup.push("delete nftables table", lambda: delete_nft_table(self.table))
        self.cleanup.push("delete bench links", lambda: delete_links(self.names))
        self.cleanup.push("remove bench namespaces", lambda: remove_namespaces(self.names))
        self.subnets = pick_subnets(os.getpid())
        self.report.config["subnets"] = str(self.subnets.base)
        self.diycd = DiycdProcess(self.opts.build_dir / "server" / "diycd", socket=str(self.tmp / "run" / "diyc.sock"),
                                  state_dir=str(self.tmp / "state"), extra_args=["--nft-table", self.table])
        self.cleanup.push("stop diycd", self._stop_diycd)
        self.diycd.start()
        time.sleep(0.5)
        assert self.diycd.pid is not None
        self.report.memory.idle_kib = rss_kib(self.diycd.pid)

    def _guard_sysctls(self) -> None:
        """Host-wide sysctls the methods change are put back as found, and the change noted."""
        before = {name: Path("/proc/sys", name).read_text() for name in _GUARDED_SYSCTLS}

        def restore() -> None:
            for name, value in before.items():
                path = Path("/proc/sys", name)
                now = path.read_text()
                if now != value:
                    self.report.notes.append(f"{name.replace('/', '.')} was changed during the run "
                                             f"({value.strip()} -> {now.strip()}); restored to {value.strip()}")
                    path.write_text(value)

        self.cleanup.push("restore host sysctls", restore)

    def _stop_diycd(self) -> list[str]:
        """Deletes the bench's networks through diycd, stops it, keeps its log."""
        errors: list[str] = []
        if self.diycd is None:
            return errors
        if self.diycd.running:
            try:
                with self.diycd.client(timeout=60) as client:
                    for network in client.list_networks():
                        client.delete_network(network.name, force=True)
            except diyc.DiycError as exc:
                errors.append(f"delete diycd networks: {exc}")
            status = self.diycd.stop(timeout=30)
            if status not in (0, None):
                errors.append(f"diycd exited with status {status} on SIGTERM")
        elif self.diycd.returncode not in (0, None):
            errors.append(f"diycd died during the run with status {self.diycd.returncode}")
        try:
            self.opts.out.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.diycd.log_path, self.opts.out / "diycd.log")
        except OSError as exc:
            errors.append(f"copy diycd log: {exc}")
        return errors

    def make_namespaces(self) -> tuple[list[Slot], Slot]:
        count = max(self.opts.sizes)
        slots = [Slot(i, self.names.netns(str(i)), str(i)) for i in range(count)]
        warm = Slot(-1, self.names.netns("w"), "w")
        progress = Progress(f"create {count + 1} namespaces (not timed)", count + 1)
        create_namespaces([warm.netns, *(s.netns for s in slots)], progress.advance)
        progress.finish()
        return slots, warm

    # -- network scenarios

    def methods(self, n: int) -> list[Callable[[], AttachMethod]]:
        """Fresh method instances for one N, in the order they run."""
        assert self.subnets is not None and self.diycd is not None
        ctx = Context(self.names, self.tmp, self.diycd, self.table, floor_binary(self.opts))
        s = self.subnets
        factories: list[Callable[[], AttachMethod]] = [
            lambda: DiycGrpcMethod(ctx, s.block(0), clients=1),
            lambda: DiycGrpcMethod(ctx, s.block(1), clients=CONCURRENT_CLIENTS),
            lambda: BindingsMethod(ctx, s.block(2)),
        ]
        if ctx.floor_binary is not None:
            factories.append(lambda: FloorMethod(ctx, s.block(3)))
        if (plugin := diyc_cni_binary(self.opts)) is not None:
            factories.append(lambda: DiycCniMethod(ctx, s.block(6), plugin))
        factories += [lambda: CniMethod(ctx, s.block(4), n), lambda: IpToolMethod(ctx, s.block(5))]
        return factories

    def _after_attach(self, method: AttachMethod, n: int) -> list[Check]:
        """For diycd: it lists exactly N attachments; at the largest N, its RSS."""
        if not isinstance(method, DiycGrpcMethod):
            return []
        count = method.attachment_count()
        if method.clients == 1 and n == max(self.opts.sizes) and self.diycd is not None and self.diycd.pid:
            self.report.memory.attached_kib = rss_kib(self.diycd.pid)
            self.report.memory.attached_n = n
        return [Check(f"diycd lists {n} attachments ({method.key} N={n})", count == n, f"{count} listed")]

    def network_scenarios(self, slots: list[Slot], warm: Slot) -> None:
        for n in self.opts.sizes:
            for factory in self.methods(n):
                outcome = run_scenario(factory(), n, slots[:n], warm, self.names, rng=self.rng,
                                       pairs=self.opts.pairs, after_attach=self._after_attach)
                self._record(outcome)
                time.sleep(_SETTLE_SECONDS)

    def _record(self, outcome: ScenarioOutcome) -> None:
        for phase in outcome.phases:
            self.report.rows.append(make_row("network", phase.op, outcome.method_key, outcome.label, outcome.n,
                                             outcome.clients, phase.samples_ns, phase.wall_ns, phase.settle_ns))
        self.report.checks.extend(outcome.checks)
        self.report.errors.extend(outcome.errors)
        for check in outcome.checks:
            if not check.ok:
                note(f"check FAILED: {check.name}: {check.detail}")
        for error in outcome.errors:
            note(f"ERROR {error}")

    # -- memory and containers

    def memory_cycles(self, netns: str) -> None:
        assert self.diycd is not None and self.diycd.pid is not None and self.subnets is not None
        self.report.memory.after_scenarios_kib = rss_kib(self.diycd.pid)
        try:
            self.report.memory.cycles = run_cycles(self.diycd, self.names, self.subnets.cycles(), netns,
                                                   self.opts.cycles)
        except Exception as exc:
            self.report.errors.append(f"memory cycles: {type(exc).__name__}: {exc}")
        problems = [f"host links left: {links}"] if (links := host_links(self.names)) else []
        with self.diycd.client() as client:
            left = [n.name for n in client.list_networks()]
        if left:
            problems.append(f"diycd still has networks {left[:5]}")
        if nft_table_exists(self.table):
            problems.append(f"nftables table inet {self.table} still exists")
        self.report.checks.append(Check("clean after memory cycles", not problems, "; ".join(problems) or "nothing left"))

    def containers(self) -> None:
        assert self.diycd is not None
        bench = ContainerBench(self.diycd, self.names, self.tmp, self.opts.starts)
        self.cleanup.push("remove bench containers", bench.close)
        try:
            bench.prepare()
            for phase in bench.run():
                self.report.rows.append(make_row("container", phase.op, phase.method_key, phase.label,
                                                 len(phase.samples_ns), 1, phase.samples_ns, phase.wall_ns))
        except Exception as exc:
            self.report.errors.append(f"containers: {type(exc).__name__}: {exc}")
        self.report.errors.extend(f"containers: {e}" for e in bench.remove_all())
        problems = bench.leftovers()
        self.report.checks.append(Check("clean after containers", not problems, "; ".join(problems) or "nothing left"))
        self.report.errors.extend(f"containers: {e}" for e in bench.close())

    # -- the end

    def finish(self) -> None:
        """Removes everything, then checks the host holds nothing of the bench."""
        self.report.errors.extend(self.cleanup.run_all())
        problems: list[str] = []
        namespaces = [n for n in diyc.NetNS.list() if self.names.owns_netns(n)]
        if namespaces:
            problems.append(f"namespaces left: {namespaces[:5]}")
        if links := host_links(self.names):
            problems.append(f"links left: {links[:5]}")
        if nft_table_exists(self.table):
            problems.append(f"nftables table inet {self.table} left")
        if cgroups := cgroup_leftovers(self.names):
            problems.append(f"cgroups left: {cgroups[:5]}")
        if self.tmp.exists():
            problems.append(f"temporary directory {self.tmp} left")
        self.report.checks.append(Check("host clean at the end", not problems, "; ".join(problems) or "nothing left"))


def run_all(opts: Options, report: Report) -> None:
    bench = Run(opts, report)
    try:
        bench.start()
        slots, warm = bench.make_namespaces()
        bench.network_scenarios(slots, warm)
        bench.memory_cycles(slots[0].netns)
        bench.containers()
    finally:
        bench.finish()


def write_outputs(report: Report, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    try:
        write_chart(report, out / "chart.png")
    except Exception as exc:  # the chart is an output like the others: its failure fails the run
        report.errors.append(f"chart: {type(exc).__name__}: {exc}")
    (out / "results.md").write_text(render_markdown(report))
    write_json(report, out / "results.json")


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    if opts.soak is not None:
        return run_soak_command(opts.soak, opts.out, opts.build_dir, opts.command)
    problems = preflight(opts)
    if problems:
        for problem in problems:
            print(f"bench: {problem}", file=sys.stderr)
        return 2
    floor = floor_binary(opts)
    if floor is None:
        note("netlink floor skipped: build/bench/netlink_floor is missing (build it with `sudo ci/build.sh`, "
             "or pass --floor-binary)")
    report = Report(
        machine=machine_info(),
        versions=versions(REPO, opts.build_dir / "server" / "diycd", CNI_PLUGIN_DIR / "bridge"),
        config={"command": opts.command, "sizes": list(opts.sizes), "quick": opts.quick, "cycles": opts.cycles,
                "container_starts": opts.starts, "ping_pairs": opts.pairs, "seed": opts.seed,
                "concurrent_clients": CONCURRENT_CLIENTS, "floor": str(floor) if floor else "skipped (not built)"},
    )
    started = time.monotonic()
    fingerprints = binary_fingerprints(opts.build_dir)
    with handle_termination():
        try:
            run_all(opts, report)
        except KeyboardInterrupt as exc:
            report.interrupted = True
            note(f"interrupted ({exc or 'Ctrl-C'}): host cleaned up, writing partial results")
        except Exception as exc:
            report.errors.append(f"{type(exc).__name__}: {exc}")
            traceback.print_exc()
    report.config["duration_s"] = round(time.monotonic() - started, 1)
    for name, digest in binary_fingerprints(opts.build_dir).items():
        if digest != fingerprints[name]:
            report.notes.append(f"{name} was rebuilt during the run: diycd keeps running the binary it started "
                                "with, but diyc-init is executed anew for every container")
    report.machine["loadavg_end"] = loadavg()
    set_ratios(report.rows)
    write_outputs(report, opts.out)
    print(render_text(report))
    note(f"results in {opts.out}/results.md, results.json, chart.png ({report.config['duration_s']} s)")
    if report.interrupted:
        return 130
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
