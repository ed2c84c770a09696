#!/usr/bin/python3
"""ADD (and DEL) time of diyc-cni against the reference bridge + host-local plugins.

Each plugin is exec'd once per ADD into a fresh named namespace, as a
runtime does; the two plugins alternate so that both see the same host
load. diyc-cni talks to a private diycd started here (own socket, state
directory and nftables table). Everything made is removed at the end.

    sudo PYTHONPATH=bindings/python /usr/bin/python3 cni/measure_add.py [-n 50] [--plugin build/cni/diyc-cni]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from diyc.daemon import DiycdProcess

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path("/usr/lib/cni")
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def free_subnets(count: int) -> list[ipaddress.IPv4Network]:
    """/24s in 10.199-10.211 that no host route overlaps."""
    routes = subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"], capture_output=True, text=True,
                            check=True).stdout
    taken = []
    for route in json.loads(routes):
        dst = route.get("dst", "")
        if dst and dst != "default" and dst[0].isdigit():
            taken.append(ipaddress.ip_network(dst, strict=False))
    found = []
    for second in range(199, 212):
        for third in range(0, 256, 7):
            candidate = ipaddress.ip_network(f"10.{second}.{third}.0/24")
            if not any(candidate.overlaps(t) for t in taken):
                found.append(candidate)
                if len(found) == count:
                    return found
    raise SystemExit("no free /24 for the measurement")


def exec_plugin(binary: Path, command: str, config: dict, container_id: str, netns: str) -> float:
    """Runs one plugin verb; returns its wall time in milliseconds."""
    env = {"PATH": PATH, "CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": f"/run/netns/{netns}",
           "CNI_IFNAME": "eth0", "CNI_PATH": f"{binary.parent}:{REFERENCE}"}
    start = time.perf_counter()
    done = subprocess.run([str(binary)], input=json.dumps(config), env=env, capture_output=True, text=True,
                          check=False)
    elapsed = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{binary.name} {command} {container_id}: {done.stdout or done.stderr}")
    return elapsed


def summary(label: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return (f"{label:28s} median {statistics.median(samples):7.2f} ms   p90 {p90:7.2f} ms   "
            f"mean {statistics.mean(samples):7.2f} ms   min {ordered[0]:6.2f} ms   (n={len(samples)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="ADDs per plugin (default 50)")
    parser.add_argument("--plugin", type=Path, default=Path(os.environ.get("DIYC_CNI", REPO / "build/cni/diyc-cni")))
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    tag = f"cnb{os.getpid() % 100000}"
    scratch = Path(tempfile.mkdtemp(prefix=f"{tag}-"))
    scratch.chmod(0o755)
    diycd = DiycdProcess(socket=str(scratch / "run" / "diyc.sock"), state_dir=str(scratch / "state"),
                         extra_args=["--nft-table", f"diyc_{tag}"])
    diyc_subnet, bridge_subnet = free_subnets(2)
    diyc_conf = {"cniVersion": "1.1.0", "name": f"{tag}-diyc", "type": "diyc", "socket": diycd.socket,
                 "subnet": str(diyc_subnet), "bridge": f"{tag}d"}
    bridge_conf = {"cniVersion": "1.0.0", "name": f"{tag}-ref", "type": "bridge", "bridge": f"{tag}r",
                   "isGateway": True, "ipMasq": False,
                   "ipam": {"type": "host-local", "ranges": [[{"subnet": str(bridge_subnet)}]],
                            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(scratch / "host-local")}}
    plugins = [("diyc-cni (via diycd)", args.plugin, diyc_conf), ("bridge + host-local", REFERENCE / "bridge", bridge_conf)]
    made: list[str] = []
    times = {label: {"ADD": [], "DEL": []} for label, _, _ in plugins}
    diycd.start(timeout=15)
    try:
        for i in range(args.n + 1):  # the first round (bridge creation, network creation) is not counted
            for label, binary, conf in plugins:
                netns = f"{tag}-{'d' if binary == args.plugin else 'r'}{i}"
                subprocess.run(["ip", "netns", "add", netns], check=True)
                made.append(netns)
                elapsed = exec_plugin(binary, "ADD", conf, netns, netns)
                if i:
                    times[label]["ADD"].append(elapsed)
        for i in range(args.n + 1):
            for label, binary, conf in plugins:
                netns = f"{tag}-{'d' if binary == args.plugin else 'r'}{i}"
                elapsed = exec_plugin(binary, "DEL", conf, netns, netns)
                if i:
                    times[label]["DEL"].append(elapsed)
        # Where diyc-cni's time goes: process start alone (VERSION), start
        # plus one round trip to diycd (STATUS), against the Go plugin's start.
        for _ in range(args.n):
            for label, binary, conf in plugins:
                times[label].setdefault("VERSION", []).append(exec_plugin(binary, "VERSION", conf, "x", "x"))
            times[plugins[0][0]].setdefault("STATUS", []).append(exec_plugin(args.plugin, "STATUS", diyc_conf, "x", "x"))
    finally:
        for netns in made:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
        with diycd.client() as client:
            for network in client.list_networks():
                client.delete_network(network.name, force=True)
        diycd.stop()
        subprocess.run(["ip", "link", "del", f"{tag}r"], capture_output=True, check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    for label, _, _ in plugins:
        for verb, samples in times[label].items():
            print(summary(f"{verb} {label}", samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
