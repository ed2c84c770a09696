"""A typed client of diycd, the diyc node agent, over gRPC.

    with diyc.client.Client() as node:            # unix:/run/diyc/diyc.sock
        net = node.create_network("web", "10.88.0.0/24")
        att = node.attach("web", netns="c1")
        print(att.ip, att.host_ifname)

Every failed call raises the :mod:`diyc.errors` exception of its status code
(``NotFoundError`` for NOT_FOUND, ...), so callers never see ``grpc.RpcError``.
Every unary call carries a deadline; the event stream runs until cancelled.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc

from .errors import (
    DiycError,
    InvalidArgumentError,
    PermissionDeniedError,
    UnavailableError,
    error_for_code,
)
from .v1 import events_pb2, network_pb2, node_pb2_grpc

__all__ = [
    "DEFAULT_SOCKET",
    "SOCKET_ENV",
    "Client",
    "EventStream",
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

_Response = TypeVar("_Response")


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


class EventStream:
    """The Events stream of diycd: iterate for events, ``cancel()`` to stop.

    Cancelling (from any thread) ends the iteration cleanly; every other
    failure raises the matching :class:`~diyc.errors.DiycError`.
    """

    def __init__(self, call: Any, convert: Callable[[grpc.RpcError], DiycError]) -> None:
        self._call = call
        self._convert = convert
        self._cancelled = threading.Event()

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> events_pb2.Event:
        try:
            return next(self._call)
        except grpc.RpcError as exc:
            if self._cancelled.is_set() or exc.code() == grpc.StatusCode.CANCELLED:
                raise StopIteration from None
            raise self._convert(exc) from None

    def cancel(self) -> None:
        self._cancelled.set()
        self._call.cancel()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cancel()


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
    ) -> network_pb2.Network:
        """Creates a bridged network; NAT is on unless ``nat=False`` or ``internal``."""
        request = network_pb2.CreateNetworkRequest(
            name=name, subnet=subnet, subnet6=subnet6 or "", gateway=gateway or "",
            bridge=bridge or "", nat=nat, internal=internal, mtu=mtu,
        )
        return self._call(self._stub.CreateNetwork, request)

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
    ) -> network_pb2.Attachment:
        """Joins one namespace (by name, path, pid or container) to a network.

        ``ip`` is a static address inside the subnet, without prefix length;
        by default diycd allocates one.
        """
        target = _target_fields(netns=netns, netns_path=netns_path, pid=pid, container=container, what="attach")
        request = network_pb2.AttachContainerRequest(
            network=network, ifname=ifname or "", ip=ip or "", mac=mac or "", **target)
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
    ) -> None:
        """Undoes an attach; detaching what is not attached succeeds."""
        target = _target_fields(netns=netns, netns_path=netns_path, pid=pid, container=container, what="detach")
        request = network_pb2.DetachContainerRequest(network=network, ifname=ifname or "", **target)
        self._call(self._stub.DetachContainer, request)

    def list_attachments(self, network: str | None = None, *, page_size: int = 0) -> list[network_pb2.Attachment]:
        """Every attachment (of one network, or of all), fetched page by page."""
        attachments: list[network_pb2.Attachment] = []
        for page in self._pages(lambda token: self._call(
                self._stub.ListAttachments,
                network_pb2.ListAttachmentsRequest(network=network or "", page_size=page_size, page_token=token))):
            attachments.extend(page.attachments)
        return attachments

    # -- diagnostics

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

    def events(self, network: str | None = None, *, timeout: float | None = None) -> EventStream:
        """Events from now on (of one network, or of all), until cancelled.

        The stream is meant to stay open, so unlike the unary calls it has no
        deadline unless ``timeout`` is given.
        """
        call = self._stub.Events(events_pb2.EventsRequest(network=network or ""), timeout=timeout)
        return EventStream(call, self._convert)

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
