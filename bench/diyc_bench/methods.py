"""The ways of joining a namespace to a bridge that the bench compares.

Every method does the same work per container: a veth pair whose peer is
``eth0`` inside the namespace, the host end a port of a bridge, an IPv4
address in a /21, the links up and a default route via the bridge's
address; and the reverse. Each method gets its own bridge and /21, made and
removed outside the timings.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import diyc
from diyc.client import Client
from diyc.daemon import DiycdProcess

from .host import BenchError, Names, Slot, bridge_ports, nft_table_exists, run, scrub_namespaces

__all__ = [
    "AttachMethod",
    "Attached",
    "BindingsMethod",
    "CniMethod",
    "Context",
    "DiycCniMethod",
    "DiycGrpcMethod",
    "FloorMethod",
    "IpToolMethod",
    "CNI_PLUGIN_DIR",
]

CNI_PLUGIN_DIR = Path("/usr/lib/cni")
_PREFIX_LEN = 21
_GRPC_TIMEOUT = 60.0
_SETTLE_TIMEOUT = 60.0
_SETTLE_POLL = 0.002


@dataclass(frozen=True)
class Context:
    """What every method needs to know about this run."""

    names: Names
    tmp: Path
    diycd: DiycdProcess
    nft_table: str
    floor_binary: Path | None


@dataclass(frozen=True)
class Attached:
    """The outcome of one attach: the namespace's address, for the ping check.

    ``timed_ns`` is set by a method that times its own kernel work (the
    floor coprocess), so the pipe to it is not counted.
    """

    ip: str
    timed_ns: int | None = None


class AttachMethod(ABC):
    """One way of attaching; a fresh instance serves one (method, N) scenario."""

    key: str = ""
    label: str = ""
    clients: int = 1

    def __init__(self, ctx: Context, subnet: ipaddress.IPv4Network) -> None:
        self.ctx = ctx
        self.subnet = subnet
        self.gateway = str(subnet.network_address + 1)

    def cidr(self, slot: Slot) -> str:
        return f"{self.subnet.network_address + slot.host_offset}/{_PREFIX_LEN}"

    @property
    @abstractmethod
    def bridge(self) -> str:
        """The bridge this method's containers join."""

    @abstractmethod
    def prepare(self) -> None:
        """Makes the bridge (or network); not timed."""

    @abstractmethod
    def attach(self, slot: Slot, worker: int) -> Attached:
        """Joins the slot's namespace; the call is what gets timed."""

    @abstractmethod
    def detach(self, slot: Slot, worker: int) -> int | None:
        """Undoes attach; returns the method's own timing in ns, if it has one."""

    @abstractmethod
    def close(self) -> None:
        """Removes the bridge (or network); not timed."""

    def settle(self) -> None:
        """Returns once the kernel has finished what the detaches started.

        Synchronous methods are done when their last call returns; a method
        that defers deletion waits here, and the wait counts in the phase's
        wall time (so in its ops/s), not in any per-call latency.
        """

    def recover(self, slots: Sequence[Slot]) -> list[str]:
        """After a failure: removes whatever attaches are left, by any means."""
        return scrub_namespaces(slots)

    def leftovers(self) -> list[str]:
        """What this method left behind after close(), beyond links and namespaces."""
        ports = bridge_ports(self.bridge)
        return [f"bridge {self.bridge} still has ports {ports[:5]}"] if ports else []


# -- diycd over gRPC


class DiycGrpcMethod(AttachMethod):
    """AttachContainer/DetachContainer through diycd's unix socket.

    With several clients each thread has its own Client (its own channel),
    as independent callers of the node agent would.
    """

    def __init__(self, ctx: Context, subnet: ipaddress.IPv4Network, clients: int) -> None:
        super().__init__(ctx, subnet)
        self.clients = clients
        self.key = "diyc-grpc-seq" if clients == 1 else f"diyc-grpc-{clients}"
        self.label = "diyc gRPC, 1 client" if clients == 1 else f"diyc gRPC, {clients} clients"
        suffix = "s" if clients == 1 else "p"
        self.network = ctx.names.link("n", suffix)
        self._bridge = ctx.names.link("d", suffix)
        self._clients: list[Client] = []

    @property
    def bridge(self) -> str:
        return self._bridge

    def prepare(self) -> None:
        self._clients = [self.ctx.diycd.client(timeout=_GRPC_TIMEOUT) for _ in range(self.clients)]
        self._clients[0].create_network(self.network, str(self.subnet), bridge=self._bridge, nat=False)
        for client in self._clients:
            client.list_networks(page_size=1)  # connects every channel before timing

    def attach(self, slot: Slot, worker: int) -> Attached:
        attachment = self._clients[worker].attach(self.network, netns=slot.netns)
        return Attached(ip=attachment.ip.split("/")[0])

    def detach(self, slot: Slot, worker: int) -> int | None:
        self._clients[worker].detach(self.network, netns=slot.netns)
        return None

    def settle(self) -> None:
        """Waits for diycd's reaper to delete every veth this network's detaches retired.

        DetachContainer returns once the host end is retired (down, off the
        bridge, moved into diycd's link group); a reaper deletes the group in
        batches. Retired veths keep their ownership alias, which names the
        network (as the bridge's does).
        """
        deadline = time.monotonic() + _SETTLE_TIMEOUT
        suffix = f":{self.network}"
        with diyc.IPRoute() as host:
            while pending := [link for link in host.links()
                              if link.kind == "veth" and (link.alias or "").endswith(suffix)]:
                if time.monotonic() > deadline:
                    raise BenchError(f"diycd left {len(pending)} veths of {self.network} undeleted for "
                                     f"{_SETTLE_TIMEOUT:g}s, e.g. {pending[:3]}")
                time.sleep(_SETTLE_POLL)

    def attachment_count(self) -> int:
        return len(self._clients[0].list_attachments(self.network, page_size=1000))

    def close(self) -> None:
        try:
            if self._clients:
                self._clients[0].delete_network(self.network, force=True)
        except diyc.NotFoundError:
            pass
        finally:
            for client in self._clients:
                client.close()
            self._clients = []

    def recover(self, slots: Sequence[Slot]) -> list[str]:
        errors: list[str] = []
        try:
            with self.ctx.diycd.client(timeout=_GRPC_TIMEOUT) as client:
                client.delete_network(self.network, force=True)
        except diyc.NotFoundError:
            pass
        except diyc.DiycError as exc:
            errors.append(f"delete network {self.network}: {exc}")
        return errors + scrub_namespaces(slots)

    def leftovers(self) -> list[str]:
        problems = super().leftovers()
        with self.ctx.diycd.client(timeout=_GRPC_TIMEOUT) as client:
            if any(n.name == self.network for n in client.list_networks()):
                problems.append(f"diycd still lists network {self.network}")
            if client.list_attachments():
                problems.append("diycd still lists attachments")
        state = Path(self.ctx.diycd.state_dir)
        for sub in ("networks", "attachments"):
            records = [p.name for p in (state / sub).glob("*") if not p.name.startswith(".")]
            if records:
                problems.append(f"diycd state {sub}/ still holds {records[:5]}")
        if nft_table_exists(self.ctx.nft_table):
            problems.append(f"nftables table inet {self.ctx.nft_table} still exists")
        return problems


# -- the Python bindings, in-process


class BindingsMethod(AttachMethod):
    """The same calls a Python program makes with the diyc package, in-process."""

    key = "bindings"
    label = "diyc bindings, in-process"

    def __init__(self, ctx: Context, subnet: ipaddress.IPv4Network) -> None:
        super().__init__(ctx, subnet)
        self._bridge = ctx.names.link("b", "b")
        self._host: diyc.IPRoute | None = None

    @property
    def bridge(self) -> str:
        return self._bridge

    def veth(self, slot: Slot) -> str:
        return self.ctx.names.link("a", slot.tag)

    def prepare(self) -> None:
        self._host = diyc.IPRoute()
        self._host.bridge_add(self._bridge, mtu=1500)
        self._host.addr_add(self._bridge, f"{self.gateway}/{_PREFIX_LEN}")

    def attach(self, slot: Slot, worker: int) -> Attached:
        assert self._host is not None
        cidr = self.cidr(slot)
        with diyc.NetNS.open(slot.netns) as ns:
            self._host.veth_add(self.veth(slot), peer="eth0", peer_netns=ns, master=self._bridge, state="up")
            with diyc.IPRoute(netns=ns) as ipr:
                ipr.addr_add("eth0", cidr)
                ipr.link_set("eth0", state="up")
                ipr.lo_up()
                ipr.route_add("default", via=self.gateway)
        return Attached(ip=cidr.split("/")[0])

    def detach(self, slot: Slot, worker: int) -> int | None:
        assert self._host is not None
        self._host.link_del(self.veth(slot))
        return None

    def close(self) -> None:
        if self._host is None:
            return
        try:
            if self._host.find_link(self._bridge) is not None:
                self._host.link_del(self._bridge)
        finally:
            self._host.close()
            self._host = None


# -- the raw netlink floor (bench/netlink_floor.cc)


class FloorMethod(AttachMethod):
    """The kernel work with the fewest netlink requests, from a C++ coprocess.

    The coprocess runs for the whole scenario and reports its own timing of
    each command, so neither its start-up nor the pipe is counted.
    """

    key = "netlink-floor"
    label = "raw netlink floor (C++)"

    def __init__(self, ctx: Context, subnet: ipaddress.IPv4Network) -> None:
        super().__init__(ctx, subnet)
        if ctx.floor_binary is None:
            raise BenchError("no netlink_floor binary")
        self.binary = ctx.floor_binary
        self._bridge = ctx.names.link("b", "f")
        self._bridge_index = 0
        self._proc: subprocess.Popen[str] | None = None

    @property
    def bridge(self) -> str:
        return self._bridge

    def veth(self, slot: Slot) -> str:
        return self.ctx.names.link("f", slot.tag)

    def prepare(self) -> None:
        with diyc.IPRoute() as host:
            self._bridge_index = host.bridge_add(self._bridge, mtu=1500).index
            host.addr_add(self._bridge, f"{self.gateway}/{_PREFIX_LEN}")
        self._proc = subprocess.Popen([str(self.binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True, bufsize=1)

    def _command(self, line: str) -> int:
        assert self._proc is not None and self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()
        answer = self._proc.stdout.readline().strip()
        if not answer:
            raise BenchError(f"netlink_floor exited ({self._proc.poll()}) on {line!r}")
        status, _, detail = answer.partition(" ")
        if status != "ok":
            raise BenchError(f"netlink_floor {line!r}: {detail}")
        return int(detail)

    def attach(self, slot: Slot, worker: int) -> Attached:
        cidr = self.cidr(slot)
        elapsed = self._command(f"attach {slot.netns} {self.veth(slot)} {self._bridge_index} {cidr} {self.gateway}")
        return Attached(ip=cidr.split("/")[0], timed_ns=elapsed)

    def detach(self, slot: Slot, worker: int) -> int | None:
        return self._command(f"detach {self.veth(slot)}")

    def close(self) -> None:
        if self._proc is not None:
            try:
                if self._proc.stdin is not None:
                    self._proc.stdin.write("quit\n")
                    self._proc.stdin.close()
                self._proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
            finally:
                self._proc = None
        with diyc.IPRoute() as host:
            if host.find_link(self._bridge) is not None:
                host.link_del(self._bridge)


class DiycCniMethod(DiycGrpcMethod):
    """diyc-cni, one exec per ADD and DEL, as a CNI runtime drives it.

    The plugin talks to the same diycd; the network is made beforehand (not
    timed), as a node's conflist would find it.
    """

    def __init__(self, ctx: Context, subnet: ipaddress.IPv4Network, plugin: Path) -> None:
        super().__init__(ctx, subnet, clients=1)
        self.key = "diyc-cni"
        self.label = "diyc-cni (CNI plugin via diycd)"
        self.network = ctx.names.link("n", "k")
        self._bridge = ctx.names.link("d", "k")
        self.plugin = plugin
        self.config = json.dumps({"cniVersion": "1.0.0", "name": self.network, "type": "diyc",
                                  "socket": ctx.diycd.socket}).encode()

    def _exec(self, command: str, slot: Slot) -> bytes:
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": slot.netns,
            "CNI_NETNS": f"/run/netns/{slot.netns}",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(self.plugin.parent),
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        done = subprocess.run([str(self.plugin)], input=self.config, env=env, capture_output=True, check=False)
        if done.returncode != 0:
            raise BenchError(f"diyc-cni {command} {slot.netns} exited {done.returncode}: "
                             f"{(done.stdout or done.stderr).decode(errors='replace').strip()}")
        return done.stdout

    def attach(self, slot: Slot, worker: int) -> Attached:
        result = json.loads(self._exec("ADD", slot))
        return Attached(ip=result["ips"][0]["address"].split("/")[0])

    def detach(self, slot: Slot, worker: int) -> int | None:
        self._exec("DEL", slot)
        return None


# -- the CNI reference plugins


class CniMethod(AttachMethod):
    """/usr/lib/cni/bridge with host-local IPAM, one exec per ADD and DEL.

    The IPAM data directory is private to the scenario, so /var/lib/cni is
    never touched. ``routes`` asks for the default route the other methods
    set (the plugin adds none without it).
    """

    key = "cni"
    label = "CNI bridge + host-local"

    def __init__(self, ctx: Context, subnet: ipaddress.IPv4Network, n: int) -> None:
        super().__init__(ctx, subnet)
        self._bridge = ctx.names.link("b", "c")
        self.network = f"{ctx.names.prefix}-cni"
        self.data_dir = ctx.tmp / "cni" / f"n{n}"
        self.plugin = CNI_PLUGIN_DIR / "bridge"
        self.config = json.dumps({
            "cniVersion": "1.0.0",
            "name": self.network,
            "type": "bridge",
            "bridge": self._bridge,
            "isGateway": True,
            "ipMasq": False,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": str(subnet)}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": str(self.data_dir),
            },
        }).encode()

    @property
    def bridge(self) -> str:
        return self._bridge

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)  # the plugin makes the bridge on the first ADD

    def _exec(self, command: str, slot: Slot) -> bytes:
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": slot.netns,
            "CNI_NETNS": f"/run/netns/{slot.netns}",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(CNI_PLUGIN_DIR),
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        done = subprocess.run([str(self.plugin)], input=self.config, env=env, capture_output=True, check=False)
        if done.returncode != 0:
            raise BenchError(f"CNI {command} {slot.netns} exited {done.returncode}: "
                             f"{(done.stdout or done.stderr).decode(errors='replace').strip()}")
        return done.stdout

    def attach(self, slot: Slot, worker: int) -> Attached:
        result = json.loads(self._exec("ADD", slot))
        return Attached(ip=result["ips"][0]["address"].split("/")[0])

    def detach(self, slot: Slot, worker: int) -> int | None:
        self._exec("DEL", slot)
        return None

    def close(self) -> None:
        with diyc.IPRoute() as host:
            if host.find_link(self._bridge) is not None:
                host.link_del(self._bridge)

    def recover(self, slots: Sequence[Slot]) -> list[str]:
        errors: list[str] = []
        for slot in slots:
            try:
                self._exec("DEL", slot)
            except BenchError as exc:
                errors.append(str(exc))
        return errors + scrub_namespaces(slots)

    def allocations(self) -> list[str]:
        """Addresses host-local still has reserved (files named by IP)."""
        found = []
        for path in self.data_dir.glob("*/*"):
            try:
                ipaddress.ip_address(path.name)
            except ValueError:
                continue  # lock, last_reserved_ip.0
            found.append(path.name)
        return sorted(found)

    def leftovers(self) -> list[str]:
        problems = super().leftovers()
        allocated = self.allocations()
        if allocated:
            problems.append(f"CNI dataDir {self.data_dir} still allocates {allocated[:5]}")
        return problems


# -- the ancestor's way: one `ip` process per step


class IpToolMethod(AttachMethod):
    """Separate `ip` commands per step, as shell-scripted container tools did."""

    key = "ip-commands"
    label = "ip commands (8 execs)"

    def __init__(self, ctx: Context, subnet: ipaddress.IPv4Network) -> None:
        super().__init__(ctx, subnet)
        self._bridge = ctx.names.link("b", "i")
        self.ip = shutil.which("ip") or "/usr/sbin/ip"

    @property
    def bridge(self) -> str:
        return self._bridge

    def veth(self, slot: Slot) -> str:
        return self.ctx.names.link("i", slot.tag)

    def peer(self, slot: Slot) -> str:
        return self.ctx.names.link("q", slot.tag)

    def _ip(self, *args: str) -> None:
        done = subprocess.run([self.ip, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, check=False)
        if done.returncode != 0:
            raise BenchError(f"ip {' '.join(args)}: {done.stderr.decode(errors='replace').strip()}")

    def prepare(self) -> None:
        run([self.ip, "link", "add", self._bridge, "type", "bridge"])
        run([self.ip, "addr", "add", f"{self.gateway}/{_PREFIX_LEN}", "dev", self._bridge])
        run([self.ip, "link", "set", self._bridge, "up"])

    def attach(self, slot: Slot, worker: int) -> Attached:
        veth, peer, ns, cidr = self.veth(slot), self.peer(slot), slot.netns, self.cidr(slot)
        self._ip("link", "add", veth, "type", "veth", "peer", "name", peer)
        self._ip("link", "set", peer, "netns", ns)
        self._ip("link", "set", veth, "master", self._bridge, "up")
        self._ip("-n", ns, "link", "set", peer, "name", "eth0")
        self._ip("-n", ns, "addr", "add", cidr, "dev", "eth0")
        self._ip("-n", ns, "link", "set", "eth0", "up")
        self._ip("-n", ns, "link", "set", "lo", "up")
        self._ip("-n", ns, "route", "add", "default", "via", self.gateway)
        return Attached(ip=cidr.split("/")[0])

    def detach(self, slot: Slot, worker: int) -> int | None:
        self._ip("link", "del", self.veth(slot))
        return None

    def close(self) -> None:
        if os.path.exists(f"/sys/class/net/{self._bridge}"):
            run([self.ip, "link", "del", self._bridge])
