"""Runs one (method, N) scenario: warm up, time every attach, check, time every detach.

Timing is per operation, taken around each call on the caller's side (for
the floor, the coprocess's own figure). Garbage collection is paused while
timing, so a collection of the bench's own objects never lands on a method.
After the detaches the scenario checks that nothing of the method is left.
"""

from __future__ import annotations

import gc
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import diyc

from .host import Names, Slot, foreign_links_in, host_links
from .methods import AttachMethod
from .progress import Progress

__all__ = ["Check", "Phase", "ScenarioOutcome", "check_reachability", "measure", "run_scenario"]

_PING_COUNT = 2
_PING_TIMEOUT = 1.0


@dataclass
class Check:
    """One correctness check; any failure makes the run exit non-zero."""

    name: str
    ok: bool
    detail: str


@dataclass
class Phase:
    """The timings of one operation over all slots of a scenario.

    ``wall_ns`` runs from the first call to the end of ``settle_ns``, the
    wait for deferred kernel work after the last call returned.
    """

    op: str
    samples_ns: list[int]
    wall_ns: int
    settle_ns: int = 0


@dataclass
class ScenarioOutcome:
    method_key: str
    label: str
    n: int
    clients: int
    phases: list[Phase] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@contextmanager
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _time_one(method: AttachMethod, op: str, slot: Slot, worker: int) -> tuple[int, str | None]:
    """Runs one attach or detach; returns (nanoseconds, address or None)."""
    start = time.perf_counter_ns()
    if op == "attach":
        attached = method.attach(slot, worker)
        elapsed = time.perf_counter_ns() - start
        return (attached.timed_ns if attached.timed_ns is not None else elapsed), attached.ip
    own = method.detach(slot, worker)
    elapsed = time.perf_counter_ns() - start
    return (own if own is not None else elapsed), None


def _run_workers(work: Callable[[int], None], clients: int, stop: threading.Event) -> int:
    """Runs work(0..clients-1), in threads when there are several; returns the start time.

    Threads wait at a common start line, so the clock starts when all of
    them can run; the caller's thread stays interruptible by Ctrl-C.
    """
    if clients == 1:
        start = time.perf_counter_ns()
        work(0)
        return start
    start_line = threading.Barrier(clients + 1)

    def gated(worker: int) -> None:
        start_line.wait()
        work(worker)

    threads = [threading.Thread(target=gated, args=(w,), daemon=True) for w in range(clients)]
    for thread in threads:
        thread.start()
    start = time.perf_counter_ns()
    start_line.wait()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    except BaseException:
        stop.set()
        for thread in threads:
            thread.join()
        raise
    return start


def measure(method: AttachMethod, op: str, slots: Sequence[Slot], label: str) -> tuple[Phase, dict[str, str]]:
    """Times `op` on every slot, split over the method's clients (threads).

    Client w takes slots w, w+clients, ...; all start together. After a
    detach phase the method settles (deferred kernel work), inside the wall
    time. Returns the phase and, for attach, each namespace's address.
    """
    clients = max(1, min(method.clients, len(slots)))
    parts = [list(slots[w::clients]) for w in range(clients)]
    samples: list[list[int]] = [[] for _ in parts]
    addresses: dict[str, str] = {}
    progress = Progress(label, len(slots))
    failures: list[BaseException] = []
    stop = threading.Event()

    def work(worker: int) -> None:
        for slot in parts[worker]:
            if stop.is_set():
                return
            try:
                elapsed, ip = _time_one(method, op, slot, worker)
            except BaseException as exc:
                failures.append(exc)
                stop.set()
                return
            samples[worker].append(elapsed)
            if ip is not None:
                addresses[slot.netns] = ip
            progress.advance()

    with no_gc():
        start = _run_workers(work, clients, stop)
        if failures:
            raise failures[0]
        calls_done = time.perf_counter_ns()
        if op == "detach":
            method.settle()
        end = time.perf_counter_ns()
    wall, settle = end - start, end - calls_done
    progress.finish(f"{wall / 1e9:.2f}s" + (f", settled {settle / 1e6:.1f} ms after the last call" if settle > 1e6 else ""))
    return Phase(op, [s for part in samples for s in part], wall, settle), addresses


def _answers(source: str, target: str) -> tuple[bool, str]:
    """Whether source reaches target; the detail describes any loss.

    Every echo of the first try answered is a pass. Otherwise a second try
    with longer timeouts passes if any echo is answered: on a loaded host a
    reply can miss its timeout (right after 1000 ports joined a bridge, their
    IPv6 autoconfiguration floods it), while a pair that cannot talk at all
    answers nothing. Lossy pairs are listed in the check's detail.
    """
    first = diyc.ping(source, target, count=_PING_COUNT, timeout=_PING_TIMEOUT)
    if first.ok:
        return True, ""
    second = diyc.ping(source, target, count=_PING_COUNT + 1, timeout=2 * _PING_TIMEOUT)
    detail = f"{first.received}/{first.sent} then {second.received}/{second.sent}"
    return second.received > 0, detail


def check_reachability(addresses: dict[str, str], rng: random.Random, pairs: int, name: str) -> Check:
    """Random pairs of attached namespaces ping each other; every pair must answer."""
    namespaces = sorted(addresses)
    if len(namespaces) < 2:
        return Check(name, False, f"only {len(namespaces)} namespace(s) attached")
    failed: list[str] = []
    retried: list[str] = []
    for _ in range(pairs):
        source, target = rng.sample(namespaces, 2)
        ok, detail = _answers(source, addresses[target])
        if detail:
            (retried if ok else failed).append(f"{source} -> {addresses[target]} ({detail})")
    text = f"{pairs - len(failed)}/{pairs} pairs answered"
    if retried:
        text += f"; lossy, answered on a second try: {', '.join(retried[:5])}"
    if failed:
        text += f"; failed: {', '.join(failed[:5])}"
    return Check(name, not failed, text)


def check_clean(method: AttachMethod, names: Names, slots: Sequence[Slot], name: str) -> Check:
    """Nothing of the method left: no prefixed host link, namespaces back to lo only."""
    problems: list[str] = []
    links = host_links(names)
    if links:
        problems.append(f"host links left: {links[:5]}{' ...' if len(links) > 5 else ''}")
    dirty = [f"{slot.netns}: {extra}" for slot in slots if (extra := foreign_links_in(slot.netns))]
    if dirty:
        problems.append(f"{len(dirty)} namespaces still have links: {dirty[:3]}")
    problems.extend(method.leftovers())
    return Check(name, not problems, "; ".join(problems) or "nothing left")


def run_scenario(method: AttachMethod, n: int, slots: Sequence[Slot], warm: Slot, names: Names, *,
                 rng: random.Random, pairs: int,
                 after_attach: Callable[[AttachMethod, int], list[Check]] | None = None) -> ScenarioOutcome:
    """Prepare, warm up once, attach all, check, detach all, close, check clean.

    An error is recorded and the method's leftovers removed, so the next
    scenario still runs; Ctrl-C propagates (the session's cleanup sweeps).
    """
    tag = f"{method.key} N={n}"
    outcome = ScenarioOutcome(method.key, method.label, n, method.clients)
    try:
        method.prepare()
        method.attach(warm, 0)
        method.detach(warm, 0)
        attach, addresses = measure(method, "attach", slots, f"attach {tag}")
        outcome.phases.append(attach)
        if after_attach is not None:
            outcome.checks.extend(after_attach(method, n))
        outcome.checks.append(check_reachability(addresses, rng, pairs, f"ping {tag}"))
        detach, _ = measure(method, "detach", slots, f"detach {tag}")
        outcome.phases.append(detach)
    except Exception as exc:
        outcome.errors.append(f"{tag}: {type(exc).__name__}: {exc}")
        outcome.errors.extend(f"{tag}: recover: {e}" for e in method.recover([warm, *slots]))
    try:
        method.close()  # also after a failed prepare: close() removes what exists
    except Exception as exc:
        outcome.errors.append(f"{tag}: close: {type(exc).__name__}: {exc}")
    outcome.checks.append(check_clean(method, names, [warm, *slots], f"clean after {tag}"))
    return outcome
