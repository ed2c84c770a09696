"""The soak's verdict and report on made-up samples (no root, no diycd):

    PYTHONPATH=bindings/python:bench /usr/bin/python3 -m pytest bench/tests -q
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from diyc_bench.soak import SoakPlan, SoakResult, drifting_samples, verdict
from diyc_bench.soak_report import render_soak_markdown, soak_json, write_soak_outputs
from diyc_bench.soak_sample import Sample

PLAN = SoakPlan(cycles=100, warm_up=5, every=25, subnet="10.250.0.0/24", anchor_subnet="10.250.1.0/24",
                image="busybox", netns="x-ns")
IDLE = Sample(cycles=0, elapsed_s=1.0, links=1, netns=1, mounts=0, nft_rules=5, cgroups=0, fds=16,
              route_sockets=3, malloc_arenas=2, threads=15, children=0, monitors=0, state_files=290, rss_kib=24000,
              host_links=5, host_netns=1, host_mounts=22, host_overlay_mounts=0, host_diyc_cgroups=0)
BUSY = dataclasses.replace(IDLE, cycles=1, links=4, mounts=1, nft_rules=10, cgroups=4, fds=17, monitors=1,
                           state_files=306)


def _result(*changes: dict[str, int], busy: Sample | None = BUSY) -> SoakResult:
    """A soak whose samples after the baseline are IDLE with the given changes, at 25, 50, 75, 100 cycles."""
    samples = [IDLE] + [dataclasses.replace(IDLE, cycles=25 * (i + 1), elapsed_s=10.0 * (i + 1), **change)
                        for i, change in enumerate(changes)]
    return SoakResult(PLAN, baseline=IDLE, busy=busy, samples=samples, cycle_s=[0.3] * 100)


def test_a_clean_soak_passes() -> None:
    result = _result({}, {"rss_kib": 25000}, {"route_sockets": 4}, {"rss_kib": 25500})
    assert verdict(result) == []
    assert drifting_samples(result) == []


def test_a_count_above_its_baseline_at_the_end_fails() -> None:
    problems = verdict(_result({}, {}, {}, {"links": 2, "fds": 17}))
    assert "links grew from 1 to 2 over 100 cycles" in problems
    assert "fds grew from 16 to 17 over 100 cycles" in problems


def test_a_count_back_at_its_baseline_by_the_end_is_only_a_note() -> None:
    result = _result({"cgroups": 4}, {}, {}, {})
    assert verdict(result) == []
    assert drifting_samples(result) == ["after 25 cycles: cgroups 0->4"]


def test_rss_climbing_over_the_second_half_fails() -> None:
    # First-half peak (0..50 cycles) 25000 KiB; the bound is max(2048, 5% of 25000) = 2048.
    assert verdict(_result({}, {"rss_kib": 25000}, {}, {"rss_kib": 27048})) == []
    problems = verdict(_result({}, {"rss_kib": 25000}, {}, {"rss_kib": 27049}))
    assert len(problems) == 1 and problems[0].startswith("RSS still climbing")


def test_rss_peaks_not_end_points_decide() -> None:
    # A new high in the second half fails even if the last sample is low again...
    assert verdict(_result({}, {"rss_kib": 25000}, {"rss_kib": 30000}, {"rss_kib": 24000}))
    # ...and a transient high in the first half sets the level the second must stay under.
    assert verdict(_result({"rss_kib": 29000}, {}, {"rss_kib": 28000}, {})) == []
    # The bound is 5 % of the first half's peak once that exceeds 2 MiB.
    assert verdict(_result({"rss_kib": 100000}, {}, {}, {"rss_kib": 105000})) == []
    assert verdict(_result({"rss_kib": 100000}, {}, {}, {"rss_kib": 105001}))


def test_a_sampler_that_misses_a_running_container_fails() -> None:
    problems = verdict(_result({}, {}, {}, {}, busy=dataclasses.replace(BUSY, cgroups=0)))
    assert len(problems) == 1 and "did not see a running cycle's cgroups" in problems[0]
    assert verdict(_result({}, busy=None)) == ["no sample was taken while a container ran"]


def test_more_route_sockets_than_threads_fails() -> None:
    problems = verdict(_result({}, {"route_sockets": 16}, {}, {}))
    assert problems == ["16 route-netlink sockets for 15 threads after 50 cycles: more than one per thread"]


def test_more_malloc_arenas_than_diycd_allows_fails() -> None:
    problems = verdict(_result({}, {}, {"malloc_arenas": 3}, {}))
    assert problems == ["3 malloc arenas in diycd, above its limit of 2: RSS grows with every arena"]


def test_an_error_or_no_samples_fails() -> None:
    stopped = SoakResult(PLAN, baseline=IDLE, samples=[IDLE], error="DiycError: boom")
    assert verdict(stopped) == ["soak stopped by an error: DiycError: boom", "no samples after the baseline"]


def test_outputs_hold_every_sample(tmp_path: Path) -> None:
    result = _result({}, {}, {}, {"links": 2})
    problems = verdict(result)
    write_soak_outputs(result, problems, {"command": "bench/run.sh --soak 100"}, tmp_path)
    data = json.loads((tmp_path / "soak.json").read_text())
    assert data["ok"] is False and data["problems"] == problems
    assert [s["cycles"] for s in data["samples"]] == [0, 25, 50, 75, 100]
    assert data["cycle_time"]["median_ms"] == 300.0
    markdown = (tmp_path / "soak.md").read_text()
    assert "**FAIL**" in markdown and "| links | 1 | 4 | 2 | 1..2 | GREW |" in markdown
    assert (tmp_path / "soak.png").stat().st_size > 0
    assert "**PASS**" in render_soak_markdown(_result({}), [], {})
    assert soak_json(_result({}), [], {})["ok"] is True
