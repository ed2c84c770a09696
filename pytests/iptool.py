"""iproute2 and iputils as independent witnesses of what diyc did.

Tests compare diyc's own view (get_link, addrs, routes, ping) with what the
standard tools report, so a bug that is consistent inside diyc still shows.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Any

import diyc

def netns_name(netns: diyc.NetNS | str | None) -> str | None:
    """The /run/netns name iproute2 needs for a namespace."""
    if netns is None or isinstance(netns, str):
        return netns
    if not netns.name:
        raise ValueError(f"namespace at {netns.path} has no name iproute2 could use")
    return netns.name


@dataclass(frozen=True)
class IpTool:
    """Runs `ip` (and `ping` through `ip netns exec`)."""

    ip: str
    ping_binary: str | None

    def run(self, *args: str, netns: diyc.NetNS | str | None = None, check: bool = True,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        name = netns_name(netns)
        prefix = ["-n", name] if name else []
        return subprocess.run([self.ip, *prefix, *args], capture_output=True, text=True,
                              check=check, timeout=timeout)

    def json(self, *args: str, netns: diyc.NetNS | str | None = None) -> list[dict[str, Any]]:
        out = self.run("-j", *args, netns=netns).stdout.strip()
        return json.loads(out) if out else []

    def link(self, ifname: str, netns: diyc.NetNS | str | None = None) -> dict[str, Any] | None:
        """`ip -d link show dev IFNAME` as a dict, None if there is no such link."""
        name = netns_name(netns)
        prefix = ["-n", name] if name else []
        proc = subprocess.run([self.ip, *prefix, "-d", "-j", "link", "show", "dev", ifname],
                              capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            return None
        entries = json.loads(proc.stdout)
        return entries[0] if entries else None

    def link_names(self, netns: diyc.NetNS | str | None = None) -> set[str]:
        return {entry["ifname"] for entry in self.json("link", "show", netns=netns)}

    def addrs(self, ifname: str, netns: diyc.NetNS | str | None = None) -> set[str]:
        """CIDRs on ifname as "address/prefixlen" (addresses normalised)."""
        entries = self.json("addr", "show", "dev", ifname, netns=netns)
        return {f"{info['local']}/{info['prefixlen']}" for entry in entries for info in entry.get("addr_info", [])}

    def routes(self, netns: diyc.NetNS | str | None = None, family: int = 4) -> list[dict[str, Any]]:
        return self.json(f"-{family}", "route", "show", netns=netns)

    def netns_list(self) -> list[str]:
        """Names `ip netns list` prints (it appends "(id: N)" to some)."""
        out = self.run("netns", "list").stdout
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    def ping(self, netns: diyc.NetNS | str, address: str, *, count: int = 1,
             wait: int = 1) -> subprocess.CompletedProcess[str]:
        """iputils `ping` run inside netns via `ip netns exec`."""
        if self.ping_binary is None:
            raise RuntimeError("iputils ping is not installed")
        name = netns_name(netns)
        assert name is not None
        return subprocess.run(
            [self.ip, "netns", "exec", name, self.ping_binary, "-n", "-c", str(count), "-W", str(wait), address],
            capture_output=True, text=True, timeout=30 + count * wait,
        )
