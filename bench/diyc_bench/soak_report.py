"""The soak's outputs: soak.json (every sample), soak.md (tables), soak.png (RSS and fds over cycles)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .soak import SoakResult, drifting_samples, rss_bound_kib, rss_halves
from .soak_sample import BOUNDED_FIELDS, HOST_FIELDS, OWNED_FIELDS, Sample
from .stats import percentile

__all__ = ["render_soak_markdown", "soak_json", "write_soak_chart", "write_soak_outputs"]

_COLUMNS = ("cycles", "elapsed_s", *OWNED_FIELDS, *BOUNDED_FIELDS, "rss_kib", *HOST_FIELDS)


def _cycle_summary(result: SoakResult) -> dict[str, float]:
    if not result.cycle_s:
        return {}
    ordered = sorted(result.cycle_s)
    return {"count": len(ordered), "total_s": round(sum(ordered), 1),
            "median_ms": round(percentile(ordered, 50) * 1000, 1),
            "p95_ms": round(percentile(ordered, 95) * 1000, 1), "max_ms": round(ordered[-1] * 1000, 1)}


def _rss_summary(result: SoakResult) -> dict[str, int]:
    if result.baseline is None or result.final is None:
        return {}
    first, second = rss_halves(result)
    return {"baseline_kib": result.baseline.rss_kib, "final_kib": result.final.rss_kib,
            "first_half_peak_kib": first, "second_half_peak_kib": second,
            "second_half_growth_kib": second - first, "bound_kib": rss_bound_kib(first)}


def soak_json(result: SoakResult, problems: Sequence[str], context: dict[str, Any]) -> dict[str, Any]:
    plan = result.plan
    return {
        **context,
        "plan": {"cycles": plan.cycles, "warm_up": plan.warm_up, "every": plan.every, "subnet": plan.subnet,
                 "anchor_subnet": plan.anchor_subnet, "settle_s": plan.settle_s,
                 "final_settle_s": plan.final_settle_s},
        "ok": not problems,
        "problems": list(problems),
        "drift_notes": drifting_samples(result),
        "error": result.error,
        "malloc_arena_limit": result.arena_limit,
        "cycle_time": _cycle_summary(result),
        "rss": _rss_summary(result),
        "baseline": result.baseline.as_dict() if result.baseline else None,
        "busy": result.busy.as_dict() if result.busy else None,
        "samples": [s.as_dict() for s in result.samples],
        "settle_waits_s": result.settle_waits_s,
        "cycle_ms": [round(s * 1000, 2) for s in result.cycle_s],
    }


def _row(sample: Sample) -> list[str]:
    values = sample.as_dict()
    return [f"{values[c]:g}" if isinstance(values[c], float) else str(values[c]) for c in _COLUMNS]


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] +
            ["| " + " | ".join(row) + " |" for row in rows])


def render_soak_markdown(result: SoakResult, problems: Sequence[str], context: dict[str, Any]) -> str:
    plan = result.plan
    lines = ["# diycd soak", ""]
    lines.append(f"**{'PASS' if not problems else 'FAIL'}**: {plan.cycles} cycles of create network -> attach a "
                 "namespace -> run a busybox container on the network -> stop (SIGTERM, clean exit) -> remove -> "
                 f"detach -> delete network, after {plan.warm_up} warm-up cycles, sampled every {plan.every}.")
    lines.append("")
    lines += [f"- {problem}" for problem in problems]
    if "command" in context:
        lines.append(f"- command: `{context['command']}`, {context.get('duration_s', '?')} s")
    if machine := context.get("machine"):
        lines.append(f"- machine: {machine.get('nproc')} CPUs {machine.get('cpu')}, kernel {machine.get('kernel')}, "
                     f"load average {machine.get('loadavg_start')} at start, {context.get('loadavg_end', '?')} at end, "
                     f"{machine.get('date')}")
    if "diyc_commit" in context:
        lines.append(f"- diyc commit: {context['diyc_commit']}")
    cycle = _cycle_summary(result)
    if cycle:
        lines.append(f"- cycle time: median {cycle['median_ms']} ms, p95 {cycle['p95_ms']} ms, "
                     f"max {cycle['max_ms']} ms, {cycle['total_s']} s for {cycle['count']} cycles")
    rss = _rss_summary(result)
    if rss:
        lines.append(f"- RSS: {rss['baseline_kib']} KiB at the baseline, {rss['final_kib']} KiB at the end; peak "
                     f"{rss['first_half_peak_kib']} KiB over the first half, {rss['second_half_peak_kib']} KiB over "
                     f"the second ({rss['second_half_growth_kib']:+d} KiB, bound {rss['bound_kib']} KiB)")
    lines += ["", "## Owned counts (asserted: end == baseline)", ""]
    if result.baseline is not None and result.final is not None:
        base, busy, final = result.baseline, result.busy, result.final
        rows = []
        for name in OWNED_FIELDS + BOUNDED_FIELDS:
            values = [getattr(s, name) for s in result.samples]
            bounds = {"route_sockets": "<= threads", "malloc_arenas": f"<= {result.arena_limit}"}
            rule = bounds[name] if name in BOUNDED_FIELDS else ("==" if getattr(final, name) == getattr(base, name)
                                                                else "GREW" if getattr(final, name) > getattr(base, name)
                                                                else "FELL")
            rows.append([name, str(getattr(base, name)), str(getattr(busy, name)) if busy else "-",
                         str(getattr(final, name)), f"{min(values)}..{max(values)}", rule])
        lines += _markdown_table(["count", "baseline", "while running", "end", "range", "end vs baseline"], rows)
    lines += ["", "Host totals (links, /run/netns, mounts, overlay mounts, cgroups under diyc*) are in the samples "
              "below for context only: other programs on the host move them.", ""]
    notes = drifting_samples(result)
    if notes:
        lines += ["Samples still off the baseline after their settle wait:", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["## Samples", ""]
    lines += _markdown_table(_COLUMNS, [_row(s) for s in result.samples])
    return "\n".join(lines) + "\n"


def write_soak_chart(result: SoakResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cycles = [s.cycles for s in result.samples]
    fig, (rss_ax, count_ax) = plt.subplots(1, 2, figsize=(13, 5))
    rss_ax.plot(cycles, [s.rss_kib / 1024 for s in result.samples], marker=".")
    rss_ax.set_title("diycd RSS")
    rss_ax.set_ylabel("MiB")
    rss_ax.set_ylim(bottom=0)  # a plateau should look like one, not like noise blown up
    for name in ("fds", "route_sockets", "threads", "malloc_arenas", "links", "nft_rules"):
        count_ax.plot(cycles, [getattr(s, name) for s in result.samples], marker=".", label=name)
    count_ax.set_title("diycd fds, threads and malloc arenas; soak links and rules")
    count_ax.legend(fontsize=8)
    for ax in (rss_ax, count_ax):
        ax.set_xlabel("cycles after warm-up")
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_soak_outputs(result: SoakResult, problems: list[str], context: dict[str, Any], out: Path) -> None:
    """soak.json, soak.md and soak.png in out; a chart failure is added to problems."""
    out.mkdir(parents=True, exist_ok=True)
    if result.samples:
        try:
            write_soak_chart(result, out / "soak.png")
        except Exception as exc:  # an output like the others: its failure fails the run
            problems.append(f"chart: {type(exc).__name__}: {exc}")
    (out / "soak.md").write_text(render_soak_markdown(result, problems, context))
    (out / "soak.json").write_text(json.dumps(soak_json(result, problems, context), indent=1) + "\n")
