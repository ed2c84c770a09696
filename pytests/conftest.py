"""Suite-wide wiring: the diyc plugin, iproute2 witnesses and the leak guard.

The plugin is registered from pytest_configure rather than ``pytest_plugins``
so the suite runs the same whether pytest is started from the repository root
(``pytest``, via testpaths) or with an explicit path, with or without
``-p diyc.pytest_plugin``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from iptool import IpTool


def pytest_configure(config: pytest.Config) -> None:
    for plugin in ("diyc.pytest_plugin", "pytester"):
        if not config.pluginmanager.has_plugin(plugin) and not config.pluginmanager.has_plugin(
            f"_pytest.{plugin}"
        ):
            config.pluginmanager.import_plugin(plugin)


@pytest.fixture(scope="session", autouse=True)
def _host_leak_guard() -> Iterator[None]:
    """Fails the session when host links, /run/netns entries or mounts leak.

    Torn down after every other fixture, so it sees the state after all test
    cleanup; a leak surfaces as an error at teardown of the last test and a
    non-zero exit status.  It compares the whole host namespace, so other
    programs creating links meanwhile would count too: DIYC_LEAK_CHECK=prefix
    narrows it to names carrying this run's prefix.
    """
    from diyc.pytest_plugin import guard_host_state, leak_check_prefix

    yield from guard_host_state(prefix=leak_check_prefix())


@pytest.fixture(scope="session")
def iproute2() -> IpTool:
    """The `ip` and `ping` programs, for cross-checking diyc's answers."""
    ip = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin")
    if ip is None:
        pytest.skip("iproute2 `ip` is not installed")
    return IpTool(ip=ip, ping_binary=shutil.which("ping") or shutil.which("ping", path="/usr/bin:/bin"))
