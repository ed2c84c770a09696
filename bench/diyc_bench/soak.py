"""The soak: many create -> attach -> run -> stop -> remove cycles, and whether anything grew.

One cycle, against one diycd, with names new in every cycle:

1. CreateNetwork (its own bridge and a fixed /24, NAT on: rules in the table);
2. AttachContainer of a namespace the soak keeps for the whole run;
3. RunContainer of busybox attached to that network, a shell that waits on
   ``sleep`` and exits 0 on SIGTERM; its log is followed until the shell
   says it is ready;
4. StopContainer (SIGTERM; it must exit 0, not be killed);
5. RemoveContainer;
6. DetachContainer of the namespace and DeleteNetwork.

A long-lived *anchor* network exists for the whole soak, as on a real node,
so diycd's nftables table stays and its rule count is a real measure.

After ``warm_up`` cycles (first connections, lazily made threads, the
allocator's first arenas), a baseline sample is taken once diycd has gone
quiet, then one every ``every`` cycles. Each owned count must return to the
baseline exactly; async work (the veth reaper's batches, namespace and
cgroup teardown, a monitor's exit) gets a bounded wait before a sample is
taken as it is. RSS must reach a plateau: see :func:`verdict`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from diyc.client import Client

from .soak_sample import DEFAULT_MALLOC_ARENAS, Sample, SoakTarget, malloc_arena_limit, owned_differences, take_sample

__all__ = ["RSS_PLATEAU_FRACTION", "RSS_PLATEAU_MIN_KIB", "SoakPlan", "SoakResult", "rss_halves", "run_soak", "verdict"]

#: RSS's peak over the second half of the soak may exceed its peak over the
#: first half by at most this much...
RSS_PLATEAU_MIN_KIB = 2048
#: ...or this fraction of the first half's peak, whichever is larger.
RSS_PLATEAU_FRACTION = 0.05
#: A shell that exits 0 on SIGTERM, so a stop is a clean exit, not a kill
#: after the grace period (PID 1 of a namespace ignores signals it has no
#: handler for). It says when its trap is set: RunContainer returns once the
#: shell runs, which on a busy host can be before it has read its script.
SOAK_COMMAND = ["/bin/sh", "-c", "trap 'exit 0' TERM; echo ready; sleep 3600 & wait"]
_READY = b"ready"
STOP_GRACE_S = 5
#: Owned counts a running cycle (network, attachment, container) raises: a
#: sample taken then must show each above the baseline, or the sampler is blind.
SEEN_WHILE_RUNNING = ("links", "mounts", "nft_rules", "cgroups", "monitors", "state_files")
_QUIET_PROBES = 3  # identical owned counts in a row make "quiet"
_QUIET_INTERVAL_S = 0.1


@dataclass(frozen=True)
class SoakPlan:
    cycles: int
    warm_up: int
    every: int  # sample every this many cycles
    subnet: str  # the /24 each cycle's network uses (one at a time)
    anchor_subnet: str
    image: str
    netns: str  # the namespace each cycle attaches
    settle_s: float = 3.0  # bounded wait for async teardown, per sample
    final_settle_s: float = 10.0


@dataclass
class SoakResult:
    plan: SoakPlan
    baseline: Sample | None = None
    busy: Sample | None = None  # taken while the first measured cycle's container runs
    samples: list[Sample] = field(default_factory=list)
    settle_waits_s: list[float] = field(default_factory=list)
    cycle_s: list[float] = field(default_factory=list)
    error: str | None = None
    arena_limit: int = DEFAULT_MALLOC_ARENAS  # diycd's malloc arena limit

    @property
    def final(self) -> Sample | None:
        return self.samples[-1] if self.samples else None


def _names(target: SoakTarget, tag: str) -> tuple[str, str, str]:
    """(network, bridge, container) names of one cycle; the bridge fits in 15 bytes."""
    bridge = f"{target.prefix}s{tag}"
    if len(bridge.encode()) > 15:
        raise ValueError(f"bridge name {bridge!r} is longer than 15 bytes: use a shorter prefix")
    return f"{target.prefix}-n{tag}", bridge, f"{target.prefix}-c{tag}"


def soak_cycle(client: Client, target: SoakTarget, plan: SoakPlan, tag: str,
               while_running: Callable[[], None] | None = None) -> None:
    network, bridge, container = _names(target, tag)
    client.create_network(network, plan.subnet, bridge=bridge, nat=True)
    try:
        client.attach(network, netns=plan.netns)
        client.run_container(plan.image, SOAK_COMMAND, name=container, networks=[network])
        try:
            _wait_ready(client, container)
            if while_running is not None:
                while_running()
            client.stop_container(container, timeout_seconds=STOP_GRACE_S)
            ended = client.wait_container(container, timeout=30)
            if ended.exit_code != 0 or ended.signal != 0:
                raise AssertionError(f"container {container} did not exit cleanly on SIGTERM: "
                                     f"exit {ended.exit_code}, signal {ended.signal}")
        finally:
            client.remove_container(container, force=True)
        client.detach(network, netns=plan.netns)
    finally:
        client.delete_network(network, force=True)


def _wait_ready(client: Client, container: str) -> None:
    """Follows the container's log until the shell says its SIGTERM trap is set."""
    seen = b""
    with client.container_logs(container, follow=True, timeout=30) as log:
        for chunk in log:
            seen += chunk.data
            if _READY in seen:
                return
    raise AssertionError(f"container {container} ended before it was ready: {seen!r}")


def anchor_network(client: Client, target: SoakTarget, plan: SoakPlan) -> str:
    network, bridge, _ = _names(target, "a")
    client.create_network(network, plan.anchor_subnet, bridge=bridge, nat=True)
    return network


def _quiet_sample(target: SoakTarget, cycles: int, started: float, timeout: float) -> tuple[Sample, float]:
    """A sample once the owned counts hold still for a few probes (or at the timeout)."""
    began = time.monotonic()
    last = take_sample(target, cycles, time.monotonic() - started)
    same = 1
    while same < _QUIET_PROBES and time.monotonic() - began < timeout:
        time.sleep(_QUIET_INTERVAL_S)
        now = take_sample(target, cycles, time.monotonic() - started)
        same = same + 1 if not owned_differences(now, last) else 1
        last = now
    return last, time.monotonic() - began


def _settled_sample(target: SoakTarget, baseline: Sample, cycles: int, started: float,
                    timeout: float) -> tuple[Sample, float]:
    """A sample once the owned counts equal the baseline (or at the timeout)."""
    began = time.monotonic()
    while True:
        sample = take_sample(target, cycles, time.monotonic() - started)
        if not owned_differences(sample, baseline) or time.monotonic() - began >= timeout:
            return sample, time.monotonic() - began
        time.sleep(0.05)


def run_soak(client: Client, target: SoakTarget, plan: SoakPlan,
             on_progress: Callable[[int], None] | None = None) -> SoakResult:
    """Warm-up, baseline, measured cycles with samples; the result holds what went wrong.

    The caller owns the image, the namespace and diycd; the anchor network
    is created and deleted here.
    """
    result = SoakResult(plan, arena_limit=malloc_arena_limit(target.pid))
    started = time.monotonic()
    anchor = anchor_network(client, target, plan)
    try:
        for k in range(plan.warm_up):
            soak_cycle(client, target, plan, f"w{k}")
        result.baseline, waited = _quiet_sample(target, 0, started, plan.settle_s)
        result.samples.append(result.baseline)
        result.settle_waits_s.append(round(waited, 3))
        sampling_s = 0.0

        def busy() -> None:
            nonlocal sampling_s
            began = time.perf_counter()
            result.busy = take_sample(target, 1, time.monotonic() - started)
            sampling_s = time.perf_counter() - began

        for k in range(1, plan.cycles + 1):
            began = time.perf_counter()
            soak_cycle(client, target, plan, str(k), busy if k == 1 else None)
            result.cycle_s.append(time.perf_counter() - began - (sampling_s if k == 1 else 0.0))
            if on_progress is not None:
                on_progress(k)
            if k % plan.every == 0 or k == plan.cycles:
                timeout = plan.final_settle_s if k == plan.cycles else plan.settle_s
                sample, waited = _settled_sample(target, result.baseline, k, started, timeout)
                result.samples.append(sample)
                result.settle_waits_s.append(round(waited, 3))
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        client.delete_network(anchor, force=True)
    return result


def rss_bound_kib(first_half_peak_kib: int) -> int:
    return max(RSS_PLATEAU_MIN_KIB, int(first_half_peak_kib * RSS_PLATEAU_FRACTION))


def verdict(result: SoakResult) -> list[str]:
    """Everything wrong with a soak: errors, owned counts off their baseline, RSS still climbing.

    Owned counts: the final sample must equal the baseline in every owned
    field, and a sample taken while a container ran must show every count
    of SEEN_WHILE_RUNNING above it. Route-netlink sockets: at most one per thread in every sample; malloc
    arenas: at most diycd's limit. RSS: the
    second half's peak may exceed the first half's by at most
    :func:`rss_bound_kib` (see :func:`rss_halves`).
    """
    problems: list[str] = []
    if result.error:
        problems.append(f"soak stopped by an error: {result.error}")
    if result.baseline is None or result.final is None or result.final is result.baseline:
        return problems + ["no samples after the baseline"]
    base, final = result.baseline, result.final
    for name, (before, after) in owned_differences(final, base).items():
        problems.append(f"{name} grew from {before} to {after} over {final.cycles} cycles"
                        if after > before else f"{name} fell from {before} to {after} over {final.cycles} cycles")
    if result.busy is None:
        problems.append("no sample was taken while a container ran")
    else:
        blind = [name for name in SEEN_WHILE_RUNNING if getattr(result.busy, name) <= getattr(base, name)]
        if blind:
            problems.append("the sampler did not see a running cycle's " + ", ".join(blind) +
                            f" ({result.busy} against baseline {base}): it would miss their leaks")
    for sample in result.samples:
        if sample.route_sockets > sample.threads:
            problems.append(f"{sample.route_sockets} route-netlink sockets for {sample.threads} threads after "
                            f"{sample.cycles} cycles: more than one per thread")
    peak_arenas = max(s.malloc_arenas for s in result.samples)
    if peak_arenas > result.arena_limit:
        problems.append(f"{peak_arenas} malloc arenas in diycd, above its limit of {result.arena_limit}: "
                        "RSS grows with every arena")
    first, second = rss_halves(result)
    bound = rss_bound_kib(first)
    if second - first > bound:
        problems.append(f"RSS still climbing: peak {first} KiB over the first {final.cycles // 2} cycles, "
                        f"{second} KiB over the rest (+{second - first} KiB, bound {bound} KiB)")
    return problems


def rss_halves(result: SoakResult) -> tuple[int, int]:
    """Peak RSS over the samples of the first half of the cycles (baseline included) and of the second.

    Peaks, not end points: RSS moves by a few MiB as transient buffers come
    and go, and a single sample may catch it high or low; a plateau is a
    second half that sets no new high.
    """
    assert result.final is not None
    middle = result.final.cycles / 2
    first = max(s.rss_kib for s in result.samples if s.cycles <= middle)
    second = max(s.rss_kib for s in result.samples if s.cycles > middle)
    return first, second


def drifting_samples(result: SoakResult) -> list[str]:
    """Intermediate samples whose owned counts were off the baseline (after their settle wait)."""
    if result.baseline is None:
        return []
    notes = []
    for sample in result.samples[1:]:
        diff = owned_differences(sample, result.baseline)
        if diff:
            notes.append(f"after {sample.cycles} cycles: " +
                         ", ".join(f"{k} {a}->{b}" for k, (a, b) in diff.items()))
    return notes

