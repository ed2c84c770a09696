"""Containers end to end: real namespaces, cgroups, overlay roots and pings.

Every container runs the busybox image of the ``busybox`` fixture under a
run-prefixed name, through :class:`ContainerRunner`, which removes what a
test started even when the test fails half-way.
"""

from __future__ import annotations

import glob
import io
import ipaddress
import json
import os
import select
import signal
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from diyc.client import Client
from diyc.daemon import DiycdProcess
from diyc.errors import (
    AlreadyExistsError,
    DiycError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from diyc.images import write_busybox_tar
from diyc.v1 import container_pb2, events_pb2, network_pb2
from diycd_support import PYTHON, RunNames, cli_env, create_network, eventually, host_links, run_cli

pytestmark = pytest.mark.root

Container = container_pb2.Container
# The bounding set Docker gives a container by default: CHOWN DAC_OVERRIDE
# FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT
# MKNOD AUDIT_WRITE SETFCAP.
DOCKER_DEFAULT_CAPS = "00000000a80425fb"
# What a container's /dev holds: devices, mount points and links.
CONTAINER_DEV = {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm",
                 "ptmx", "fd", "stdin", "stdout", "stderr"}
HOST_DEVICES = ("sda", "vda", "xvda", "nvme0n1", "kmsg", "mem", "port")
# Files of /proc about the host that Docker masks (some kernels lack /proc/kcore).
MASKED_FILES = ("/proc/kcore", "/proc/keys", "/proc/timer_list")


# --------------------------------------------------------------------------
# Running containers


@dataclass(frozen=True)
class Outcome:
    """How a container ended and what it wrote."""

    name: str
    exit_code: int
    signal: int
    oom_killed: bool
    stdout: str
    stderr: str
    # (STDOUT or STDERR, text) in the order written, neighbours of one stream merged.
    chunks: tuple[tuple[str, str], ...]


class ContainerRunner:
    """Runs containers under run-prefixed names; ``remove_all()`` removes them."""

    def __init__(self, client: Client, names: RunNames, image: str) -> None:
        self.client = client
        self.names = names
        self.image = image
        self.started: list[str] = []

    def name(self) -> str:
        return self.names.network("c")

    def run(self, command: Sequence[str], *, name: str | None = None, image: str | None = None,
            client: Client | None = None, **kwargs: Any) -> Container:
        """RunContainer; the name is registered for removal before the call."""
        name = name or self.name()
        self.started.append(name)
        return (client or self.client).run_container(image or self.image, command, name=name, **kwargs)

    def logs(self, name: str, client: Client | None = None) -> tuple[tuple[str, str], ...]:
        merged: list[tuple[str, bytes]] = []
        for chunk in (client or self.client).container_logs(name, timeout=30):
            stream = container_pb2.LogChunk.Stream.Name(chunk.stream)
            if merged and merged[-1][0] == stream:
                merged[-1] = (stream, merged[-1][1] + chunk.data)
            else:
                merged.append((stream, chunk.data))
        return tuple((stream, data.decode(errors="replace")) for stream, data in merged)

    def finish(self, name: str, timeout: float = 60, *, remove: bool = True,
               client: Client | None = None) -> Outcome:
        """Waits for the container, reads its whole log and (by default) removes it."""
        client = client or self.client
        result = client.wait_container(name, timeout=timeout)
        chunks = self.logs(name, client)
        if remove:
            client.remove_container(name)
        return Outcome(
            name=name, exit_code=result.exit_code, signal=result.signal, oom_killed=result.oom_killed,
            stdout="".join(text for stream, text in chunks if stream == "STDOUT"),
            stderr="".join(text for stream, text in chunks if stream == "STDERR"),
            chunks=chunks,
        )

    def output(self, command: Sequence[str], *, timeout: float = 60, **kwargs: Any) -> Outcome:
        """Runs a command to its end and removes the container."""
        return self.finish(self.run(command, **kwargs).name, timeout)

    def sh(self, script: str, **kwargs: Any) -> Outcome:
        return self.output(["sh", "-c", script], **kwargs)

    def remove_all(self) -> None:
        for name in self.started:
            try:
                self.client.remove_container(name, force=True)
            except DiycError:
                pass  # gone already, or diycd is down: its teardown removes what is left


@pytest.fixture
def containers(client: Client, names: RunNames, busybox: str) -> Iterator[ContainerRunner]:
    runner = ContainerRunner(client, names, busybox)
    yield runner
    runner.remove_all()


# --------------------------------------------------------------------------
# Host inspection


def address(attachment: network_pb2.Attachment) -> str:
    return str(ipaddress.ip_interface(attachment.ip).ip)


def host_address(network: network_pb2.Network, number: int) -> str:
    return str(ipaddress.ip_network(network.subnet).network_address + number)


def container_dir(diycd: DiycdProcess, name: str) -> Path:
    return Path(diycd.state_dir) / "containers" / name


def cgroup_dirs(name: str) -> list[str]:
    """The container's cgroup directories in every hierarchy (v1 controllers, v2)."""
    return sorted(p for p in glob.glob(f"/sys/fs/cgroup/*/diyc/{name}") + glob.glob(f"/sys/fs/cgroup/diyc/{name}")
                  if os.path.isdir(p))


def mountinfo_mentioning(text: str) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mountinfo:
        return [line.strip() for line in mountinfo if text in line]


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def wait_until(condition: Any, timeout: float, what: str) -> None:
    __tracebackhide__ = True
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g}s")
        time.sleep(0.05)


def traces(diycd: DiycdProcess, container: Container) -> dict[str, Any]:
    """What a container has on the host, by kind; empty lists once it is gone."""
    directory = container_dir(diycd, container.name)
    links = host_links()
    return {
        "cgroups": cgroup_dirs(container.name),
        "mounts": mountinfo_mentioning(str(directory)),
        "host veths": [a.host_ifname for a in container.attachments if a.host_ifname in links],
        "directory": [str(directory)] if directory.exists() else [],
        "processes": [container.pid] if container.pid and process_alive(container.pid) else [],
    }


def assert_no_traces(diycd: DiycdProcess, container: Container) -> None:
    """Nothing of the container is left, once diycd's batched veth deletion has run."""
    __tracebackhide__ = True
    eventually(lambda: not any(traces(diycd, container).values()), timeout=3.0)
    left = {kind: found for kind, found in traces(diycd, container).items() if found}
    assert not left, f"container {container.name} left behind {left}"


def sections(text: str) -> dict[str, str]:
    """Splits the output of a script that prints "@@NAME" before each part."""
    found: dict[str, str] = {}
    current = None
    for line in text.splitlines(keepends=True):
        if line.startswith("@@"):
            current = line[2:].strip()
            found[current] = ""
        elif current is not None:
            found[current] += line
    return found


def mount_options(mounts: str, mount_point: str) -> list[str]:
    """Options of the last mount on mount_point in /proc/mounts text."""
    options = [line.split()[3].split(",") for line in mounts.splitlines() if line.split()[1:2] == [mount_point]]
    assert options, f"nothing is mounted on {mount_point}:\n{mounts}"
    return options[-1]


# --------------------------------------------------------------------------
# Networks


def test_containers_reach_their_network_and_nothing_else(
        client: Client, containers: ContainerRunner, names: RunNames) -> None:
    web, other = create_network(client, names), create_network(client, names)
    first, second, stranger = host_address(web, 10), host_address(web, 11), host_address(other, 10)
    # Each pinger retries its peer for a while: the peer starts a moment later.
    reach = ('reach() { for i in 1 2 3 4 5 6 7 8 9 10; do ping -c 1 -W 1 "$1" >/dev/null 2>&1 '
             '&& { echo "$2 reached"; return; }; done; echo "$2 unreachable"; }; '
             'miss() { ping -c 2 -W 1 "$1" >/dev/null 2>&1 && echo "$2 reached" || echo "$2 unreachable"; }; ')
    a = containers.run(["sh", "-c", reach + f"reach {second} peer; reach {web.gateway} gateway; miss {stranger} other"],
                       networks=[f"{web.name}:{first}"])
    b = containers.run(["sh", "-c", reach + f"reach {first} peer; reach {web.gateway} gateway; miss {stranger} other"],
                       networks=[(web.name, second)])
    c = containers.run(["sh", "-c", reach + f"reach {other.gateway} gateway; miss {first} other; miss {second} other"],
                       networks=[f"{other.name}:{stranger}"])
    assert [address(x.attachments[0]) for x in (a, b, c)] == [first, second, stranger]
    assert [x.attachments[0].ifname for x in (a, b, c)] == ["eth0"] * 3

    outcomes = [containers.finish(x.name) for x in (a, b, c)]
    assert [o.stdout.splitlines() for o in outcomes] == [
        ["peer reached", "gateway reached", "other unreachable"],
        ["peer reached", "gateway reached", "other unreachable"],
        ["gateway reached", "other unreachable", "other unreachable"],
    ], outcomes
    assert all(o.exit_code == 0 for o in outcomes), outcomes
    assert client.list_attachments(web.name) == [] and client.list_attachments(other.name) == []


def test_a_running_container_joins_a_second_network(
        client: Client, containers: ContainerRunner, names: RunNames) -> None:
    front, back = create_network(client, names), create_network(client, names)
    peer_ip = host_address(back, 20)
    peer = containers.run(["sleep", "300"], networks=[f"{back.name}:{peer_ip}"])
    # Waits for eth1, pings through it, then stays up for the probe below.
    script = ("for i in $(seq 300); do ip -o -4 addr show eth1 2>/dev/null | grep -q inet && break; sleep 0.05; done; "
              f"ip -o -4 addr show eth1; ping -c 2 -W 2 {peer_ip}; echo done; exec sleep 300")
    joiner = containers.run(["sh", "-c", script], networks=[front.name])

    attachment = client.attach(back.name, container=joiner.name, ifname="eth1")
    assert attachment.container == joiner.name and attachment.ifname == "eth1"
    assert {(a.network, a.ifname) for a in client.get_container(joiner.name).attachments} == \
        {(front.name, "eth0"), (back.name, "eth1")}
    wait_until(lambda: "done" in "".join(text for _, text in containers.logs(joiner.name)), 30, "the pings")
    output = "".join(text for _, text in containers.logs(joiner.name))
    assert f"inet {attachment.ip}" in output and "2 packets received" in output, output
    probe = client.probe([peer_ip], container=joiner.name, count=1)
    assert [(r.target, r.received) for r in probe] == [(peer_ip, 1)]

    for container in (joiner, peer):
        client.remove_container(container.name, force=True)
    assert client.list_attachments() == []


# --------------------------------------------------------------------------
# Isolation


_INSIDE = r"""
section() { echo "@@$1"; }
section hostname; hostname; cat /etc/hostname
section processes; ls -d /proc/[0-9]*
section ps; ps -o pid,comm
section dev; ls -A /dev
section host-devices; for d in HOST_DEVICES; do [ -e /dev/$d ] && echo $d; done; true
section devices-work; echo gone >/dev/null && head -c 16 /dev/urandom | wc -c
section sys-write; touch /sys/x 2>/dev/null && echo written || echo refused
section proc-sys-write; (echo 0 >/proc/sys/net/ipv4/ip_forward) 2>/dev/null && echo written || echo refused
section mounts; cat /proc/mounts
section masked; for f in MASKED; do [ -e $f ] && echo "$f $(wc -c <$f)"; done; true
section hosts; cat /etc/hosts
section status; grep -E '^(CapBnd|CapEff|NoNewPrivs)' /proc/self/status
""".replace("HOST_DEVICES", " ".join(HOST_DEVICES)).replace("MASKED", " ".join(MASKED_FILES))


def test_a_container_sees_only_itself(client: Client, containers: ContainerRunner, names: RunNames) -> None:
    network = create_network(client, names)
    name = containers.name()
    container = containers.run(["sh", "-c", _INSIDE], name=name, networks=[network.name])
    outcome = containers.finish(container.name)
    assert outcome.exit_code == 0 and outcome.stderr == "", outcome
    found = sections(outcome.stdout)

    assert found["hostname"].split() == [name, name]
    # The shell (pid 1) and ls: no process of the host is visible.
    processes = found["processes"].split()
    assert "/proc/1" in processes and len(processes) <= 3, processes
    rows = [row.split() for row in found["ps"].splitlines()[1:]]
    assert [row[1] for row in rows] == ["sh", "ps"] and rows[0][0] == "1", found["ps"]
    assert set(found["dev"].split()) == CONTAINER_DEV
    assert found["host-devices"] == ""
    assert found["devices-work"].strip() == "16"
    assert found["sys-write"].strip() == "refused" and "ro" in mount_options(found["mounts"], "/sys")
    assert found["proc-sys-write"].strip() == "refused" and "ro" in mount_options(found["mounts"], "/proc/sys")
    on_host = [path for path in MASKED_FILES if os.path.exists(path)]
    assert on_host and found["masked"].splitlines() == [f"{path} 0" for path in on_host]
    assert f"{address(container.attachments[0])}\t{name}" in found["hosts"].splitlines()
    status = dict(line.split(":\t") for line in found["status"].splitlines())
    assert status == {"CapBnd": DOCKER_DEFAULT_CAPS, "CapEff": DOCKER_DEFAULT_CAPS, "NoNewPrivs": "1"}


def test_the_command_is_pid_1_with_only_stdio_open(containers: ContainerRunner) -> None:
    assert containers.output(["cat", "/proc/1/cmdline"]).stdout == "cat\0/proc/1/cmdline\0"
    assert [row.split() for row in containers.output(["ps", "-o", "pid,comm"]).stdout.splitlines()] == \
        [["PID", "COMMAND"], ["1", "ps"]]
    # ls holds the directory it lists open as descriptor 3.
    assert containers.output(["ls", "/proc/self/fd"]).stdout.split() == ["0", "1", "2", "3"]
    stdin = containers.sh("readlink /proc/self/fd/0; read line; echo read=$?")
    assert stdin.stdout.split() == ["/dev/null", "read=1"], stdin


def test_environment_workdir_and_hostname(containers: ContainerRunner) -> None:
    outcome = containers.sh('echo "$GREETING|$HOME|$PATH"; pwd; hostname',
                            env={"GREETING": "hello world"}, workdir="/srv/app", hostname="box-1")
    assert outcome.stdout.splitlines() == [
        "hello world|/root|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "/srv/app", "box-1"]


# --------------------------------------------------------------------------
# Limits


def test_a_memory_hog_is_oom_killed(client: Client, containers: ContainerRunner) -> None:
    # The shell (pid 1) doubles a string until the cgroup's limit stops it.
    hog = containers.run(["sh", "-c", 'x=a; while :; do x="$x$x"; done'], memory_bytes=16 << 20)
    assert hog.memory_bytes == 16 << 20
    result = client.wait_container(hog.name, timeout=60)
    assert (result.oom_killed, result.signal, result.exit_code) == (True, signal.SIGKILL, 137), result
    shown = client.get_container(hog.name)
    assert (shown.state, shown.oom_killed, shown.signal) == (Container.EXITED, True, 9)
    client.remove_container(hog.name)


def test_a_fork_bomb_stops_at_the_pids_limit(client: Client, containers: ContainerRunner) -> None:
    bomb = containers.run(["sh", "-c", "i=0; while [ $i -lt 50 ]; do sleep 30 & i=$((i+1)); echo $i; done; wait"],
                          pids_limit=20)
    assert bomb.pids_limit == 20
    pids_cgroups = [d for d in cgroup_dirs(bomb.name) if "/pids/" in d or os.path.exists(f"{d}/pids.max")]
    outcome = containers.finish(bomb.name, timeout=60, remove=False)
    started = [int(n) for n in outcome.stdout.split()]
    assert started and max(started) < 20, outcome
    assert "can't fork" in outcome.stderr or "Resource temporarily unavailable" in outcome.stderr, outcome
    assert outcome.exit_code != 0
    # Its first process gone, the kernel ended the rest: nothing of it runs on.
    for directory in pids_cgroups:
        assert Path(directory, "cgroup.procs").read_text() == ""
    client.remove_container(bomb.name)


# --------------------------------------------------------------------------
# Exit codes, signals, stop


def test_exit_codes_and_signals_are_reported(client: Client, containers: ContainerRunner) -> None:
    assert [containers.output(cmd).exit_code for cmd in (["true"], ["false"], ["sh", "-c", "exit 7"])] == [0, 1, 7]
    seven = containers.run(["sh", "-c", "exit 7"])
    client.wait_container(seven.name, timeout=30)
    shown = client.get_container(seven.name)
    assert (shown.state, shown.exit_code, shown.signal, shown.oom_killed, shown.pid) == (Container.EXITED, 7, 0,
                                                                                         False, 0)
    assert shown.finished_at.seconds >= shown.started_at.seconds > 0
    client.remove_container(seven.name)

    # Like any pid 1 of a pid namespace, the command cannot be killed from
    # inside (this is why `sh -c 'kill -9 $$'` exits 0)...
    survivor = containers.sh("kill -9 $$; echo survived")
    assert (survivor.exit_code, survivor.signal, survivor.stdout) == (0, 0, "survived\n")
    # ...but a signal from the host is reported as such.
    killed = containers.run(["sleep", "300"])
    client.stop_container(killed.name, signal=signal.SIGKILL)
    result = client.wait_container(killed.name, timeout=30)
    assert (result.exit_code, result.signal, result.oom_killed) == (137, 9, False)
    client.remove_container(killed.name)

    trapped = containers.run(["sh", "-c", 'trap "exit 42" USR1; echo ready; while :; do sleep 0.1; done'])
    wait_until(lambda: "ready" in "".join(t for _, t in containers.logs(trapped.name)), 10, "the trap being set")
    client.stop_container(trapped.name, signal=signal.SIGUSR1, timeout_seconds=10)
    assert (client.wait_container(trapped.name).exit_code, client.get_container(trapped.name).signal) == (42, 0)
    client.remove_container(trapped.name)


def test_stop_kills_a_command_that_ignores_sigterm(client: Client, containers: ContainerRunner) -> None:
    stubborn = containers.run(["sh", "-c", 'trap "" TERM; echo ready; sleep 100'])
    wait_until(lambda: containers.logs(stubborn.name), 10, "the trap being set")
    started = time.monotonic()
    client.stop_container(stubborn.name, timeout_seconds=1)
    took = time.monotonic() - started
    assert 0.9 <= took < 6, f"stop with a 1 s grace period took {took:.2f}s"
    result = client.wait_container(stubborn.name, timeout=5)
    assert (result.signal, result.exit_code) == (9, 137)
    client.stop_container(stubborn.name, timeout_seconds=1)  # stopping an exited container is fine
    assert client.get_container(stubborn.name).state == Container.EXITED
    client.remove_container(stubborn.name)


def test_the_command_starts_with_default_signal_handling(containers: ContainerRunner) -> None:
    """No signal blocked or ignored, as after a plain fork and exec.

    A signal ignored at exec stays ignored, and a shell may not even trap it
    (POSIX): a command started so could never be stopped gracefully.
    """
    signals = containers.output(["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"])
    assert dict(line.split(":\t") for line in signals.stdout.splitlines()) == \
        {"SigBlk": "0000000000000000", "SigIgn": "0000000000000000"}, "the command inherited blocked or ignored signals"


def test_stop_lets_the_command_handle_sigterm(client: Client, containers: ContainerRunner) -> None:
    """SIGTERM reaches a handler the command installed, which can exit cleanly."""
    polite = containers.run(["sh", "-c", 'trap "echo got TERM; exit 3" TERM; echo ready; while :; do sleep 0.1; done'])
    wait_until(lambda: containers.logs(polite.name), 10, "the trap being set")
    started = time.monotonic()
    client.stop_container(polite.name, timeout_seconds=10)
    took = time.monotonic() - started
    outcome = containers.finish(polite.name)
    assert (outcome.exit_code, outcome.signal, outcome.stdout) == (3, 0, "ready\ngot TERM\n"), outcome
    assert took < 5, f"stop took {took:.1f}s: the command's SIGTERM handler never ran"


# --------------------------------------------------------------------------
# Logs


def test_logs_keep_streams_apart_and_in_order(client: Client, containers: ContainerRunner) -> None:
    # The pauses let each write reach diycd before the next on the other stream.
    script = "echo o1; sleep 0.2; echo e1 >&2; sleep 0.2; echo o2; sleep 0.2; echo e2 >&2; sleep 0.2; printf tail"
    outcome = containers.sh(script)
    assert outcome.chunks == (("STDOUT", "o1\n"), ("STDERR", "e1\n"), ("STDOUT", "o2\n"), ("STDERR", "e2\n"),
                              ("STDOUT", "tail"))
    many = containers.output(["seq", "1", "30000"])
    assert many.stdout == "".join(f"{i}\n" for i in range(1, 30001)) and many.stderr == ""


def test_logs_follow_until_exit_and_can_be_cancelled(client: Client, containers: ContainerRunner) -> None:
    ticker = containers.run(["sh", "-c", "for i in 1 2 3 4 5; do echo line$i; sleep 0.2; done"])
    started = time.monotonic()
    followed = b"".join(chunk.data for chunk in client.container_logs(ticker.name, follow=True))
    assert followed.decode().split() == [f"line{i}" for i in range(1, 6)]
    assert time.monotonic() - started > 0.5  # it waited for the output, it did not just read what was there
    assert client.get_container(ticker.name).state == Container.EXITED
    client.remove_container(ticker.name)

    sleeper = containers.run(["sh", "-c", "echo hello; sleep 300"])
    stream = client.container_logs(sleeper.name, follow=True)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.extend(chunk.data for chunk in stream))
    reader.start()
    wait_until(lambda: received, 10, "the first output")
    stream.cancel()
    reader.join(5)
    assert not reader.is_alive() and received == [b"hello\n"]
    client.remove_container(sleeper.name, force=True)


def test_container_events(client: Client, containers: ContainerRunner, names: RunNames) -> None:
    network = create_network(client, names)
    received: list[events_pb2.Event] = []
    stream = client.events()
    reader = threading.Thread(target=lambda: received.extend(stream))
    reader.start()
    try:
        # The subscription starts some time after the call: wait until it sees something.
        probes = []
        while not received:
            probes.append(create_network(client, names))
            client.delete_network(probes[-1].name)
            time.sleep(0.2)
            assert len(probes) < 50, "the event stream never started"
        name = containers.name()
        containers.output(["true"], name=name, networks=[network.name])
        wait_until(lambda: any(e.type == events_pb2.Event.CONTAINER_REMOVED for e in received), 10,
                   "the CONTAINER_REMOVED event")
    finally:
        stream.cancel()
        reader.join(5)
    mine = [(events_pb2.Event.Type.Name(e.type), e.network) for e in received
            if e.container.name == name or e.attachment.container == name]
    assert mine == [("CONTAINER_ATTACHED", network.name), ("CONTAINER_STARTED", ""), ("CONTAINER_EXITED", ""),
                    ("CONTAINER_DETACHED", network.name), ("CONTAINER_REMOVED", "")], mine
    exited = next(e.container for e in received if e.type == events_pb2.Event.CONTAINER_EXITED)
    assert (exited.state, exited.exit_code) == (Container.EXITED, 0)


# --------------------------------------------------------------------------
# Removal


def test_remove_undoes_everything(diycd: DiycdProcess, client: Client, containers: ContainerRunner,
                                  names: RunNames) -> None:
    network = create_network(client, names)
    ip = host_address(network, 30)
    running = containers.run(["sleep", "300"], networks=[f"{network.name}:{ip}"])
    present = traces(diycd, running)
    assert all(present[kind] for kind in ("cgroups", "mounts", "host veths", "directory", "processes")), present

    with pytest.raises(FailedPreconditionError):
        client.remove_container(running.name)
    assert client.get_container(running.name).state == Container.RUNNING
    client.remove_container(running.name, force=True)

    assert_no_traces(diycd, running)
    with pytest.raises(NotFoundError):
        client.get_container(running.name)
    with pytest.raises(NotFoundError):
        client.remove_container(running.name)
    assert running.name not in {c.name for c in client.list_containers(all=True)}
    assert client.list_attachments(network.name) == []
    assert client.get_network(network.name).attachment_count == 0
    # Its address is free again.
    again = containers.run(["ip", "-o", "-4", "addr", "show", "eth0"], networks=[f"{network.name}:{ip}"])
    outcome = containers.finish(again.name)
    assert f"inet {ip}/" in outcome.stdout, outcome
    assert_no_traces(diycd, again)


# --------------------------------------------------------------------------
# Images


def test_images_import_list_and_remove(diycd: DiycdProcess, client: Client, containers: ContainerRunner,
                                       busybox: str, tmp_path: Path) -> None:
    tar = write_busybox_tar(tmp_path / "busybox.tar")
    from_tar = client.import_image("from-tar", tar_path=str(tar))
    listed = {i.name: i for i in client.list_images()}
    assert set(listed) == {busybox, "from-tar"}
    assert listed["from-tar"].file_count == listed[busybox].file_count > 0
    assert listed["from-tar"].size_bytes == listed[busybox].size_bytes == from_tar.size_bytes > 1 << 20
    assert from_tar.created_at.seconds > 0

    with pytest.raises(AlreadyExistsError):
        client.import_image("from-tar", tar_path=str(tar))
    with pytest.raises(InvalidArgumentError):
        client.import_image("relative", directory="rootfs")
    with pytest.raises(DiycError):
        client.import_image("missing", directory=str(tmp_path / "missing"))
    with pytest.raises(InvalidArgumentError):
        client.import_image("bad/name", tar_path=str(tar))
    assert {i.name for i in client.list_images()} == {busybox, "from-tar"}

    user = containers.run(["echo", "from a tar"], image="from-tar")
    client.wait_container(user.name, timeout=30)
    # Even an exited container keeps its image.
    with pytest.raises(FailedPreconditionError):
        client.remove_image("from-tar")
    assert containers.finish(user.name).stdout == "from a tar\n"
    client.remove_image("from-tar")
    assert {i.name for i in client.list_images()} == {busybox}
    assert not (Path(diycd.state_dir) / "images" / "from-tar").exists()
    with pytest.raises(NotFoundError):
        client.remove_image("from-tar")
    with pytest.raises(NotFoundError):
        containers.run(["true"], image="from-tar")


def _tar(path: Path, entries: Sequence[tuple[str, str, str]]) -> Path:
    """A tar of (kind, name, content-or-link-target) entries, names taken as they are."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, value in entries:
            info = tarfile.TarInfo(name)
            info.mtime = int(time.time())
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "file":
                data = value.encode()
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
            else:
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = value
                tar.addfile(info)
    return path


def test_a_malicious_tar_never_writes_outside_its_image(diycd: DiycdProcess, client: Client, busybox: str,
                                                         tmp_path: Path, names: RunNames) -> None:
    outside = Path(f"/tmp/{names.prefix}-OUTSIDE")
    outside.mkdir(mode=0o755, exist_ok=True)
    try:
        secret = outside / "secret"
        secret.write_text("host data\n")
        before = secret.stat()
        # From the image's root, as many ../ as it takes to reach / and then the outside directory.
        climb = "../" * 40 + str(outside).lstrip("/")
        escapes = {
            "dotdot": [("dir", "bin", ""), ("file", "../evil", "x"), ("file", f"{climb}/evil", "x")],
            "absolute": [("file", f"{outside}/evil", "x")],
            "symlink": [("symlink", "link", str(outside)), ("file", "link/evil", "x")],
            "relative-symlink": [("symlink", "rel", climb), ("file", "rel/evil", "x")],
            "symlink-overwrite": [("symlink", "victim", str(secret)), ("file", "victim", "overwritten\n")],
            "hardlink": [("hardlink", "hl", str(secret))],
            "hardlink-then-write": [("hardlink", "hl2", f"{climb}/secret"), ("file", "hl2", "overwritten\n")],
        }
        images_dir = Path(diycd.state_dir) / "images"
        imported = []
        for case, entries in escapes.items():
            archive = _tar(tmp_path / f"{case}.tar", entries)
            try:
                client.import_image(case, tar_path=str(archive))
                imported.append(case)
            except DiycError:
                pass
            assert sorted(os.listdir(outside)) == ["secret"], f"{case}: wrote {sorted(os.listdir(outside))}"
            after = secret.stat()
            assert secret.read_text() == "host data\n", f"{case}: overwrote a host file"
            assert (after.st_nlink, after.st_ino) == (1, before.st_ino), f"{case}: linked a host file into the image"
            assert sorted(os.listdir(images_dir)) == sorted([busybox, *imported]), f"{case}: {os.listdir(images_dir)}"
            if case in imported:
                root = images_dir / case / "rootfs"
                for path in root.rglob("*"):
                    if path.is_file() and not path.is_symlink():
                        assert path.stat().st_ino != before.st_ino, f"{case}: {path} is the host's file"
        for case in imported:
            client.remove_image(case)
        assert sorted(os.listdir(outside)) == ["secret"] and secret.read_text() == "host data\n"
    finally:
        for entry in outside.iterdir():
            entry.unlink()
        outside.rmdir()


# --------------------------------------------------------------------------
# Bad requests


def test_bad_requests_are_refused_and_leave_nothing(diycd: DiycdProcess, client: Client,
                                                    containers: ContainerRunner, names: RunNames) -> None:
    network, second = create_network(client, names), create_network(client, names)
    name = containers.name()
    refused: list[tuple[type[DiycError], dict[str, Any]]] = [
        (InvalidArgumentError, {"command": []}),
        (InvalidArgumentError, {"command": [""]}),
        (NotFoundError, {"image": "no-such-image"}),
        (InvalidArgumentError, {"name": "a/b"}),
        (InvalidArgumentError, {"memory_bytes": 1 << 20}),
        (InvalidArgumentError, {"env": ["NOEQUALS"]}),
        (InvalidArgumentError, {"workdir": "relative"}),
        (InvalidArgumentError, {"cpus": -1.0}),
        (InvalidArgumentError, {"networks": [f"{network.name}:not-an-ip"]}),
        # The first network is attached before the second fails: it must be undone.
        (NotFoundError, {"networks": [network.name, names.network()]}),
        (DiycError, {"networks": [network.name, f"{second.name}:192.0.2.7"]}),
        (FailedPreconditionError, {"command": ["/no/such/program"], "networks": [network.name]}),
    ]
    for error, overrides in refused:
        request: dict[str, Any] = {"command": ["true"], "name": name, **overrides}
        with pytest.raises(error) as caught:
            containers.run(**request)
        assert caught.value.message, overrides
        assert client.list_containers(all=True) == [], f"{overrides} left a container"
        assert client.list_attachments() == [], f"{overrides} left an attachment"
        assert not container_dir(diycd, request["name"]).exists(), f"{overrides} left its directory"
        assert cgroup_dirs(request["name"]) == [], f"{overrides} left a cgroup"

    first = containers.run(["sleep", "300"], name=name)
    with pytest.raises(AlreadyExistsError):
        containers.run(["true"], name=name)
    assert client.get_container(name).pid == first.pid and process_alive(first.pid)
    with pytest.raises(NotFoundError):
        client.get_container(names.network("c"))
    with pytest.raises(NotFoundError):
        client.stop_container(names.network("c"))
    with pytest.raises(NotFoundError):
        client.wait_container(names.network("c"))
    with pytest.raises(NotFoundError):
        list(client.container_logs(names.network("c")))
    with pytest.raises(InvalidArgumentError):
        client.stop_container(name, timeout_seconds=-1)
    client.remove_container(name, force=True)


# --------------------------------------------------------------------------
# diycd restarts


def test_containers_outlive_a_diycd_crash(diycd: DiycdProcess, containers: ContainerRunner,
                                          names: RunNames) -> None:
    with diycd.client() as client:
        network = create_network(client, names)
        long = containers.run(["sh", "-c", "echo up; exec sleep 300"], networks=[network.name], client=client)
        # Ends on SIGUSR1, which the test sends once diycd is gone.
        short = containers.run(["sh", "-c", 'trap "echo bye; exit 9" USR1; echo ready; while :; do sleep 0.1; done'],
                               networks=[network.name], client=client)
        wait_until(lambda: containers.logs(short.name, client), 10, "the trap being set")
    short_monitor = parent_pid(short.pid)

    diycd.kill()
    # The short one ends while nobody watches it.
    os.kill(short.pid, signal.SIGUSR1)
    wait_until(lambda: not process_alive(short.pid) and not process_alive(short_monitor), 20,
               "the exit of the short container")
    assert process_alive(long.pid), "killing diycd took its container with it"

    diycd.start(timeout=15)
    with diycd.client() as client:
        listed = {c.name: c for c in client.list_containers(all=True)}
        assert set(listed) == {long.name, short.name}
        assert (listed[long.name].state, listed[long.name].pid) == (Container.RUNNING, long.pid)
        assert [c.name for c in client.list_containers()] == [long.name]
        ended = listed[short.name]
        assert (ended.state, ended.exit_code, ended.signal) == (Container.EXITED, 9, 0), ended
        assert client.wait_container(short.name, timeout=10).exit_code == 9
        assert b"".join(c.data for c in client.container_logs(short.name)) == b"ready\nbye\n"

        waiter: list[container_pb2.WaitContainerResponse] = []
        thread = threading.Thread(target=lambda: waiter.append(client.wait_container(long.name, timeout=30)))
        thread.start()
        client.stop_container(long.name, timeout_seconds=1)
        thread.join(30)
        assert [(w.exit_code, w.signal) for w in waiter] == [(137, 9)]
        assert client.get_container(long.name).state == Container.EXITED

        for container in (long, short):
            client.remove_container(container.name)
            assert_no_traces(diycd, container)
        assert client.list_containers(all=True) == [] and client.list_attachments() == []


# --------------------------------------------------------------------------
# Command line


def ok(result: subprocess.CompletedProcess[str]) -> str:
    __tracebackhide__ = True
    assert result.returncode == 0 and result.stderr == "", result
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str], code: str) -> str:
    __tracebackhide__ = True
    assert result.returncode == 1, result
    assert result.stdout == "" and result.stderr.count("\n") == 1, result
    assert result.stderr.startswith(f"diyc: {code}: "), result.stderr
    return result.stderr


def test_cli_runs_containers(diycd: DiycdProcess, client: Client, containers: ContainerRunner, busybox: str,
                             names: RunNames) -> None:
    sock = ["--socket", diycd.socket]
    network = create_network(client, names)
    fg, bg = containers.name(), containers.name()
    containers.started += [fg, bg]

    foreground = run_cli(*sock, "run", "--name", fg, "--network", network.name, "-e", "WHO=cli", busybox,
                         "sh", "-c", 'echo "out $WHO"; echo err >&2; exit 3')
    assert (foreground.returncode, foreground.stdout, foreground.stderr) == (3, "out cli\n", "err\n"), foreground
    assert client.get_container(fg).exit_code == 3
    assert json.loads(ok(run_cli(*sock, "wait", fg, "--json"))) == {"exit_code": 3, "signal": 0, "oom_killed": False}
    logs = run_cli(*sock, "logs", fg)
    assert (logs.returncode, logs.stdout, logs.stderr) == (0, "out cli\n", "err\n"), logs
    ok(run_cli(*sock, "rm", fg))

    ip = host_address(network, 40)
    assert ok(run_cli(*sock, "run", "-d", "--name", bg, "--network", f"{network.name}:{ip}", "--memory", "64M",
                      "--pids", "100", "--cpus", "0.5", busybox, "--", "sh", "-c", "echo started; exec sleep 300")) \
        == f"{bg}\n"
    table = ok(run_cli(*sock, "ps")).splitlines()
    assert table[0].split() == ["NAME", "IMAGE", "COMMAND", "STATUS", "CREATED", "NETWORKS"]
    assert [row.split()[0] for row in table[1:]] == [bg] and f"{network.name}={ip}" in table[1]
    assert [c["name"] for c in json.loads(ok(run_cli(*sock, "--json", "ps")))] == [bg]
    shown = json.loads(ok(run_cli(*sock, "inspect", bg, "--json")))
    assert (shown["state"], shown["exit_code"], shown["oom_killed"], shown["signal"]) == ("RUNNING", 0, False, 0)
    assert (shown["memory_bytes"], shown["pids_limit"], shown["cpus"]) == (str(64 << 20), "100", 0.5)
    assert [(a["network"], a["ip"]) for a in shown["attachments"]] == [(network.name, f"{ip}/24")]
    assert "status:" in ok(run_cli(*sock, "inspect", bg))
    wait_until(lambda: ok(run_cli(*sock, "logs", bg)) == "started\n", 10, "the container's first line")
    one_line_error(run_cli(*sock, "rm", bg), "FAILED_PRECONDITION")

    waiter = subprocess.Popen([PYTHON, "-m", "diyc", *sock, "wait", bg], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=cli_env())
    follower = subprocess.Popen([PYTHON, "-m", "diyc", *sock, "logs", "-f", bg], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=cli_env())
    time.sleep(0.5)
    assert waiter.poll() is None and follower.poll() is None
    assert ok(run_cli(*sock, "stop", bg, "--time", "1")) == f"stopped {bg}\n"
    assert waiter.communicate(timeout=10) == ("137\n", "") and waiter.returncode == 0
    assert follower.communicate(timeout=10) == ("started\n", "") and follower.returncode == 0
    shown = json.loads(ok(run_cli(*sock, "inspect", bg, "--json")))
    assert (shown["state"], shown["exit_code"], shown["signal"]) == ("EXITED", 137, 9)
    assert "exited 137 (signal 9)" in ok(run_cli(*sock, "ps", "-a"))
    assert ok(run_cli(*sock, "ps")).splitlines()[1:] == []
    assert json.loads(ok(run_cli(*sock, "rm", bg, "--json"))) == {"container": bg, "removed": True}
    assert json.loads(ok(run_cli(*sock, "ps", "-a", "--json"))) == []

    # --rm removes the container once it has exited.
    assert run_cli(*sock, "run", "--rm", busybox, "false").returncode == 1
    assert client.list_containers(all=True) == []


def test_cli_container_errors(diycd: DiycdProcess, busybox: str, names: RunNames) -> None:
    sock = ["--socket", diycd.socket]
    for usage in (["run", busybox], ["run", "--memory", "12Q", busybox, "true"], ["run", "-d", "--rm", busybox, "true"],
                  ["run", "-e", "NOEQUALS", busybox, "true"], ["stop", "x", "--signal", "NOPE"], ["rm"]):
        result = run_cli(*sock, *usage)
        assert result.returncode == 2 and "Traceback" not in result.stderr, (usage, result)
    missing = names.network("c")
    for command in (["inspect", missing], ["stop", missing], ["rm", missing], ["logs", missing], ["wait", missing]):
        assert missing in one_line_error(run_cli(*sock, *command), "NOT_FOUND")
    one_line_error(run_cli(*sock, "run", "no-such-image", "true"), "NOT_FOUND")
    one_line_error(run_cli(*sock, "run", "--memory", "1M", busybox, "true"), "INVALID_ARGUMENT")
    one_line_error(run_cli(*sock, "run", "--name", "a/b", busybox, "true"), "INVALID_ARGUMENT")
    one_line_error(run_cli(*sock, "image", "rm", "no-such-image"), "NOT_FOUND")


def test_cli_images(diycd: DiycdProcess, diycd_root: Path, client: Client, busybox: str, names: RunNames,
                    tmp_path: Path) -> None:
    sock = ["--socket", diycd.socket]
    directory = diycd_root / f"{names.network('rootfs')}"
    try:
        assert ok(run_cli("image", "busybox", str(directory))) == f"wrote a busybox root filesystem to {directory}\n"
        assert (directory / "bin" / "busybox").is_file()
        one_line_error(run_cli("image", "busybox", str(directory)), "ALREADY_EXISTS")
        # A relative PATH is made absolute before diycd sees it.
        imported = ok(run_cli(*sock, "image", "import", "from-dir", directory.name, cwd=str(directory.parent)))
        assert imported.startswith("imported image from-dir: ")
    finally:
        subprocess.run(["rm", "-rf", "--", str(directory)], check=True)
    tar = write_busybox_tar(tmp_path / "rootfs.tar")
    from_tar = json.loads(ok(run_cli(*sock, "--json", "image", "import", "from-tar", str(tar))))
    assert from_tar["name"] == "from-tar" and int(from_tar["file_count"]) > 0
    listed = json.loads(ok(run_cli(*sock, "image", "ls", "--json")))
    assert [i["name"] for i in listed] == sorted([busybox, "from-dir", "from-tar"])
    table = ok(run_cli(*sock, "image", "ls")).splitlines()
    assert table[0].split() == ["NAME", "SIZE", "FILES", "CREATED"] and len(table) == 4
    assert ok(run_cli(*sock, "image", "rm", "from-dir")) == "removed image from-dir\n"
    assert json.loads(ok(run_cli(*sock, "image", "rm", "from-tar", "--json"))) == {"image": "from-tar", "removed": True}
    assert [i.name for i in client.list_images()] == [busybox]


def test_cli_run_ctrl_c_stops_the_container(diycd: DiycdProcess, client: Client, containers: ContainerRunner,
                                            busybox: str) -> None:
    name = containers.name()
    containers.started.append(name)
    script = 'trap "echo got TERM; exit 3" TERM; echo ready; while :; do sleep 0.1; done'
    runner = subprocess.Popen([PYTHON, "-m", "diyc", "--socket", diycd.socket, "run", "--name", name, busybox,
                               "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=cli_env(), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        ready, _, _ = select.select([runner.stdout], [], [], 15)
        first = runner.stdout.readline() if ready and runner.stdout is not None else ""
        if first == "ready\n":
            # Output can reach the terminal a moment before the CLI has
            # finished starting its foreground wait; a person's Ctrl-C comes
            # later than that.
            time.sleep(0.5)
            runner.send_signal(signal.SIGINT)
        else:
            runner.kill()
        out, err = runner.communicate(timeout=30)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert first == "ready\n", f"the container never got going: {first!r} {out!r} {err!r}"
    assert (runner.returncode, out, err) == (3, "got TERM\n", ""), (runner.returncode, out, err)
    assert client.get_container(name).exit_code == 3
