"""A typed client of diycd, the diyc node agent, over gRPC.

    with diyc.client.Client() as node:            # unix:/run/diyc/diyc.sock
        net = node.create_network("web", "10.88.0.0/24")
        att = node.attach("web", netns="c1")
        print(att.ip, att.host_ifname)

        node.import_image("busybox", directory="/srv/rootfs/busybox")
        node.run_container("busybox", ["ping", "-c", "1", att.ip.split("/")[0]],
                           name="p1", networks=["web"], memory_bytes=64 << 20)
        for chunk in node.container_logs("p1", follow=True):
            print(chunk.data.decode(), end="")
        print(node.wait_container("p1").exit_code)
        node.remove_container("p1")

Every failed call raises the :mod:`diyc.errors` exception of its status code
(``NotFoundError`` for NOT_FOUND, ...), so callers never see ``grpc.RpcError``.
Every unary call carries a deadline, stretched by what the server may
legitimately spend on it (a stop's grace period, an image import); the
streams (events, followed logs) and ``wait_container`` run until they end or
are cancelled unless given a timeout.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Generic, TypeAlias, TypeVar

import grpc

from .errors import (
    DiycError,
    InvalidArgumentError,
    PermissionDeniedError,
    UnavailableError,
    error_for_code,
)
from .v1 import container_pb2, events_pb2, network_pb2, node_pb2_grpc

__all__ = [
    "DEFAULT_SOCKET",
    "SOCKET_ENV",
    "Client",
    "EventStream",
    "LogStream",
    "NetworkSpec",
    "default_socket",
]

DEFAULT_SOCKET = "/run/diyc/diyc.sock"
SOCKET_ENV = "DIYC_SOCKET"
DEFAULT_TIMEOUT = 30.0

# The default count and per-reply wait of a probe (see ProbeRequest).
_PROBE_DEFAULT_COUNT = 1
_PROBE_DEFAULT_TIMEOUT_MS = 1000
# A matrix probe pings every pair of a network's attachments; their number is
# unknown up front, so its deadline allows for this many pairs in a row.
_PROBE_MATRIX_PAIRS = 30

# What diycd may spend on a request before answering, on top of the client's
# own deadline: diyc-init has this long to start a command, a container that
# outlives SIGKILL is given this long to go, a forced removal first waits
# this long after SIGKILL, and an import copies a whole root filesystem.
_SERVER_START_TIMEOUT = 30.0
_SERVER_KILL_WAIT = 10.0
_SERVER_REMOVE_GRACE = 5.0
_IMPORT_TIMEOUT = 600.0
# StopContainer treats 0 as its default grace period of 10 seconds.
_DEFAULT_STOP_TIMEOUT = 10

_Response = TypeVar("_Response")
_Item = TypeVar("_Item")

#: One network of ``run_container``: "NET", "NET:IP" or (NET, IP).
NetworkSpec: TypeAlias = "str | tuple[str, str | None]"


def default_socket() -> str:
    """The unix socket diycd listens on: $DIYC_SOCKET, else /run/diyc/diyc.sock."""
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read {what} {path!r}: {exc.strerror}", errno=exc.errno) from exc


def _target_fields(*, netns: str | None, netns_path: str | None, pid: int | None,
                   container: str | None, what: str, required: bool = True) -> dict[str, Any]:
    """The oneof target/source of a request, as keyword arguments.

    Exactly one target names the namespace; giving two is always a mistake
    and is refused before anything is sent.
    """
    given = {
        key: value
        for key, value in (("netns_name", netns), ("netns_path", netns_path), ("pid", pid), ("container", container))
        if value is not None
    }
    if len(given) > 1 or (required and not given):
        raise InvalidArgumentError(f"{what} takes exactly one of netns, netns_path, pid or container")
    return given


def _network_entry(spec: NetworkSpec) -> container_pb2.ContainerNetwork:
    """One ContainerNetwork from "NET", "NET:IP" or (NET, IP).

    Network names cannot hold ':', so everything after the first one is the
    address (which keeps an IPv6 address whole).
    """
    if isinstance(spec, str):
        network, _, ip = spec.partition(":")
    elif isinstance(spec, tuple) and len(spec) == 2:
        network, ip = spec[0], spec[1] or ""
    else:
        raise InvalidArgumentError(f"a container network is 'NET', 'NET:IP' or (NET, IP), not {spec!r}")
    if not network:
        raise InvalidArgumentError(f"container network {spec!r} names no network")
    return container_pb2.ContainerNetwork(network=network, ip=ip)


class _Stream(Generic[_Item]):
    """A server stream of diycd: iterate for its messages, ``cancel()`` to stop.

    Cancelling (from any thread) ends the iteration cleanly; every other
    failure raises the matching :class:`~diyc.errors.DiycError`.
    """

    def __init__(self, call: Any, convert: Callable[[grpc.RpcError], DiycError]) -> None:
        self._call = call
        self._convert = convert
        self._cancelled = threading.Event()

    def __iter__(self) -> _Stream[_Item]:
        return self

    def __next__(self) -> _Item:
        try:
            return next(self._call)
        except grpc.RpcError as exc:
            if self._cancelled.is_set() or exc.code() == grpc.StatusCode.CANCELLED:
                raise StopIteration from None
            raise self._convert(exc) from None

    def cancel(self) -> None:
        self._cancelled.set()
        self._call.cancel()

    def __enter__(self) -> _Stream[_Item]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cancel()


class EventStream(_Stream[events_pb2.Event]):
    """The Events stream of diycd: iterate for events, ``cancel()`` to stop."""


class LogStream(_Stream[container_pb2.LogChunk]):
    """A container's output as LogChunks (stdout and stderr in the order written).

    Without follow it ends after what was written so far; with follow, once
    the container has exited and its last output was sent. ``cancel()`` ends
    it early.
    """


class Client:
    """A connection to diycd, on its unix socket or on TCP with TLS.

    Args:
        socket: unix socket path; default $DIYC_SOCKET, else /run/diyc/diyc.sock.
        host: ``HOST:PORT`` of a diycd listening on TCP. TCP is always TLS:
            the node agent rewires the host's network, so it is never offered
            in clear text.
        tls_ca: PEM file of the CA that signed diycd's certificate (default:
            the system's roots).
        tls_cert, tls_key: PEM client certificate and key, for a diycd that
            requires client certificates.
        timeout: deadline of every unary call, in seconds.
    """

    def __init__(
        self,
        socket: str | None = None,
        *,
        host: str | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if timeout <= 0:
            raise InvalidArgumentError(f"timeout must be positive, not {timeout!r}")
        if host is not None and socket is not None:
            raise InvalidArgumentError("give either a unix socket or a TCP host, not both")
        if host is None and any(x is not None for x in (tls_ca, tls_cert, tls_key)):
            raise InvalidArgumentError("TLS options only apply to a TCP host")
        if (tls_cert is None) != (tls_key is None):
            raise InvalidArgumentError("a TLS client certificate needs its key, and a key its certificate")
        self.timeout = timeout
        self.socket: str | None = None
        if host is not None:
            self.target = host
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(tls_ca, "TLS CA") if tls_ca else None,
                private_key=_read(tls_key, "TLS key") if tls_key else None,
                certificate_chain=_read(tls_cert, "TLS certificate") if tls_cert else None,
            )
            self._channel = grpc.secure_channel(host, credentials)
        else:
            self.socket = socket or default_socket()
            self.target = f"unix:{self.socket}"
            self._channel = grpc.insecure_channel(self.target)
        self._stub = node_pb2_grpc.NodeStub(self._channel)

    # -- lifetime

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.target!r})"

    # -- networks

    def create_network(
        self,
        name: str,
        subnet: str,
        *,
        subnet6: str | None = None,
        gateway: str | None = None,
        bridge: str | None = None,
        nat: bool = True,
        internal: bool = False,
        mtu: int = 0,
        ip_range: str | None = None,
        vxlan_id: int | None = None,
        vxlan_port: int = 0,
        local: str | None = None,
        underlay_device: str | None = None,
        peers: Sequence[str] = (),
    ) -> network_pb2.Network:
        """Creates a bridged network; NAT is on unless ``nat=False`` or ``internal``.

        With ``vxlan_id`` the network spans nodes: give this node's underlay
        ``local`` address or ``underlay_device``, its share of the subnet as
        ``ip_range``, and the other nodes' underlay addresses as ``peers``.
        """
        request = network_pb2.CreateNetworkRequest(
            name=name, subnet=subnet, subnet6=subnet6 or "", gateway=gateway or "",
            bridge=bridge or "", nat=nat, internal=internal, mtu=mtu, ip_range=ip_range or "",
            peers=list(peers),
        )
        if vxlan_id is not None:
            request.vxlan.CopyFrom(network_pb2.Vxlan(id=vxlan_id, port=vxlan_port, local=local or "",
                                                     underlay_device=underlay_device or ""))
        return self._call(self._stub.CreateNetwork, request)

    def add_peer(self, network: str, address: str) -> network_pb2.Network:
        """Adds a peer node (its underlay address) to a spanning network; idempotent."""
        return self._call(self._stub.AddPeer, network_pb2.AddPeerRequest(network=network, address=address))

    def remove_peer(self, network: str, address: str) -> network_pb2.Network:
        """Removes a peer node from a spanning network; idempotent."""
        return self._call(self._stub.RemovePeer, network_pb2.RemovePeerRequest(network=network, address=address))

    def delete_network(self, name: str, force: bool = False) -> None:
        """Deletes a network; ``force`` detaches its attachments first."""
        self._call(self._stub.DeleteNetwork, network_pb2.DeleteNetworkRequest(name=name, force=force))

    def get_network(self, name: str) -> network_pb2.Network:
        return self._call(self._stub.GetNetwork, network_pb2.GetNetworkRequest(name=name))

    def list_networks(self, *, page_size: int = 0) -> list[network_pb2.Network]:
        """Every network, fetched page by page."""
        networks: list[network_pb2.Network] = []
        for page in self._pages(lambda token: self._call(
                self._stub.ListNetworks, network_pb2.ListNetworksRequest(page_size=page_size, page_token=token))):
            networks.extend(page.networks)
        return networks

    # -- attachments

    def attach(
        self,
        network: str,
        *,
        netns: str | None = None,
        netns_path: str | None = None,
        pid: int | None = None,
        container: str | None = None,
        ip: str | None = None,
        ifname: str | None = None,
        mac: str | None = None,
        key: str | None = None,
    ) -> network_pb2.Attachment:
        """Joins one namespace (by name, path, pid or container) to a network.

        ``ip`` is a static address inside the subnet, without prefix length;
        by default diycd allocates one. ``key`` is the caller's own name for
        the attachment (a CNI container id), unique per network with ifname.
        """
        target = _target_fields(netns=netns, netns_path=netns_path, pid=pid, container=container, what="attach")
        request = network_pb2.AttachContainerRequest(
            network=network, ifname=ifname or "", ip=ip or "", mac=mac or "", key=key or "", **target)
        return self._call(self._stub.AttachContainer, request)

    def detach(
        self,
        network: str,
        *,
        netns: str | None = None,
        netns_path: str | None = None,
        pid: int | None = None,
        container: str | None = None,
        ifname: str | None = None,
        key: str | None = None,
    ) -> None:
        """Undoes an attach; detaching what is not attached succeeds.

        With ``key`` no target is needed: the attachment made with that key
        and ifname is detached, even after its namespace is gone.
        """
        target = _target_fields(netns=netns, netns_path=netns_path, pid=pid, container=container, what="detach",
                                required=key is None)
        request = network_pb2.DetachContainerRequest(network=network, ifname=ifname or "", key=key or "", **target)
        self._call(self._stub.DetachContainer, request)

    def list_attachments(self, network: str | None = None, *, page_size: int = 0,
                         key: str | None = None) -> list[network_pb2.Attachment]:
        """Every attachment (of one network, or of all; only those with ``key``), fetched page by page."""
        attachments: list[network_pb2.Attachment] = []
        for page in self._pages(lambda token: self._call(
                self._stub.ListAttachments,
                network_pb2.ListAttachmentsRequest(network=network or "", page_size=page_size, page_token=token,
                                                   key=key or ""))):
            attachments.extend(page.attachments)
        return attachments

    def collect_attachments(self, network: str,
                            valid: Iterable[tuple[str, str]] = ()) -> list[network_pb2.Attachment]:
        """Detaches the keyed attachments of ``network`` not in ``valid`` ((key, ifname) pairs); returns them."""
        request = network_pb2.CollectAttachmentsRequest(
            network=network,
            valid=[network_pb2.CollectAttachmentsRequest.Valid(key=key, ifname=ifname) for key, ifname in valid])
        return list(self._call(self._stub.CollectAttachments, request).detached)

    # -- diagnostics

    def check(self) -> list[network_pb2.Drift]:
        """Drift between diycd's records and the kernel; empty when in sync."""
        return list(self._call(self._stub.Check, network_pb2.CheckRequest()).drifts)

    def repair(self) -> network_pb2.RepairResponse:
        """Restores diyc's own objects; the reply pairs each drift with what was done."""
        return self._call(self._stub.Repair, network_pb2.RepairRequest())

    def probe(
        self,
        targets: Sequence[str] = (),
        *,
        network: str | None = None,
        netns: str | None = None,
        netns_path: str | None = None,
        pid: int | None = None,
        container: str | None = None,
        count: int = 0,
        timeout_ms: int = 0,
        deadline: float | None = None,
    ) -> list[network_pb2.ProbeResult]:
        """Pings targets from a namespace, or every pair of a network's attachments.

        With a source, ``targets`` and/or every attachment of ``network`` are
        pinged from it; with no source, ``network`` gives a reachability
        matrix. The deadline grows with the pings asked for unless given.
        """
        source = _target_fields(netns=netns, netns_path=netns_path, pid=pid, container=container,
                                what="probe", required=False)
        if not source and not network:
            raise InvalidArgumentError("probe needs a source namespace, a network, or both")
        if source and not targets and not network:
            raise InvalidArgumentError("probe from a namespace needs targets or a network")
        request = network_pb2.ProbeRequest(
            targets=list(targets), network=network or "", count=count, timeout_ms=timeout_ms, **source)
        if deadline is None:
            per_pair = (count or _PROBE_DEFAULT_COUNT) * (timeout_ms or _PROBE_DEFAULT_TIMEOUT_MS) / 1000
            pairs = len(targets) + (_PROBE_MATRIX_PAIRS if network else 0)
            deadline = self.timeout + per_pair * max(1, pairs)
        return list(self._call(self._stub.Probe, request, timeout=deadline).results)

    def events(self, network: str | None = None, *, container: str | None = None,
               timeout: float | None = None) -> EventStream:
        """Events from now on (of one network or container, or of all), until cancelled.

        The stream is meant to stay open, so unlike the unary calls it has no
        deadline unless ``timeout`` is given.
        """
        request = events_pb2.EventsRequest(network=network or "", container=container or "")
        call = self._stub.Events(request, timeout=timeout)
        return EventStream(call, self._convert)

    # -- images

    def import_image(self, name: str, *, directory: str | None = None,
                     tar_path: str | None = None) -> container_pb2.Image:
        """Copies a root filesystem on the node (a directory or a tar file) into an image.

        Paths are read by diycd on its host, so they must be absolute. The
        deadline allows for copying a large tree (at least ten minutes).
        """
        if (directory is None) == (tar_path is None):
            raise InvalidArgumentError("import_image takes exactly one of directory or tar_path")
        if directory is not None:
            request = container_pb2.ImportImageRequest(name=name, directory=directory)
        else:
            request = container_pb2.ImportImageRequest(name=name, tar_path=tar_path)
        return self._call(self._stub.ImportImage, request, timeout=max(self.timeout, _IMPORT_TIMEOUT))

    def list_images(self) -> list[container_pb2.Image]:
        return list(self._call(self._stub.ListImages, container_pb2.ListImagesRequest()).images)

    def remove_image(self, name: str) -> None:
        """Deletes an image; FailedPreconditionError while a container (even an exited one) uses it."""
        self._call(self._stub.RemoveImage, container_pb2.RemoveImageRequest(name=name))

    # -- containers

    def run_container(
        self,
        image: str,
        command: Sequence[str],
        *,
        name: str | None = None,
        env: Sequence[str] | Mapping[str, str] = (),
        workdir: str | None = None,
        hostname: str | None = None,
        networks: Sequence[NetworkSpec] = (),
        memory_bytes: int = 0,
        pids_limit: int = 0,
        cpus: float = 0.0,
    ) -> container_pb2.Container:
        """Starts ``command`` (argv, no shell) in a new container of ``image``.

        Returns once the command runs, attached to ``networks`` ("NET",
        "NET:IP" or (NET, IP); the first is eth0, the next eth1, ...). ``env``
        is "KEY=VALUE" entries or a mapping. Limits of 0 mean diycd's
        defaults: unlimited memory and CPU, 4096 pids. diycd picks a name
        when none is given.
        """
        if isinstance(command, (str, bytes)):
            raise InvalidArgumentError("command is a list of arguments (argv), not a string: there is no shell")
        entries = [f"{key}={value}" for key, value in env.items()] if isinstance(env, Mapping) else list(env)
        request = container_pb2.RunContainerRequest(
            name=name or "", image=image, command=list(command), env=entries, workdir=workdir or "",
            hostname=hostname or "", networks=[_network_entry(n) for n in networks],
            memory_bytes=memory_bytes, pids_limit=pids_limit, cpus=cpus,
        )
        return self._call(self._stub.RunContainer, request, timeout=self.timeout + _SERVER_START_TIMEOUT)

    def get_container(self, name: str) -> container_pb2.Container:
        """One container, with its current attachments."""
        return self._call(self._stub.GetContainer, container_pb2.GetContainerRequest(name=name))

    def list_containers(self, all: bool = False, *, page_size: int = 0) -> list[container_pb2.Container]:
        """Running containers (every one with ``all``), fetched page by page."""
        containers: list[container_pb2.Container] = []
        for page in self._pages(lambda token: self._call(
                self._stub.ListContainers,
                container_pb2.ListContainersRequest(all=all, page_size=page_size, page_token=token))):
            containers.extend(page.containers)
        return containers

    def wait_container(self, name: str, timeout: float | None = None) -> container_pb2.WaitContainerResponse:
        """Blocks until the container has exited; returns its exit code, signal and OOM flag.

        Without ``timeout`` it waits as long as the container runs. Ctrl-C
        (or any exception in the waiting thread) cancels the call on diycd.
        """
        future = self._stub.WaitContainer.future(container_pb2.WaitContainerRequest(name=name), timeout=timeout)
        try:
            return future.result()
        except grpc.RpcError as exc:
            if timeout is not None and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise DiycError(f"container {name!r} did not exit within {timeout:g}s",
                                code=exc.code().name) from None
            raise self._convert(exc) from None
        except BaseException:
            future.cancel()
            raise

    def stop_container(self, name: str, timeout_seconds: int = _DEFAULT_STOP_TIMEOUT, signal: int = 0) -> None:
        """Sends ``signal`` (default SIGTERM), then SIGKILL after ``timeout_seconds``.

        Returns once the container has exited; stopping an exited container
        succeeds. ``timeout_seconds`` is 1..3600 (0 means diycd's default, 10).
        """
        grace = timeout_seconds or _DEFAULT_STOP_TIMEOUT
        request = container_pb2.StopContainerRequest(name=name, timeout_seconds=timeout_seconds, signal=signal)
        self._call(self._stub.StopContainer, request, timeout=self.timeout + grace + _SERVER_KILL_WAIT)

    def remove_container(self, name: str, force: bool = False) -> None:
        """Deletes an exited container and everything it has on the host.

        A running one is refused with FailedPreconditionError unless
        ``force``, which kills it first.
        """
        request = container_pb2.RemoveContainerRequest(name=name, force=force)
        self._call(self._stub.RemoveContainer, request,
                   timeout=self.timeout + _SERVER_REMOVE_GRACE + _SERVER_KILL_WAIT)

    def container_logs(self, name: str, follow: bool = False, *, timeout: float | None = None) -> LogStream:
        """The container's output from its start, as a stream of LogChunks.

        With ``follow`` the stream goes on until the container exits. Like
        the event stream it has no deadline unless ``timeout`` is given;
        ``cancel()`` ends it.
        """
        call = self._stub.ContainerLogs(container_pb2.ContainerLogsRequest(name=name, follow=follow),
                                        timeout=timeout)
        return LogStream(call, self._convert)

    # -- plumbing

    def _call(self, method: Callable[..., _Response], request: Any, *, timeout: float | None = None) -> _Response:
        try:
            return method(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise self._convert(exc, timeout or self.timeout) from None

    @staticmethod
    def _pages(fetch: Callable[[str], Any]) -> Iterator[Any]:
        """Follows next_page_token until the last page."""
        token = ""
        seen: set[str] = set()
        while True:
            page = fetch(token)
            yield page
            token = page.next_page_token
            if not token:
                return
            if token in seen:
                raise DiycError(f"diycd returned page token {token!r} twice", code="INTERNAL")
            seen.add(token)

    def _convert(self, exc: grpc.RpcError, timeout: float | None = None) -> DiycError:
        """The diyc exception for a failed call, with a message a user can act on."""
        code = exc.code() if hasattr(exc, "code") else None
        details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
        if code is None:
            return DiycError(details)
        if code == grpc.StatusCode.UNAVAILABLE:
            return self._unreachable(details)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and timeout is not None:
            return DiycError(f"diycd at {self.target} did not answer within {timeout:g}s", code=code.name)
        return error_for_code(code.name, details)

    def _unreachable(self, details: str) -> DiycError:
        """Explains UNAVAILABLE: no diycd there, or a socket this user may not use.

        gRPC reports both as UNAVAILABLE; looking at the socket path tells a
        missing daemon from a refused permission.
        """
        if self.socket is not None:
            try:
                os.stat(self.socket)
            except PermissionError:
                return PermissionDeniedError(
                    f"permission denied: cannot reach diycd's socket {self.socket} (it is for root only)",
                    errno=errno.EACCES)
            except FileNotFoundError:
                return UnavailableError(
                    f"diycd is not reachable at {self.socket}: no such socket (is diycd running?)",
                    errno=errno.ENOENT)
            except OSError as err:
                return UnavailableError(f"diycd is not reachable at {self.socket}: {err.strerror}", errno=err.errno)
            if "permission denied" in details.lower() or not os.access(self.socket, os.R_OK | os.W_OK):
                return PermissionDeniedError(
                    f"permission denied: cannot connect to diycd's socket {self.socket} (it is for root only)",
                    errno=errno.EACCES)
            if "connection refused" in details.lower():
                return UnavailableError(
                    f"diycd is not reachable at {self.socket}: connection refused (is diycd running?)",
                    errno=errno.ECONNREFUSED)
        return UnavailableError(f"diycd is not reachable at {self.socket or self.target}: {details}")
