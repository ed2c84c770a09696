"""diyc-cni driven by podman (Debian's 4.3, root, network_backend "cni").

One podman setup, one diycd and one imported busybox image serve the whole
module (podman's start-up is the slow part); every test makes and removes
its own containers. Podman runs with private configuration, storage and
/var (see podman_support), and the last test proves the host's /etc, /var
and podman's default run directories were left alone. Each test asserts the
verbs podman made the plugin run, as the recording wrapper logged them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from diyc.client import Client
from diyc.daemon import DiycdProcess
from diyc.images import write_busybox_tar
from cni_client_support import HostFiles, RecordingPluginDir, plugin_binary, write_conflist
from diycd_support import RunNames, diyc_links, eventually, nft
from podman_support import Podman, podman_available

pytestmark = pytest.mark.root

IMAGE = "localhost/diyc-busybox:latest"


@dataclass
class PodmanSetup:
    podman: Podman
    plugins: RecordingPluginDir
    diycd: DiycdProcess
    client: Client
    names: RunNames
    nft_table: str
    network: str  # created through diycd's client, then named in a conflist
    second_network: str  # created by the plugin's first ADD from the conflist's subnet
    host_files: HostFiles

    def container(self, tag: str) -> str:
        return f"{self.names.prefix}-{tag}"

    def verbs(self) -> list[str]:
        """Verbs since the last call, without the VERSION queries podman sends before each operation."""
        return [verb for verb in self.plugins.take_verbs() if verb != "VERSION"]

    def attachments(self, network: str, container: str) -> list:
        container_id = self.podman.inspect(container)["Id"]
        return [a for a in self.client.list_attachments(network) if a.key == container_id]


@pytest.fixture(scope="module")
def setup(diycd_binary: str, diycd_root: Path, names: RunNames, nft_table: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanSetup]:
    from diyc.pytest_plugin import require_root

    require_root()
    missing = podman_available()
    if missing:
        pytest.skip(missing)
    plugin = plugin_binary()
    host_files = HostFiles()
    scratch = tmp_path_factory.mktemp("podman")
    state = diycd_root / "podman"
    diycd = DiycdProcess(diycd_binary, socket=str(state / "run" / "diyc.sock"), state_dir=str(state / "state"),
                         extra_args=["--nft-table", nft_table])
    diycd.start(timeout=15)
    plugins = RecordingPluginDir(scratch / "cni-bin", plugin)
    podman = Podman(scratch / "podman", plugins, cgroup_parent=f"{names.prefix}-podman")
    problems: list[str] = []
    try:
        with diycd.client() as client:
            network, second = names.network(), names.network()
            client.create_network(network, str(names.subnet24()), bridge=names.bridge())
            write_conflist(podman.network_dir, network,
                           [{"type": "diyc", "network": network, "socket": diycd.socket}])
            write_conflist(podman.network_dir, second,
                           [{"type": "diyc", "network": second, "socket": diycd.socket,
                             "subnet": str(names.subnet24()), "bridge": names.bridge()}])
            podman.import_image(write_busybox_tar(scratch / "busybox.tar"), IMAGE)
            yield PodmanSetup(podman, plugins, diycd, client, names, nft_table, network, second, host_files)
            problems += podman.close()
            leftover = [f"{a.network}: {a.key} {a.ifname}" for a in client.list_attachments()]
            if leftover:
                problems.append("attachments outlived their containers: " + ", ".join(leftover))
            for net in client.list_networks():
                client.delete_network(net.name, force=True)
    finally:
        problems += podman.close()  # a no-op unless setting up or the test run failed
        diycd.stop()
        links = diyc_links(names.prefix)
        if links:
            problems.append("host links remained: " + ", ".join(sorted(links)))
    if problems:
        pytest.fail("podman teardown:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture(autouse=True)
def fresh(setup: PodmanSetup) -> Iterator[None]:
    """Each test starts with an empty call log and leaves no container behind, even when it fails."""
    setup.plugins.take_calls()
    yield
    setup.podman.run("rm", "--all", "--force", "--time", "0", check=False)
    setup.plugins.take_calls()


def ping(setup: PodmanSetup, container: str, address: str) -> None:
    done = setup.podman.exec(container, "ping", "-c", "1", "-W", "2", address, check=False)
    assert done.returncode == 0, f"{container} cannot reach {address}:\n{done.stdout}{done.stderr}"


def interfaces(setup: PodmanSetup, container: str) -> set[str]:
    return set(setup.podman.exec(container, "ls", "/sys/class/net").stdout.split())


def test_two_containers_on_a_diyc_network_ping_each_other(setup: PodmanSetup) -> None:
    first, second = setup.container("ping1"), setup.container("ping2")
    setup.podman.run_container(first, IMAGE, "--network", setup.network)
    setup.podman.run_container(second, IMAGE, "--network", setup.network)
    calls = [call for call in setup.plugins.take_calls() if call.command != "VERSION"]
    assert [(c.command, c.ifname) for c in calls] == [("ADD", "eth0"), ("ADD", "eth0")]
    assert "K8S_POD_NAME=" + first in calls[0].args

    ping(setup, first, setup.podman.address(second, setup.network))
    ping(setup, second, setup.podman.address(first, setup.network))
    # The attachment is diycd's: keyed by podman's container id, with podman's address.
    (attachment,) = setup.attachments(setup.network, first)
    assert attachment.ifname == "eth0"
    assert ipaddress.ip_interface(attachment.ip).ip == ipaddress.ip_address(setup.podman.address(first, setup.network))
    assert attachment.netns_path == setup.podman.sandbox(first)

    setup.podman.run("rm", "--force", "--time", "0", first, second)
    assert setup.verbs() == ["DEL", "DEL"]
    assert setup.client.list_attachments(setup.network) == []


def test_network_connect_and_disconnect(setup: PodmanSetup) -> None:
    container, peer = setup.container("conn1"), setup.container("conn2")
    setup.podman.run_container(container, IMAGE, "--network", setup.network)
    setup.podman.run_container(peer, IMAGE, "--network", setup.second_network)
    setup.plugins.take_calls()
    assert interfaces(setup, container) == {"lo", "eth0"}

    setup.podman.run("network", "connect", setup.second_network, container)
    calls = [call for call in setup.plugins.take_calls() if call.command != "VERSION"]
    assert [(c.command, c.ifname) for c in calls] == [("ADD", "eth1")]
    assert interfaces(setup, container) == {"lo", "eth0", "eth1"}
    (attachment,) = setup.attachments(setup.second_network, container)
    assert attachment.ifname == "eth1"
    ping(setup, container, setup.podman.address(peer, setup.second_network))

    setup.podman.run("network", "disconnect", setup.second_network, container)
    calls = [call for call in setup.plugins.take_calls() if call.command != "VERSION"]
    assert [(c.command, c.ifname) for c in calls] == [("DEL", "eth1")]
    assert interfaces(setup, container) == {"lo", "eth0"}
    assert setup.attachments(setup.second_network, container) == []
    assert eventually(lambda: not Path(f"/sys/class/net/{attachment.host_ifname}").exists())
    assert len(setup.attachments(setup.network, container)) == 1  # eth0 untouched

    setup.podman.run("rm", "--force", "--time", "0", container, peer)
    assert setup.verbs() == ["DEL", "DEL"]


def test_restart_moves_the_attachment_to_the_new_namespace(setup: PodmanSetup) -> None:
    container, peer = setup.container("rst1"), setup.container("rst2")
    setup.podman.run_container(container, IMAGE, "--network", setup.network)
    setup.podman.run_container(peer, IMAGE, "--network", setup.network)
    (before,) = setup.attachments(setup.network, container)
    setup.plugins.take_calls()

    setup.podman.run("restart", "--time", "0", container)
    calls = [call for call in setup.plugins.take_calls() if call.command != "VERSION"]
    assert [(c.command, c.ifname) for c in calls] == [("DEL", "eth0"), ("ADD", "eth0")]
    (after,) = setup.attachments(setup.network, container)
    assert after.netns_path == setup.podman.sandbox(container) == calls[1].netns
    assert not Path(calls[0].netns).exists() or calls[0].netns == calls[1].netns
    assert eventually(lambda: after.host_ifname == before.host_ifname
                      or not Path(f"/sys/class/net/{before.host_ifname}").exists())
    ping(setup, container, setup.podman.address(peer, setup.network))
    ping(setup, peer, setup.podman.address(container, setup.network))

    setup.podman.run("stop", "--time", "0", container)
    assert setup.verbs() == ["DEL"]
    assert setup.attachments(setup.network, container) == []
    setup.podman.run("start", container)
    assert setup.verbs() == ["ADD"]
    ping(setup, peer, setup.podman.address(container, setup.network))

    setup.podman.run("rm", "--force", "--time", "0", container, peer)
    assert setup.verbs() == ["DEL", "DEL"]


def test_static_ip_and_rm_leaves_nothing_behind(setup: PodmanSetup) -> None:
    container = setup.container("rm1")
    subnet = ipaddress.ip_network(setup.client.get_network(setup.network).subnet)
    wanted = str(subnet.network_address + 99)
    ruleset = nft("list", "table", "inet", setup.nft_table).stdout
    setup.podman.run_container(container, IMAGE, "--network", setup.network, "--ip", wanted)
    calls = [call for call in setup.plugins.take_calls() if call.command != "VERSION"]
    assert [c.command for c in calls] == ["ADD"] and f"IP={wanted}" in calls[0].args.split(";")
    assert setup.podman.address(container, setup.network) == wanted
    (attachment,) = setup.attachments(setup.network, container)
    assert ipaddress.ip_interface(attachment.ip).ip == ipaddress.ip_address(wanted)
    sandbox = setup.podman.sandbox(container)
    assert Path(sandbox).exists() and Path(f"/sys/class/net/{attachment.host_ifname}").exists()

    setup.podman.run("rm", "--force", "--time", "0", container)
    assert setup.verbs() == ["DEL"]
    assert setup.client.list_attachments(setup.network) == []
    assert eventually(lambda: not Path(f"/sys/class/net/{attachment.host_ifname}").exists())
    assert not Path(sandbox).exists(), "podman's network namespace outlived the container"
    assert nft("list", "table", "inet", setup.nft_table).stdout == ruleset
    # The address is free again.
    setup.podman.run_container(container, IMAGE, "--network", setup.network, "--ip", wanted)
    setup.podman.run("rm", "--force", "--time", "0", container)
    assert setup.verbs() == ["ADD", "DEL"]


def test_podman_left_the_hosts_etc_and_var_alone(setup: PodmanSetup) -> None:
    info = setup.podman.run("info", "--format",
                            "{{.Host.NetworkBackend}} {{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}} "
                            "{{.Store.GraphRoot}}").stdout.split()
    assert info[:3] == ["cni", "runc", "cgroupfs"]
    assert info[3].startswith(str(setup.podman.scratch))
    assert setup.host_files.changes() == []
    # What would otherwise have landed in the host's /var.
    written = setup.podman.private_var.written()
    assert "/var/lib/cni" in written, written
