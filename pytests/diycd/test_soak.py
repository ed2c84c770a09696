"""A short soak: create -> attach -> run -> stop -> remove cycles leave nothing growing.

The same cycles and checks as ``sudo bench/run.sh --soak 1000``
(``diyc_bench.soak``), shortened to fit the suite (about 15 s): after a
warm-up, the links, namespaces, mounts, nftables rules, cgroups, monitors and
state files of the soak, and diycd's fds, threads and children must be back
to their baseline exactly; diycd keeps at most one route-netlink socket per
thread and no more malloc arenas than its cap (without the cap it has 16 on
two cores within these 50 cycles); its RSS must not climb over the second
half.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import diyc
from diyc.client import Client
from diyc.daemon import DiycdProcess
from diyc_bench.soak import SoakPlan, drifting_samples, run_soak, verdict
from diyc_bench.soak_sample import SoakTarget
from diycd_support import RunNames

CYCLES = 50
WARM_UP = 5
EVERY = 10


@pytest.mark.slow
def test_soak_cycles_leave_nothing_growing(diycd: DiycdProcess, client: Client, names: RunNames, busybox: str,
                                           make_netns: Callable[..., diyc.NetNS], nft_table: str) -> None:
    prefix = f"{names.prefix}k"  # apart from the run's other networks and namespaces
    netns = make_netns(f"{prefix}-ns")
    assert diycd.pid is not None
    target = SoakTarget(pid=diycd.pid, state_dir=Path(diycd.state_dir), nft_table=nft_table, prefix=prefix)
    plan = SoakPlan(cycles=CYCLES, warm_up=WARM_UP, every=EVERY, subnet=str(names.subnet24()),
                    anchor_subnet=str(names.subnet24()), image=busybox, netns=netns.name)

    result = run_soak(client, target, plan)

    problems = verdict(result)
    table = "\n".join(f"  {s.cycles:>4} cycles: links {s.links} netns {s.netns} mounts {s.mounts} "
                      f"rules {s.nft_rules} cgroups {s.cgroups} fds {s.fds} threads {s.threads} "
                      f"children {s.children} monitors {s.monitors} state {s.state_files} route sockets "
                      f"{s.route_sockets} arenas {s.malloc_arenas} rss {s.rss_kib} KiB"
                      for s in result.samples)
    assert not problems, "\n".join(problems + drifting_samples(result)) + "\n" + table
    assert len(result.samples) == CYCLES // EVERY + 1
    base = result.baseline
    assert base is not None
    # While idle the soak holds its anchor network (a bridge, rules) and namespace, nothing more.
    assert (base.links, base.netns, base.mounts, base.cgroups, base.monitors) == (1, 1, 0, 0, 0), table
    assert base.nft_rules > 0, "the anchor network's rules are missing: the rule count would measure nothing"
    assert not result.error
