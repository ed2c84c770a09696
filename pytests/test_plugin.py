"""The pytest plugin itself: names, root skipping, cleanup on failure, leak guard."""

from __future__ import annotations

import ipaddress
import os
import shutil
from pathlib import Path

import pytest

import diyc
import diyc.pytest_plugin as plugin
from diyc.pytest_plugin import CleanupRegistry, HostSnapshot, NameAllocator

PACKAGE_ROOT = str(Path(diyc.__file__).resolve().parent.parent)


def test_names_are_short_unique_and_prefixed() -> None:
    names = NameAllocator()
    generated = [names.netns() for _ in range(500)] + [names.link(tag) for tag in "bvpl" * 125]
    assert len(set(generated)) == len(generated)
    assert all(name.startswith(names.prefix) for name in generated)
    assert max(len(name.encode()) for name in generated) <= plugin.MAX_IFNAME_LEN
    for name in generated:
        diyc.validate_ifname(name)
        diyc.validate_netns_name(name)


def test_subnets_are_private_and_distinct() -> None:
    names = NameAllocator()
    v4 = [names.subnet4() for _ in range(300)]
    v6 = [names.subnet6() for _ in range(300)]
    assert len(set(v4)) == 300 and len(set(v6)) == 300
    assert all(net.subnet_of(ipaddress.IPv4Network("10.0.0.0/8")) and net.prefixlen == 24 for net in v4)
    assert all(net.subnet_of(ipaddress.IPv6Network("fd00:77::/32")) and net.prefixlen == 64 for net in v6)


def test_prefix_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIYC_TEST_PREFIX", "zq7")
    assert NameAllocator().netns().startswith("zq7n")
    monkeypatch.setenv("DIYC_TEST_PREFIX", "way-too-long-prefix")
    with pytest.raises(pytest.UsageError):
        NameAllocator()


def test_cleanup_runs_everything_and_reports_failures() -> None:
    registry = CleanupRegistry()
    ran: list[str] = []
    registry.add("first", lambda: ran.append("first"))
    registry.add("broken", lambda: 1 / 0)
    registry.add("last", lambda: ran.append("last"))
    errors = registry.run()
    assert ran == ["last", "first"]
    assert len(errors) == 1 and "broken" in errors[0] and "ZeroDivisionError" in errors[0]
    assert registry.run() == []


def _snapshot(links: set[str], entries: set[str], mounts: dict[str, int], fds: dict[int, str]) -> HostSnapshot:
    return HostSnapshot(frozenset(links), frozenset(entries), tuple(sorted(mounts.items())), tuple(sorted(fds.items())))


def test_snapshot_diff_names_every_kind_of_leak() -> None:
    before = _snapshot({"lo", "eth0"}, {"old"}, {"/run/netns/old": 1}, {})
    after = _snapshot(
        {"lo", "eth0", "dtx1b1", "other0"},
        {"old", "dtx1n2"},
        {"/run/netns": 1, "/run/netns/old": 1, "/run/netns/dtx1n2": 1},
        {9: "net:[4026532999]"},
    )
    assert after.leaks_since(before) == [
        "host link dtx1b1",
        "host link other0",
        "/run/netns/dtx1n2",
        "mount on /run/netns/dtx1n2 (x1)",
        "fd 9 -> net:[4026532999]",
    ]
    assert after.leaks_since(before, prefix="dtx1") == [
        "host link dtx1b1",
        "/run/netns/dtx1n2",
        "mount on /run/netns/dtx1n2 (x1)",
        "fd 9 -> net:[4026532999]",
    ]
    # Removals are not leaks, and a single self-mount of /run/netns is allowed, a second is not.
    assert before.leaks_since(after) == []
    twice = _snapshot({"lo", "eth0"}, {"old"}, {"/run/netns": 2, "/run/netns/old": 1}, {})
    assert twice.leaks_since(before) == ["mount on /run/netns (x1)"]


def test_host_snapshot_sees_this_host() -> None:
    snapshot = HostSnapshot.capture()
    assert "lo" in snapshot.links
    assert snapshot.leaks_since(snapshot) == []


@pytest.mark.root
def test_track_refuses_existing_names(netns: diyc.NetNS) -> None:
    registry = CleanupRegistry()
    with pytest.raises(RuntimeError):
        registry.track_netns(netns.name)
    with pytest.raises(RuntimeError):
        registry.track_link("lo")
    assert registry.run() == []


def test_root_marker_skips_without_root(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "have_root", lambda: False)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.root
        def test_marked():
            raise AssertionError("must not run")

        def test_fixture_needs_root(make_netns):
            make_netns()
            raise AssertionError("must not run")

        def test_plain():
            pass
        """
    )
    result = pytester.runpytest_inprocess("-p", "diyc.pytest_plugin", "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*needs root*"])


def _inner_env(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [PACKAGE_ROOT, os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("DIYC_TEST_PREFIX", prefix)


def _leftovers(prefix: str) -> list[str]:
    with diyc.IPRoute() as host:
        links = [link.name for link in host.links() if link.name.startswith(prefix)]
    return links + [name for name in diyc.NetNS.list() if name.startswith(prefix)]


@pytest.mark.root
@pytest.mark.parametrize(
    ("ending", "exit_code"),
    [
        ("raise AssertionError('test failed')", 1),
        ("raise KeyboardInterrupt", 2),
        ("os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)", 2),
    ],
    ids=["failure", "keyboard-interrupt", "sigterm"],
)
def test_fixtures_clean_up_after_abrupt_endings(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    diyc_names: NameAllocator,
    ending: str,
    exit_code: int,
) -> None:
    prefix = f"{diyc_names.prefix[:6]}i"
    _inner_env(monkeypatch, prefix)
    pytester.makepyfile(
        f"""
        import os, signal, time
        import diyc

        def test_builds_then_dies(make_star, make_p2p, make_bridge, veth_pair):
            star = make_star(2, ipv6=True)
            make_p2p()
            make_bridge()
            assert len(diyc.NetNS.list()) >= 5
            {ending}
        """
    )
    try:
        result = pytester.runpytest_subprocess("-p", "diyc.pytest_plugin", timeout=120)
        assert result.ret == exit_code, result.stdout.str()
        assert _leftovers(prefix) == []
    finally:
        _remove_leftovers(prefix)


@pytest.mark.root
def test_leak_guard_fails_the_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, diyc_names: NameAllocator
) -> None:
    ip = shutil.which("ip")
    if ip is None:
        pytest.skip("needs iproute2 to leak something on purpose")
    prefix = f"{diyc_names.prefix[:6]}k"
    _inner_env(monkeypatch, prefix)
    pytester.makeconftest(
        """
        import pytest
        from diyc.pytest_plugin import guard_host_state

        @pytest.fixture(scope="session", autouse=True)
        def _host_leak_guard():
            yield from guard_host_state(settle=0.5)
        """
    )
    pytester.makepyfile(
        f"""
        import subprocess

        def test_leaks():
            subprocess.run([{ip!r}, "netns", "add", "{prefix}ns"], check=True)
            subprocess.run([{ip!r}, "link", "add", "{prefix}dum", "type", "bridge"], check=True)
        """
    )
    try:
        result = pytester.runpytest_subprocess("-p", "diyc.pytest_plugin", timeout=120)
        assert result.ret == 1
        output = result.stdout.str()
        assert "leaked host state" in output
        assert f"host link {prefix}dum" in output
        assert f"/run/netns/{prefix}ns" in output
        result.assert_outcomes(passed=1, errors=1)
    finally:
        _remove_leftovers(prefix)
    assert _leftovers(prefix) == []


def _remove_leftovers(prefix: str) -> None:
    """Removes what an inner run left under its own (unique) prefix."""
    with diyc.IPRoute() as host:
        for link in host.links():
            if link.name.startswith(prefix):
                host.link_del(link.name)
    for name in diyc.NetNS.list():
        if name.startswith(prefix):
            with diyc.NetNS.open(name) as ns:
                ns.remove()
