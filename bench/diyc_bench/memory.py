"""diycd's resident memory: idle, holding many attachments, and across cycles.

A node agent runs for months; memory that grows with every network or
attachment ever made (rather than with what exists now) is a leak. The
cycles create and delete a distinct network each time, so state keyed by
name that is never erased shows up as growth.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field

from diyc.client import Client
from diyc.daemon import DiycdProcess

from .host import BenchError, Names
from .progress import Progress

__all__ = ["CycleResult", "rss_kib", "run_cycles"]

_WARM_UP_CYCLES = 10
_CHECKPOINTS = 20


def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB, from /proc/PID/status."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS in /proc/{pid}/status")


@dataclass
class CycleResult:
    """RSS before and after N create/attach/detach/delete cycles (after a warm-up)."""

    cycles: int
    rss_before_kib: int
    rss_after_kib: int
    checkpoints: list[tuple[int, int]] = field(default_factory=list)  # (cycles done, RSS KiB)
    cycle_ns: list[int] = field(default_factory=list)

    @property
    def growth_kib(self) -> int:
        return self.rss_after_kib - self.rss_before_kib


def _cycle(client: Client, network: str, subnet: str, bridge: str, netns: str) -> None:
    client.create_network(network, subnet, bridge=bridge, nat=False)
    try:
        client.attach(network, netns=netns)
        client.detach(network, netns=netns)
    finally:
        client.delete_network(network, force=True)


def run_cycles(diycd: DiycdProcess, names: Names, subnet: ipaddress.IPv4Network, netns: str,
               cycles: int) -> CycleResult:
    """Warm-up cycles, then `cycles` more with RSS sampled along the way.

    One client serves every cycle, as one long-lived orchestrator would.
    """
    pid = diycd.pid
    if pid is None or not diycd.running:
        raise BenchError("diycd is not running")
    bridge = names.link("m")
    with diycd.client() as client:
        for k in range(_WARM_UP_CYCLES):
            _cycle(client, f"{names.prefix}w{k}", str(subnet), bridge, netns)
        result = CycleResult(cycles=cycles, rss_before_kib=rss_kib(pid), rss_after_kib=0)
        every = max(1, cycles // _CHECKPOINTS)
        progress = Progress("rss cycles create/attach/detach/delete", cycles)
        for k in range(cycles):
            start = time.perf_counter_ns()
            _cycle(client, f"{names.prefix}c{k}", str(subnet), bridge, netns)
            result.cycle_ns.append(time.perf_counter_ns() - start)
            progress.advance()
            if (k + 1) % every == 0:
                result.checkpoints.append((k + 1, rss_kib(pid)))
        progress.finish()
    result.rss_after_kib = rss_kib(pid)
    return result
