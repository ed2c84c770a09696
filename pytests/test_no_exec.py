"""The core never shells out: no C++ source outside tests runs `ip`, `nft`,
`iptables`, `sh` or the like, and nothing calls system() or popen().

diyc does every one of those jobs through netlink, libnftables and system
calls. (The container runtime does exec: its own init helper and the
container's command, never a tool to configure the host.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("netcore", "server", "bindings", "cni")
SUFFIXES = {".c", ".cc", ".cpp", ".h", ".hpp"}

SHELL_CALL = re.compile(r"\b(system|popen|wordexp)\s*\(")
_TOOLS = (r"(ip|iptables|ip6tables|iptables-restore|nft|sh|bash|dash|sysctl|mount|umount|tc|bridge|brctl|"
          r"ifconfig|route|modprobe|ethtool)")
# A tool named by path anywhere, or by bare name in an exec/spawn call.
# (A bare "mount" elsewhere is data, e.g. a system call name for seccomp.)
FORBIDDEN_PROGRAM = re.compile(r'"(?:/usr)?/s?bin/' + _TOOLS + r'"|\b(exec[lv]p?e?|posix_spawnp?)\s*\([^;]*"'
                               + _TOOLS + r'"')


def _sources() -> list[Path]:
    files = []
    for top in SOURCE_DIRS:
        for path in (REPO / top).rglob("*"):
            if path.suffix in SUFFIXES and "tests" not in path.relative_to(REPO).parts \
                    and "testing" not in path.relative_to(REPO).parts:
                files.append(path)
    return sorted(files)


def _code_lines(path: Path):
    in_block_comment = False
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        code = line
        if in_block_comment:
            if "*/" not in code:
                continue
            code = code.split("*/", 1)[1]
            in_block_comment = False
        if "/*" in code and "*/" not in code.split("/*", 1)[1]:
            in_block_comment = True
            code = code.split("/*", 1)[0]
        yield number, code.split("//", 1)[0]


def test_sources_are_found() -> None:
    # Guards the test itself: an empty scan would pass vacuously.
    names = {p.name for p in _sources()}
    assert {"link.cc", "netns.cc", "main.cc"} <= names


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_external_programs(path: Path) -> None:
    offences = []
    for number, code in _code_lines(path):
        if SHELL_CALL.search(code) or FORBIDDEN_PROGRAM.search(code):
            offences.append(f"{path.relative_to(REPO)}:{number}: {code.strip()}")
    assert not offences, "the core must not run external programs:\n" + "\n".join(offences)


def test_detector_catches_offences(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cc"
    bad.write_text('void f() { system("ip link add x type dummy"); execlp("/sbin/ip", "ip", nullptr); }\n'
                   '// system("fine in a comment")\n')
    lines = [code for _, code in _code_lines(bad)]
    assert SHELL_CALL.search(lines[0]) and FORBIDDEN_PROGRAM.search(lines[0])
    assert not SHELL_CALL.search(lines[1])
