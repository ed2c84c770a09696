"""The pure parts of the bench: statistics, ratios and the rendered tables.

They run without root and without diycd:

    PYTHONPATH=bindings/python:bench /usr/bin/python3 -m pytest bench/tests -q
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from diyc_bench.host import Names, Slot, Subnets
from diyc_bench.memory import CycleResult
from diyc_bench.report import MemoryReport, Report, make_row, render_markdown, render_text, set_ratios, write_json
from diyc_bench.scenario import Check
from diyc_bench.stats import percentile, summarize

MS = 1_000_000


def test_percentile_interpolates() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile([7.0], 95) == 7.0


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_converts_to_ms() -> None:
    summary = summarize([3 * MS, 1 * MS, 2 * MS])
    assert summary.count == 3
    assert summary.median_ms == 2.0
    assert summary.max_ms == 3.0
    assert summary.mean_ms == 2.0
    assert 2.0 < summary.p95_ms <= 3.0


def _report() -> Report:
    report = Report(machine={"nproc": 2, "kernel": "6.1", "date": "today"}, versions={}, config={"command": "x"})
    report.rows = [
        make_row("network", "attach", "diyc-grpc-seq", "diyc gRPC, 1 client", 10, 1, [2 * MS] * 10, 20 * MS),
        make_row("network", "attach", "cni", "CNI", 10, 1, [10 * MS] * 10, 100 * MS),
        make_row("container", "start (running)", "diyc", "diyc RunContainer", 20, 1, [50 * MS] * 20, 1000 * MS),
        make_row("container", "start (running)", "runc", "runc", 20, 1, [25 * MS] * 20, 500 * MS),
    ]
    set_ratios(report.rows)
    return report


def test_ratios_are_peer_over_diyc() -> None:
    report = _report()
    ratios = {(r.group, r.method_key): r.ratio for r in report.rows}
    assert ratios[("network", "diyc-grpc-seq")] is None
    assert ratios[("network", "cni")] == pytest.approx(5.0)
    assert ratios[("container", "runc")] == pytest.approx(0.5)


def test_ops_per_second_from_wall_time() -> None:
    row = _report().rows[0]
    assert row.ops_per_s == pytest.approx(500.0)


def test_text_and_markdown_show_every_row() -> None:
    report = _report()
    report.memory = MemoryReport(idle_kib=10240, cycles=CycleResult(10, 1000, 1100, cycle_ns=[MS] * 10))
    report.checks = [Check("ping", True, "10/10"), Check("clean", False, "a link left")]
    text = render_text(report)
    assert "5.00x" in text and "0.50x" in text
    assert "FAILED clean: a link left" in text
    assert "+100 KiB" in text
    markdown = render_markdown(report)
    assert "| attach | CNI | 10 |" in markdown
    assert not report.ok


def test_json_round_trips(tmp_path: Path) -> None:
    report = _report()
    write_json(report, tmp_path / "results.json")
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["ok"] is True
    assert len(data["results"]) == 4
    assert data["results"][1]["ratio"] == pytest.approx(5.0)
    assert data["results"][0]["summary"]["median_ms"] == 2.0


def test_names_stay_within_the_interface_limit() -> None:
    names = Names("db4194304")
    assert names.link("a", "1019") == "db4194304a1019"
    assert names.owns_link("db4194304bd") and not names.owns_link("db41943041a")
    assert names.owns_netns("db4194304-3") and not names.owns_netns("db41943045-3")


def test_slots_get_distinct_addresses_in_a_21() -> None:
    subnets = Subnets(ipaddress.IPv4Network("10.200.0.0/16"))
    assert str(subnets.block(4)) == "10.200.32.0/21"
    assert str(subnets.cycles()) == "10.200.248.0/24"
    offsets = {Slot(i, f"n{i}", str(i)).host_offset for i in range(1020)} | {Slot(-1, "w", "w").host_offset}
    assert len(offsets) == 1021 and max(offsets) < 2046 and min(offsets) == 2
