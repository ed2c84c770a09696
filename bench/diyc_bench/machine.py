"""Where and with what the numbers were taken, recorded next to them.

Latencies mean little without the machine (cores, kernel, how loaded it
was) and the versions of every peer, so both go into results.json.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["binary_fingerprints", "loadavg", "machine_info", "versions"]


def _output(argv: list[str], *, input: bytes | None = None, env: dict[str, str] | None = None,
            stderr: bool = False) -> str:
    """A program's stdout (and stderr if asked), or "" if it cannot run: version probes never fail the run."""
    try:
        done = subprocess.run(argv, input=input, env=env, capture_output=True, timeout=30, check=False)
    except OSError:
        return ""
    return (done.stdout + (done.stderr if stderr else b"")).decode(errors="replace").strip()


def loadavg() -> str:
    with open("/proc/loadavg", encoding="ascii") as f:
        return " ".join(f.read().split()[:3])


def _cpu_model() -> str:
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def machine_info() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "os": _os_release(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_start": loadavg(),
        # Other load competes less with a negative nice (sudo nice -n -10 bench/run.sh).
        "nice": os.nice(0),
    }


def _os_release() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _dpkg_version(package: str) -> str:
    return _output(["dpkg-query", "-W", "-f", "${Version}", package])


def binary_fingerprints(build_dir: Path) -> dict[str, str]:
    """sha256 of diycd and diyc-init: tells whether a rebuild happened during the run."""
    found = {}
    for name in ("diycd", "diyc-init"):
        path = build_dir / "server" / name
        found[name] = _sha256(path) if path.exists() else ""
    return found


def versions(repo: Path, diycd: Path, cni_plugin: Path) -> dict[str, Any]:
    """diyc's commit and binary, runc, the CNI plugins (package and protocol), iproute2, Python."""
    cni_env = {"CNI_COMMAND": "VERSION", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    cni_raw = _output([str(cni_plugin)], input=b'{"cniVersion":"1.0.0"}', env=cni_env)
    try:
        cni_version: Any = json.loads(cni_raw)
    except json.JSONDecodeError:
        cni_version = {"raw": cni_raw}
    runc = _output(["runc", "--version"])
    return {
        "diyc_commit": _output(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"]),
        "diyc_dirty": bool(_output(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"])),
        "diycd_binary": str(diycd),
        "diycd_sha256": _sha256(diycd),
        "diyc_init_sha256": _sha256(diycd.parent / "diyc-init"),
        "diycd_mtime": datetime.datetime.fromtimestamp(diycd.stat().st_mtime, datetime.timezone.utc)
        .isoformat(timespec="seconds"),
        "runc": runc.splitlines()[0].removeprefix("runc version ") if runc else "",
        "runc_version_full": runc,
        "runc_package": _dpkg_version("runc"),
        "cni_version": cni_version,
        "cni_plugin_about": _output([str(cni_plugin), "--version"], stderr=True),
        "cni_plugins_package": _dpkg_version("containernetworking-plugins"),
        "iproute2": _output(["ip", "-V"]),
        "python": platform.python_version(),
        "grpcio": _module_version("grpc"),
        "matplotlib": _module_version("matplotlib"),
    }


def _module_version(name: str) -> str:
    try:
        module = __import__(name)
    except ImportError:
        return ""
    return str(getattr(module, "__version__", ""))
