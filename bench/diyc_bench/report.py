"""The results: a table on stdout, results.md, results.json and chart.png.

Every peer row carries its ratio to diyc (peer median / diyc median, same
operation and N), so "how much faster" is read off directly: above 1 the
peer is slower than diyc, below 1 faster.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .memory import CycleResult
from .scenario import Check
from .stats import Summary, summarize

__all__ = ["MemoryReport", "Report", "Row", "make_row", "render_markdown", "render_text", "set_ratios",
           "write_chart", "write_json"]

#: The reference each group's ratios are taken against.
NETWORK_REFERENCE = "diyc-grpc-seq"
CONTAINER_REFERENCE = "diyc"


@dataclass
class Row:
    """One operation of one method at one size."""

    group: str  # "network" or "container"
    op: str
    method_key: str
    label: str
    n: int  # containers attached (network) or runs (container)
    clients: int
    summary: Summary
    wall_s: float
    samples_ms: list[float]
    settle_s: float = 0.0  # deferred kernel work after the last call (in wall_s)
    ratio: float | None = None  # median / reference median; None for the reference itself

    @property
    def ops_per_s(self) -> float:
        return self.summary.count / self.wall_s if self.wall_s > 0 else 0.0


def make_row(group: str, op: str, method_key: str, label: str, n: int, clients: int,
             samples_ns: Sequence[int], wall_ns: int, settle_ns: int = 0) -> Row:
    return Row(group, op, method_key, label, n, clients, summarize(samples_ns), wall_ns / 1e9,
               [round(s / 1e6, 4) for s in samples_ns], settle_ns / 1e9)


def set_ratios(rows: Sequence[Row]) -> None:
    """Fills each non-reference row's ratio against its group's diyc row."""
    reference = {
        (r.group, r.op, r.n): r.summary.median_ms
        for r in rows
        if r.method_key == (NETWORK_REFERENCE if r.group == "network" else CONTAINER_REFERENCE)
    }
    for row in rows:
        is_reference = row.method_key == (NETWORK_REFERENCE if row.group == "network" else CONTAINER_REFERENCE)
        base = reference.get((row.group, row.op, row.n))
        row.ratio = None if is_reference or not base else row.summary.median_ms / base


@dataclass
class MemoryReport:
    """diycd's VmRSS at the points that tell a leak from a working set."""

    idle_kib: int | None = None
    attached_kib: int | None = None
    attached_n: int | None = None
    after_scenarios_kib: int | None = None
    cycles: CycleResult | None = None


@dataclass
class Report:
    machine: dict[str, Any]
    versions: dict[str, Any]
    config: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    memory: MemoryReport = field(default_factory=MemoryReport)
    checks: list[Check] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # facts about the run that are not failures
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors and not self.interrupted and all(c.ok for c in self.checks)


# -- text


def _ms(value: float) -> str:
    if value < 1:
        return f"{value:.3f}"
    if value < 100:
        return f"{value:.2f}"
    return f"{value:.1f}"


def _ratio(row: Row) -> str:
    return "-" if row.ratio is None else f"{row.ratio:.2f}x"


def _table(header: Sequence[str], lines: Iterable[Sequence[str]], *, markdown: bool) -> str:
    body = [list(header)] + [list(line) for line in lines]
    if markdown:
        out = ["| " + " | ".join(body[0]) + " |", "|" + "|".join("---:" if i >= 2 else "---" for i in range(len(header))) + "|"]
        out += ["| " + " | ".join(line) + " |" for line in body[1:]]
        return "\n".join(out)
    widths = [max(len(line[i]) for line in body) for i in range(len(header))]

    def fmt(line: Sequence[str]) -> str:
        # Text columns left-aligned, numbers right-aligned.
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))

    return "\n".join([fmt(body[0]), fmt(["-" * w for w in widths])] + [fmt(line) for line in body[1:]])


def _network_lines(rows: Sequence[Row]) -> list[list[str]]:
    ordered = sorted((r for r in rows if r.group == "network"), key=lambda r: (r.op != "attach", r.op, r.n))
    return [[r.op, r.label, str(r.n), _ms(r.summary.median_ms), _ms(r.summary.p95_ms), _ms(r.summary.max_ms),
             f"{r.ops_per_s:.0f}", _ratio(r)] for r in ordered]


def _container_lines(rows: Sequence[Row]) -> list[list[str]]:
    return [[r.op, r.label, str(r.n), _ms(r.summary.median_ms), _ms(r.summary.p95_ms), _ms(r.summary.max_ms), _ratio(r)]
            for r in rows if r.group == "container"]


def _settle_notes(rows: Sequence[Row]) -> list[str]:
    """Where calls returned before the kernel was done, how long it took after."""
    return [f"{r.label} {r.op} N={r.n}: kernel deletions finished {r.settle_s * 1000:.1f} ms after the last call "
            "returned (included in ops/s)"
            for r in rows if r.group == "network" and r.settle_s > 0.001]


_NETWORK_HEADER = ["op", "method", "N", "median ms", "p95 ms", "max ms", "ops/s", "vs diyc"]
_CONTAINER_HEADER = ["op", "method", "runs", "median ms", "p95 ms", "max ms", "vs diyc"]


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


def _memory_lines(memory: MemoryReport) -> list[str]:
    lines = [f"diycd VmRSS idle after start: {_mib(memory.idle_kib)}",
             f"diycd VmRSS with {memory.attached_n or '-'} attachments: {_mib(memory.attached_kib)}",
             f"diycd VmRSS after all attach scenarios (0 attachments): {_mib(memory.after_scenarios_kib)}"]
    c = memory.cycles
    if c is not None and c.cycle_ns:
        lines.append(f"diycd VmRSS over {c.cycles} create-network/attach/detach/delete-network cycles: "
                     f"{_mib(c.rss_before_kib)} -> {_mib(c.rss_after_kib)} "
                     f"(growth {c.growth_kib:+d} KiB, {c.growth_kib / c.cycles:+.2f} KiB/cycle; "
                     f"median cycle {summarize(c.cycle_ns).median_ms:.1f} ms)")
    return lines


def _check_lines(report: Report) -> list[str]:
    failed = [c for c in report.checks if not c.ok]
    lines = [f"checks: {len(report.checks) - len(failed)}/{len(report.checks)} passed"]
    lines += [f"FAILED {c.name}: {c.detail}" for c in failed]
    lines += [f"note: {n}" for n in report.notes]
    lines += [f"ERROR {e}" for e in report.errors]
    if report.interrupted:
        lines.append("INTERRUPTED: partial results")
    return lines


def render_text(report: Report) -> str:
    parts = ["Network attach/detach, per operation (vs diyc = median / diyc gRPC 1-client median; "
             "ops/s = N / wall time of the phase)",
             _table(_NETWORK_HEADER, _network_lines(report.rows), markdown=False)]
    parts += _settle_notes(report.rows)
    if any(r.group == "container" for r in report.rows):
        parts += ["", "Container start (busybox)", _table(_CONTAINER_HEADER, _container_lines(report.rows), markdown=False)]
    parts += [""] + _memory_lines(report.memory) + [""] + _check_lines(report)
    return "\n".join(parts)


def render_markdown(report: Report) -> str:
    m, v = report.machine, report.versions
    parts = [
        "# diyc benchmark results",
        "",
        f"{m.get('date')} on `{m.get('hostname')}`: {m.get('nproc')} CPUs ({m.get('cpu')}), "
        f"{m.get('memory_gib')} GiB, kernel {m.get('kernel')}, load average at start {m.get('loadavg_start')}, "
        f"at end {m.get('loadavg_end')}, nice {m.get('nice')}.",
        "",
        f"diyc {v.get('diyc_commit')}{' (dirty tree)' if v.get('diyc_dirty') else ''}; "
        f"runc {v.get('runc')}; CNI plugins {v.get('cni_plugins_package')} "
        f"(protocol {v.get('cni_version', {}).get('cniVersion')}); iproute2 {v.get('iproute2')}.",
        "",
        f"Command: `{report.config.get('command')}`",
        "",
        "## Network attach / detach (ms per operation)",
        "",
        "Each method joins N pre-made network namespaces to its own bridge (veth with `eth0` in the namespace, "
        "bridge port, IPv4 address in a /21, links up, default route) and then undoes it. "
        "`vs diyc` is the method's median over diyc gRPC with one client (above 1: slower than diyc). "
        "`ops/s` is N over the wall time of the whole phase, including kernel work a method defers past its "
        "last call: diycd's DetachContainer returns once the veth is retired (down, off the bridge, in diycd's "
        "link group) and a reaper deletes retired veths in batches, so its per-call detach latency does not "
        "include the deletion but its `ops/s` does.",
        "",
        _table(_NETWORK_HEADER, _network_lines(report.rows), markdown=True),
    ]
    notes = _settle_notes(report.rows)
    if notes:
        parts += [""] + [f"- {note}" for note in notes]
    if any(r.group == "container" for r in report.rows):
        parts += ["", "## Container start (ms)", "",
                  _table(_CONTAINER_HEADER, _container_lines(report.rows), markdown=True)]
    parts += ["", "## diycd memory", ""] + [f"- {line}" for line in _memory_lines(report.memory)]
    parts += ["", "## Checks", ""] + [f"- {line}" for line in _check_lines(report)]
    parts += ["", "![median per operation against N](chart.png)", ""]
    return "\n".join(parts)


# -- JSON


def _row_json(row: Row) -> dict[str, Any]:
    data = asdict(row)
    data["summary"] = row.summary.as_dict()
    data["ops_per_s"] = row.ops_per_s
    return data


def write_json(report: Report, path: Path) -> None:
    memory = asdict(report.memory)
    if report.memory.cycles is not None:
        memory["cycles"]["growth_kib"] = report.memory.cycles.growth_kib
    data = {
        "ok": report.ok,
        "interrupted": report.interrupted,
        "machine": report.machine,
        "versions": report.versions,
        "config": report.config,
        "results": [_row_json(r) for r in report.rows],
        "memory": memory,
        "checks": [asdict(c) for c in report.checks],
        "errors": report.errors,
        "notes": report.notes,
    }
    path.write_text(json.dumps(data, indent=1) + "\n")


# -- chart


def write_chart(report: Report, path: Path) -> None:
    """Median per operation against N for every method; attach and detach panels, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    network = [r for r in report.rows if r.group == "network"]
    sizes = sorted({r.n for r in network})
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
    for ax, op in zip(axes, ("attach", "detach")):
        labels = list(dict.fromkeys(r.label for r in network if r.op == op))
        for label in labels:
            points = sorted((r.n, r.summary.median_ms) for r in network if r.op == op and r.label == label)
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        ax.set_title(f"{op}: median per operation")
        ax.set_xlabel("N (containers)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sizes)
        ax.set_xticklabels([str(s) for s in sizes])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms per operation (log)")
    axes[1].legend(fontsize=8, loc="best")
    m = report.machine
    fig.suptitle(f"diyc vs peers - {m.get('nproc')} CPUs, kernel {m.get('kernel')}, {m.get('date')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
