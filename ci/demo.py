"""Shows diyc's network core at work: three namespaces on a bridge ping each other.

Everything it makes carries a per-run prefix and is removed at the end.
"""

from __future__ import annotations

import os
from contextlib import ExitStack

import diyc

PREFIX = f"dd{os.getpid() % 10000}"
SUBNET = "10.199.{}.{}"


def main() -> None:
    bridge = f"{PREFIX}br"
    with diyc.IPRoute() as host, ExitStack() as stack:
        host.bridge_add(bridge)
        stack.callback(host.link_del, bridge)
        host.addr_add(bridge, SUBNET.format(0, 1) + "/24")
        print(f"bridge {bridge} 10.199.0.1/24")

        namespaces: list[tuple[diyc.NetNS, str]] = []
        for i in range(3):
            ns = stack.enter_context(diyc.NetNS.create(f"{PREFIX}-c{i}"))
            address = SUBNET.format(0, 2 + i)
            host.veth_add(f"{PREFIX}v{i}", peer="eth0", peer_netns=ns, master=bridge, state="up")
            with diyc.IPRoute(netns=ns) as ipr:
                ipr.lo_up()
                ipr.addr_add("eth0", f"{address}/24")
                ipr.link_set("eth0", state="up")
                ipr.route_add("default", via=SUBNET.format(0, 1))
                link = ipr.get_link("eth0")
            print(f"netns {ns.name}: eth0 {address}/24 mac {link.address}")
            namespaces.append((ns, address))

        failures = 0
        for ns, _ in namespaces:
            for _, target in namespaces + [(None, SUBNET.format(0, 1))]:
                result = diyc.ping(ns, target, count=3, timeout=1.0)
                rtt = sum(result.rtts_ms) / len(result.rtts_ms) if result.rtts_ms else float("nan")
                print(f"  {ns.name} -> {target}: {result.received}/{result.sent} replies, avg {rtt:.3f} ms")
                failures += not result.ok
        print("all reachable" if failures == 0 else f"{failures} unreachable pairs")
        if failures:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
