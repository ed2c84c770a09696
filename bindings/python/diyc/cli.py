"""``python3 -m diyc``: the command line of diycd, the diyc node agent.

    diyc [--socket PATH | --host HOST:PORT --tls-ca F [--tls-cert F --tls-key F]]
         [--timeout S] [--json] COMMAND ...

    diyc network create NAME --subnet CIDR [--subnet6 CIDR] [--gateway IP]
                        [--bridge NAME] [--no-nat] [--internal] [--mtu N]
                        [--vxlan-id N (--local ADDR | --underlay-device DEV) [--vxlan-port P]]
                        [--ip-range CIDR] [--peer ADDR]...
    diyc network ls | inspect NAME | rm NAME [--force]
    diyc network peer add|rm NETWORK ADDR | peer ls NETWORK
    diyc attach NETWORK (--netns NAME | --netns-path PATH | --pid PID | --container ID)
                [--ip IP] [--ifname IF] [--mac MAC]
    diyc detach NETWORK (--netns ... | ...) [--ifname IF]
    diyc attachment ls [NETWORK]
    diyc probe (--netns ... | ...) TARGET... [--network NET] [--count N] [--timeout-ms MS]
    diyc probe --network NET
    diyc check | repair
    diyc events [--network NET] [--container NAME]

    diyc image import NAME PATH        (PATH: a root filesystem directory or a tar file)
    diyc image ls | rm NAME
    diyc image busybox DIR             (writes a busybox root filesystem to DIR)
    diyc run [--name N] [--network NET[:IP]]... [--memory SIZE] [--pids N] [--cpus C]
             [-e KEY=VALUE]... [--workdir DIR] [--hostname H] [-d | --rm] IMAGE [--] CMD...
    diyc ps [-a]
    diyc inspect NAME
    diyc logs [-f] NAME
    diyc stop NAME [--time SECONDS] [--signal SIG]
    diyc wait NAME
    diyc rm [-f] NAME

Global options may also follow the command (``diyc network ls --json``),
except after ``run``'s IMAGE, where everything belongs to the command.
Output is an aligned table for people, or JSON with ``--json`` whose keys
are the proto field names. Failures print one line, ``diyc: CODE: message``,
and exit 1; usage errors exit 2; a probe with an unreachable target exits 1.

``run`` stays in the foreground: it relays the container's stdout and stderr
as they are written and exits with the container's exit code (128+N when
signal N killed it); Ctrl-C stops the container. With ``-d`` it prints the
container's name and returns. Sizes take binary suffixes: 512k, 64M, 1G.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TextIO

from google.protobuf import json_format
from google.protobuf.message import Message

from . import images
from .client import DEFAULT_TIMEOUT, SOCKET_ENV, Client, default_socket
from .errors import AlreadyExistsError, DiycError, FailedPreconditionError
from .v1 import container_pb2, events_pb2, network_pb2

PROG = "diyc"

Handler = Callable[[Client, argparse.Namespace, TextIO], int]

# Target options shared by attach, detach and probe: (option, request field, help).
_TARGETS = (
    ("--netns", "netns", "a namespace under /run/netns, as `ip netns` names it"),
    ("--netns-path", "netns_path", "path of a namespace file, e.g. /proc/PID/ns/net"),
    ("--pid", "pid", "a process whose network namespace is used"),
    ("--container", "container", "a container id"),
)
_TARGET_LABELS = {"netns_name": "netns", "netns_path": "path", "pid": "pid", "container": "container"}


# --------------------------------------------------------------------------
# Argument parsing


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}: {text!r}")
        return value

    parse.__name__ = "integer"  # what argparse names the type in its messages
    return parse


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


_SIZE = re.compile(r"(\d+(?:\.\d*)?)\s*(?:([kmgt])(?:i?b)?|b)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes from "64M", "1G", "512k", "1.5g" or a plain number; units are binary (k = 1024)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 64M, 1G, 512k or a number of bytes)")
    number, unit = match.groups()
    whole, _, fraction = number.partition(".")
    scale = _SIZE_UNITS[(unit or "").lower()]
    # Integer arithmetic: a float would round sizes of many GiB.
    return int(whole) * scale + (int(fraction) * scale // 10 ** len(fraction) if fraction else 0)


def _signal_number(text: str) -> int:
    """A signal given as a number (9) or a name (KILL, SIGKILL, kill)."""
    if text.isdigit():
        number = int(text)
        if not 1 <= number <= 64:
            raise argparse.ArgumentTypeError(f"no such signal: {text!r}")
        return number
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise argparse.ArgumentTypeError(f"no such signal: {text!r}") from None


def _env_entry(text: str) -> str:
    key, equals, _ = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"want KEY=VALUE, not {text!r}")
    return text


def _network_spec(text: str) -> str:
    network, _, _ = text.partition(":")
    if not network:
        raise argparse.ArgumentTypeError(f"want NET or NET:IP, not {text!r}")
    return text


def _global_options() -> argparse.ArgumentParser:
    """Options accepted before and after the command.

    Their defaults are SUPPRESS so a subcommand that does not see an option
    leaves the value parsed before the command alone; real defaults are
    applied once parsing is done (see _setting).
    """
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    group = common.add_argument_group("global options")
    group.add_argument("--socket", metavar="PATH", default=argparse.SUPPRESS,
                       help=f"diycd's unix socket (default ${SOCKET_ENV} or /run/diyc/diyc.sock)")
    group.add_argument("--host", metavar="HOST:PORT", default=argparse.SUPPRESS,
                       help="a diycd listening on TCP (always TLS)")
    group.add_argument("--tls-ca", metavar="FILE", default=argparse.SUPPRESS,
                       help="PEM CA certificate that signed diycd's certificate")
    group.add_argument("--tls-cert", metavar="FILE", default=argparse.SUPPRESS, help="PEM client certificate")
    group.add_argument("--tls-key", metavar="FILE", default=argparse.SUPPRESS, help="PEM client key")
    group.add_argument("--timeout", metavar="S", type=_positive_float, default=argparse.SUPPRESS,
                       help="deadline of each call in seconds (default 30)")
    group.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                       help="print JSON instead of tables")
    return common


def _add_target_options(parser: argparse.ArgumentParser, *, required: bool, role: str) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    for option, dest, help_text in _TARGETS:
        kind = _int_at_least(1) if dest == "pid" else str
        metavar = {"netns": "NAME", "netns_path": "PATH", "pid": "PID", "container": "ID"}[dest]
        group.add_argument(option, dest=dest, metavar=metavar, type=kind, help=f"{role}: {help_text}")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; each leaf parser sets ``handler``."""
    common = _global_options()
    parser = argparse.ArgumentParser(
        prog=PROG, parents=[common], allow_abbrev=False,
        description="Command line of diycd, the diyc container node agent: networks, images and containers.",
        epilog="Global options may also be given after the command. Run 'diyc COMMAND --help' for details.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def leaf(group: Any, name: str, handler: Handler, help_text: str, **kwargs: Any) -> argparse.ArgumentParser:
        sub = group.add_parser(name, parents=[common], allow_abbrev=False, help=help_text,
                               description=help_text, **kwargs)
        sub.set_defaults(handler=handler, parser=sub)
        return sub

    # network ...
    network = commands.add_parser("network", help="create, list, inspect and delete networks",
                                  description="Create, list, inspect and delete networks.")
    network_cmds = network.add_subparsers(dest="network_command", metavar="SUBCOMMAND", required=True)

    create = leaf(network_cmds, "create", _network_create, "create a bridged network")
    create.add_argument("name", metavar="NAME", help="1-63 characters of [A-Za-z0-9_.-]")
    create.add_argument("--subnet", required=True, metavar="CIDR", help="IPv4 subnet, e.g. 10.88.0.0/24")
    create.add_argument("--subnet6", metavar="CIDR", help="IPv6 subnet for dual stack, e.g. fd00:88::/64")
    create.add_argument("--gateway", metavar="IP", help="bridge address (default: first host)")
    create.add_argument("--bridge", metavar="NAME", help="Linux bridge name, at most 15 bytes (default: derived)")
    create.add_argument("--no-nat", dest="nat", action="store_false", help="do not masquerade outgoing traffic")
    create.add_argument("--internal", action="store_true", help="no traffic leaves the network")
    create.add_argument("--mtu", type=_int_at_least(0), default=0, metavar="N",
                        help="MTU (default: the host's default-route interface; with VXLAN the underlay's less 50)")
    create.add_argument("--ip-range", metavar="CIDR",
                        help="the part of the subnet this node hands out (default: all of it)")
    create.add_argument("--vxlan-id", type=_int_at_least(1), metavar="N",
                        help="span nodes over VXLAN with this id (1-16777215)")
    create.add_argument("--vxlan-port", type=_int_at_least(0), default=0, metavar="P",
                        help="VXLAN UDP port (default 4789)")
    create.add_argument("--local", metavar="ADDR", help="this node's underlay IPv4 address (with --vxlan-id)")
    create.add_argument("--underlay-device", metavar="DEV",
                        help="the interface facing the other nodes (with --vxlan-id)")
    create.add_argument("--peer", dest="peers", action="append", default=[], metavar="ADDR",
                        help="another node's underlay address (repeatable)")

    leaf(network_cmds, "ls", _network_ls, "list networks", aliases=["list"])

    inspect = leaf(network_cmds, "inspect", _network_inspect, "show one network")
    inspect.add_argument("name", metavar="NAME")

    remove = leaf(network_cmds, "rm", _network_rm, "delete a network", aliases=["delete"])
    remove.add_argument("name", metavar="NAME")
    remove.add_argument("--force", action="store_true", help="detach its attachments first")

    peer = network_cmds.add_parser("peer", help="the other nodes of a network spanning nodes",
                                   description="Add, remove and list the peer nodes of a spanning network.")
    peer_cmds = peer.add_subparsers(dest="peer_command", metavar="SUBCOMMAND", required=True)
    peer_add = leaf(peer_cmds, "add", _peer_add, "add a peer node (idempotent)")
    peer_add.add_argument("network", metavar="NETWORK")
    peer_add.add_argument("address", metavar="ADDR", help="the peer's underlay IPv4 address")
    peer_rm = leaf(peer_cmds, "rm", _peer_rm, "remove a peer node (idempotent)", aliases=["remove"])
    peer_rm.add_argument("network", metavar="NETWORK")
    peer_rm.add_argument("address", metavar="ADDR")
    peer_ls = leaf(peer_cmds, "ls", _peer_ls, "list a network's peer nodes", aliases=["list"])
    peer_ls.add_argument("network", metavar="NETWORK")

    # attach / detach
    attach = leaf(commands, "attach", _attach, "join a container's network namespace to a network")
    attach.add_argument("network", metavar="NETWORK")
    _add_target_options(attach, required=True, role="namespace to attach")
    attach.add_argument("--ip", metavar="IP", help="static address inside the subnet (default: allocated)")
    attach.add_argument("--ifname", metavar="IF", help="interface name inside the namespace (default eth0)")
    attach.add_argument("--mac", metavar="MAC", help="MAC address (default: generated)")

    detach = leaf(commands, "detach", _detach, "remove a namespace from a network (idempotent)")
    detach.add_argument("network", metavar="NETWORK")
    _add_target_options(detach, required=True, role="namespace to detach")
    detach.add_argument("--ifname", metavar="IF", help="interface name inside the namespace (default eth0)")

    # attachment ls
    attachment = commands.add_parser("attachment", help="list attachments",
                                     description="List attachments.")
    attachment_cmds = attachment.add_subparsers(dest="attachment_command", metavar="SUBCOMMAND", required=True)
    attachment_ls = leaf(attachment_cmds, "ls", _attachment_ls, "list attachments", aliases=["list"])
    attachment_ls.add_argument("network", metavar="NETWORK", nargs="?", help="only this network's")

    # probe
    probe = leaf(commands, "probe", _probe,
                 "ICMP reachability from a namespace, or between all attachments of a network",
                 epilog="Exits 1 when any target is unreachable.")
    _add_target_options(probe, required=False, role="source")
    probe.add_argument("targets", metavar="TARGET", nargs="*", help="address to ping (no prefix length)")
    probe.add_argument("--network", metavar="NET",
                       help="with a source: also ping every attachment of NET; alone: all pairs of NET")
    probe.add_argument("--count", type=_int_at_least(1), default=0, metavar="N",
                       help="echo requests per target (default 1, at most 100)")
    probe.add_argument("--timeout-ms", type=_int_at_least(1), default=0, metavar="MS",
                       help="wait per reply in milliseconds (default 1000)")

    # events
    leaf(commands, "check", _check,
         "report drift between diycd's records and the kernel (exit 1 if any)")
    leaf(commands, "repair", _repair, "restore diyc's own objects where the kernel drifted")

    events = leaf(commands, "events", _events, "print events as they happen, until Ctrl-C")
    events.add_argument("--network", metavar="NET", help="only this network's events")
    events.add_argument("--container", metavar="NAME", help="only this container's events")

    # image ...
    image = commands.add_parser("image", help="import, list and remove images",
                                description="Import, list and remove images (root filesystems on the node).")
    image_cmds = image.add_subparsers(dest="image_command", metavar="SUBCOMMAND", required=True)
    image_import = leaf(image_cmds, "import", _image_import, "import a root filesystem as an image",
                        epilog="PATH is read by diycd, so it must be on the node diycd runs on.")
    image_import.add_argument("name", metavar="NAME", help="[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
    image_import.add_argument("path", metavar="PATH", help="a root filesystem directory, or a tar file of one")
    leaf(image_cmds, "ls", _image_ls, "list images", aliases=["list"])
    image_rm = leaf(image_cmds, "rm", _image_rm, "delete an image no container uses", aliases=["remove"])
    image_rm.add_argument("name", metavar="NAME")
    busybox = leaf(image_cmds, "busybox", _image_busybox,
                   "write a minimal busybox root filesystem to a directory (for tests and examples)",
                   epilog="Needs Debian's busybox-static (/bin/busybox). Import the result with "
                          "'diyc image import NAME DIR'.")
    busybox.add_argument("directory", metavar="DIR", help="a missing or empty directory")

    # run
    run = leaf(commands, "run", _run, "run a command in a new container",
               epilog="Everything after IMAGE is the command and its arguments. In the foreground the "
                      "container's stdout and stderr are relayed as they are written and diyc exits with "
                      "the container's exit code (128+N for signal N); Ctrl-C stops the container. With "
                      "-d the container's name is printed (its JSON with --json).")
    run.add_argument("--name", metavar="NAME", help="unique name (default: generated)")
    run.add_argument("--network", dest="networks", action="append", default=[], type=_network_spec,
                     metavar="NET[:IP]", help="attach to NET (first eth0, then eth1, ...), optionally at IP; "
                                              "repeatable")
    run.add_argument("--memory", "-m", type=parse_size, default=0, metavar="SIZE",
                     help="memory limit, e.g. 64M (at least 6M; default unlimited)")
    run.add_argument("--pids", type=_int_at_least(1), default=0, metavar="N",
                     help="most processes at once (default 4096)")
    run.add_argument("--cpus", type=_non_negative_float, default=0.0, metavar="C",
                     help="CPU quota in cores, e.g. 0.5 (default unlimited)")
    run.add_argument("-e", "--env", action="append", default=[], type=_env_entry, metavar="KEY=VALUE",
                     help="environment variable; repeatable")
    run.add_argument("--workdir", "-w", metavar="DIR", help="working directory, absolute (default /)")
    run.add_argument("--hostname", metavar="H", help="host name (default: the container's name)")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("-d", "--detach", action="store_true", help="start it and print its name")
    mode.add_argument("--rm", action="store_true", help="remove the container once it has exited")
    run.add_argument("image", metavar="IMAGE")
    run.add_argument("command", metavar="CMD", nargs=argparse.REMAINDER, help="the command and its arguments")

    # container commands
    ps = leaf(commands, "ps", _ps, "list containers (running ones unless --all)")
    ps.add_argument("-a", "--all", action="store_true", help="exited containers too")

    container_inspect = leaf(commands, "inspect", _inspect, "show one container")
    container_inspect.add_argument("name", metavar="NAME")

    logs = leaf(commands, "logs", _logs, "print a container's output (stdout to stdout, stderr to stderr)")
    logs.add_argument("name", metavar="NAME")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the container exits")

    stop = leaf(commands, "stop", _stop, "stop a container: a signal, then SIGKILL after a grace period",
                epilog="Returns once the container has exited. Stopping an exited container succeeds.")
    stop.add_argument("name", metavar="NAME")
    stop.add_argument("--time", "-t", type=_int_at_least(1), default=10, metavar="SECONDS",
                      help="grace period before SIGKILL (default 10)")
    stop.add_argument("--signal", "-s", type=_signal_number, default=0, metavar="SIG",
                      help="first signal, a name or number (default TERM)")

    wait = leaf(commands, "wait", _wait, "wait until a container exits and print its exit code")
    wait.add_argument("name", metavar="NAME")

    container_rm = leaf(commands, "rm", _rm, "remove an exited container and all it has on the host")
    container_rm.add_argument("name", metavar="NAME")
    container_rm.add_argument("-f", "--force", action="store_true", help="kill it first if it is running")
    return parser


def _setting(args: argparse.Namespace, name: str, default: Any = None) -> Any:
    return getattr(args, name, default)


def _check_probe_args(args: argparse.Namespace) -> None:
    has_source = any(_setting(args, dest) is not None for _, dest, _ in _TARGETS)
    if not has_source and not args.network:
        args.parser.error("give a source (--netns, --netns-path, --pid or --container) or --network")
    if not has_source and args.targets:
        args.parser.error("targets need a source (--netns, --netns-path, --pid or --container)")
    if has_source and not args.targets and not args.network:
        args.parser.error("give at least one TARGET or --network")


def _check_run_args(args: argparse.Namespace) -> None:
    # `diyc run IMAGE -- CMD`: the separator is not part of the command.
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        args.parser.error("give the command to run after IMAGE")


def make_client(args: argparse.Namespace) -> Client:
    """The Client the global options describe."""
    host = _setting(args, "host")
    socket = _setting(args, "socket")
    if host is None:
        socket = socket or default_socket()
    elif socket is not None:
        args.parser.error("--socket and --host exclude each other")
    tls = {key: _setting(args, key) for key in ("tls_ca", "tls_cert", "tls_key")}
    if host is None and any(tls.values()):
        args.parser.error("--tls-ca, --tls-cert and --tls-key need --host")
    if (tls["tls_cert"] is None) != (tls["tls_key"] is None):
        args.parser.error("--tls-cert and --tls-key go together")
    return Client(socket, host=host, timeout=_setting(args, "timeout", DEFAULT_TIMEOUT), **tls)


# --------------------------------------------------------------------------
# Output


def to_dict(message: Message) -> dict[str, Any]:
    """A message as JSON-ready data keyed by proto field names.

    Fields holding their default (0, false, "") are kept, so a script reading
    ``received`` or ``attachment_count`` always finds the key.
    """
    try:
        return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                         including_default_value_fields=True)
    except TypeError:  # protobuf >= 5.26 renamed the switch
        return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)


def print_json(data: Any, out: TextIO, *, compact: bool = False) -> None:
    if compact:
        out.write(json.dumps(data, separators=(",", ":")) + "\n")
    else:
        out.write(json.dumps(data, indent=2) + "\n")


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    cells = [list(map(str, headers))] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [cell.ljust(width) for cell, width in zip(row[:-1], widths)] + [row[-1]]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines) + "\n"


def format_time(stamp: Any) -> str:
    """A google.protobuf.Timestamp as RFC 3339 UTC, or '-' when unset."""
    if not stamp.seconds and not stamp.nanos:
        return "-"
    return stamp.ToJsonString()


def describe_target(message: Message, oneof: str = "target") -> str:
    """The namespace an attachment or probe names, e.g. 'netns c1' or 'pid 42'."""
    field = message.WhichOneof(oneof)
    if field is None:
        return "-"
    return f"{_TARGET_LABELS[field]} {getattr(message, field)}"


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _or_dash(text: str) -> str:
    return text or "-"


def network_rows(networks: Sequence[Message]) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows of `network ls`; SUBNET6 only when some network is dual stack."""
    dual = any(n.subnet6 for n in networks)
    headers = ["NAME", "SUBNET"] + (["SUBNET6"] if dual else []) + [
        "GATEWAY", "BRIDGE", "NAT", "INTERNAL", "MTU", "ATTACHMENTS"]
    rows = []
    for n in networks:
        row: list[Any] = [n.name, n.subnet] + ([_or_dash(n.subnet6)] if dual else [])
        row += [n.gateway, n.bridge, _yes_no(n.nat), _yes_no(n.internal), n.mtu or "-", n.attachment_count]
        rows.append(row)
    return headers, rows


def attachment_rows(attachments: Sequence[Message]) -> tuple[list[str], list[list[Any]]]:
    dual = any(a.ip6 for a in attachments)
    headers = ["NETWORK", "TARGET", "IFNAME", "IP"] + (["IP6"] if dual else []) + [
        "GATEWAY", "MAC", "HOST IFNAME"]
    rows = []
    for a in attachments:
        row: list[Any] = [a.network, describe_target(a), a.ifname, a.ip] + ([_or_dash(a.ip6)] if dual else [])
        row += [_or_dash(a.gateway), _or_dash(a.mac), a.host_ifname]
        rows.append(row)
    return headers, rows


def probe_rows(results: Sequence[Message]) -> tuple[list[str], list[list[Any]]]:
    rows = []
    for r in results:
        rtt = f"{sum(r.rtts_ms) / len(r.rtts_ms):.3f} ms" if r.rtts_ms else "-"
        rows.append([r.source, r.target, f"{r.received}/{r.sent}", rtt])
    return ["SOURCE", "TARGET", "RECEIVED/SENT", "AVG RTT"], rows


def format_network(n: Message) -> str:
    """`network inspect` for people: one field per line."""
    fields = [
        ("name", n.name), ("subnet", n.subnet), ("gateway", n.gateway),
        ("subnet6", _or_dash(n.subnet6)), ("gateway6", _or_dash(n.gateway6)), ("bridge", n.bridge),
        ("nat", _yes_no(n.nat)), ("internal", _yes_no(n.internal)), ("mtu", n.mtu or "-"),
        ("ip range", _or_dash(n.ip_range)),
    ]
    if n.HasField("vxlan"):
        fields += [
            ("vxlan", f"id {n.vxlan.id} port {n.vxlan.port} local {n.vxlan.local} "
                      f"via {n.vxlan.underlay_device} link {n.vxlan.device}"),
            ("peers", ", ".join(n.peers) or "-"),
        ]
    fields += [("attachments", n.attachment_count), ("created", format_time(n.created_at))]
    width = max(len(key) for key, _ in fields) + 1
    return "".join(f"{key + ':':<{width}} {value}\n" for key, value in fields)


def format_event(event: Message) -> str:
    """One line per event: time, type, network and, for attachments, what and where.

    Container events name the container and its image; an exit also says how.
    """
    parts = [format_time(event.time), events_pb2.Event.Type.Name(event.type), event.network or "-"]
    if event.HasField("attachment"):
        a = event.attachment
        parts.append(describe_target(a))
        parts += [x for x in (a.ifname, a.ip, a.ip6) if x]
        if a.host_ifname:
            parts.append(f"host {a.host_ifname}")
    if event.HasField("container"):
        c = event.container
        parts += [f"container {c.name}", f"image {c.image}"]
        if c.state == container_pb2.Container.EXITED:
            parts.append(container_status(c))
    return " ".join(parts)


def format_size(size: int) -> str:
    """Bytes for people, in binary units: 512 B, 1.9 MiB, 64 MiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    if unit == "B":
        return f"{size} B"
    return f"{value:.1f} {unit}".replace(".0 ", " ")


def image_rows(images_: Sequence[Message]) -> tuple[list[str], list[list[Any]]]:
    rows = [[i.name, format_size(i.size_bytes), i.file_count, format_time(i.created_at)] for i in images_]
    return ["NAME", "SIZE", "FILES", "CREATED"], rows


def container_status(c: Message) -> str:
    """`running`, `exited 0`, `exited 137 (signal 9, out of memory)`, ..."""
    state = container_pb2.Container.State.Name(c.state)
    if c.state != container_pb2.Container.EXITED:
        return state.lower()
    notes = ([f"signal {c.signal}"] if c.signal else []) + (["out of memory"] if c.oom_killed else [])
    return f"exited {c.exit_code}" + (f" ({', '.join(notes)})" if notes else "")


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def _address(attachment: Message) -> str:
    return attachment.ip.split("/", 1)[0]


def container_rows(containers: Sequence[Message],
                   attachments: Sequence[Message]) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows of `ps`; NETWORKS lists NET=IP of every attachment."""
    by_container: dict[str, list[str]] = {}
    for a in attachments:
        if a.WhichOneof("target") == "container":
            by_container.setdefault(a.container, []).append(f"{a.network}={_address(a)}")
    rows = []
    for c in containers:
        rows.append([c.name, c.image, _shorten(shlex.join(c.command), 40), container_status(c),
                     format_time(c.created_at), ",".join(by_container.get(c.name, [])) or "-"])
    return ["NAME", "IMAGE", "COMMAND", "STATUS", "CREATED", "NETWORKS"], rows


def format_container(c: Message) -> str:
    """`inspect` for people: one field per line, then one line per network."""
    fields = [
        ("name", c.name), ("image", c.image), ("command", shlex.join(c.command)),
        ("status", container_status(c)), ("pid", c.pid or "-"), ("hostname", c.hostname),
        ("workdir", c.workdir), ("memory", format_size(c.memory_bytes) if c.memory_bytes else "unlimited"),
        ("pids limit", c.pids_limit or "-"), ("cpus", f"{c.cpus:g}" if c.cpus else "unlimited"),
        ("created", format_time(c.created_at)), ("started", format_time(c.started_at)),
        ("finished", format_time(c.finished_at)),
    ]
    fields += [("network", f"{a.network} {a.ifname} {a.ip}" + (f" via {a.gateway}" if a.gateway else ""))
               for a in c.attachments]
    fields += [("env", entry) for entry in c.env]
    width = max(len(key) for key, _ in fields) + 1
    return "".join(f"{key + ':':<{width}} {value}\n" for key, value in fields)


# --------------------------------------------------------------------------
# Commands


def _json_mode(args: argparse.Namespace) -> bool:
    return bool(_setting(args, "json", False))


def _target_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {dest: _setting(args, dest) for _, dest, _ in _TARGETS}


def _target_text(args: argparse.Namespace) -> str:
    for option, dest, _ in _TARGETS:
        value = _setting(args, dest)
        if value is not None:
            return f"{option.lstrip('-').replace('-path', ' path')} {value}"
    return "-"


def _network_create(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    if args.vxlan_id is None and (args.local or args.underlay_device or args.peers or args.vxlan_port):
        args.parser.error("--local, --underlay-device, --vxlan-port and --peer need --vxlan-id")
    net = client.create_network(args.name, args.subnet, subnet6=args.subnet6, gateway=args.gateway,
                                bridge=args.bridge, nat=args.nat, internal=args.internal, mtu=args.mtu,
                                ip_range=args.ip_range, vxlan_id=args.vxlan_id, vxlan_port=args.vxlan_port,
                                local=args.local, underlay_device=args.underlay_device, peers=args.peers)
    if _json_mode(args):
        print_json(to_dict(net), out)
    else:
        extra = f", {net.subnet6}" if net.subnet6 else ""
        out.write(f"created network {net.name}: {net.subnet}{extra} gateway {net.gateway} bridge {net.bridge}\n")
    return 0


def _print_peers(net: Message, args: argparse.Namespace, out: TextIO) -> None:
    if _json_mode(args):
        print_json(list(net.peers), out)
    else:
        out.writelines(f"{peer}\n" for peer in net.peers)


def _peer_add(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    _print_peers(client.add_peer(args.network, args.address), args, out)
    return 0


def _peer_rm(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    _print_peers(client.remove_peer(args.network, args.address), args, out)
    return 0


def _peer_ls(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    _print_peers(client.get_network(args.network), args, out)
    return 0


def _network_ls(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    networks = client.list_networks()
    if _json_mode(args):
        print_json([to_dict(n) for n in networks], out)
    else:
        out.write(format_table(*network_rows(networks)))
    return 0


def _network_inspect(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    net = client.get_network(args.name)
    if _json_mode(args):
        print_json(to_dict(net), out)
    else:
        out.write(format_network(net))
    return 0


def _network_rm(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    client.delete_network(args.name, force=args.force)
    if _json_mode(args):
        print_json({"network": args.name, "deleted": True}, out)
    else:
        out.write(f"deleted network {args.name}\n")
    return 0


def _attach(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    att = client.attach(args.network, ip=args.ip, ifname=args.ifname, mac=args.mac, **_target_kwargs(args))
    if _json_mode(args):
        print_json(to_dict(att), out)
    else:
        via = f" via {att.gateway}" if att.gateway else ""
        out.write(f"attached {describe_target(att)} to {att.network}: {att.ifname} {att.ip}{via}"
                  f" (host {att.host_ifname})\n")
    return 0


def _detach(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    client.detach(args.network, ifname=args.ifname, **_target_kwargs(args))
    if _json_mode(args):
        target = {dest: value for dest, value in _target_kwargs(args).items() if value is not None}
        print_json({"network": args.network, **target, "detached": True}, out)
    else:
        out.write(f"detached {_target_text(args)} from {args.network}\n")
    return 0


def _attachment_ls(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    attachments = client.list_attachments(args.network)
    if _json_mode(args):
        print_json([to_dict(a) for a in attachments], out)
    else:
        out.write(format_table(*attachment_rows(attachments)))
    return 0


def _probe(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    results = client.probe(args.targets, network=args.network, count=args.count, timeout_ms=args.timeout_ms,
                           **_target_kwargs(args))
    if _json_mode(args):
        print_json([to_dict(r) for r in results], out)
    else:
        out.write(format_table(*probe_rows(results)))
    unreachable = [r for r in results if r.received == 0]
    return 1 if unreachable else 0


def _drift_rows(drifts: Iterable[Any], actions: Sequence[str] = ()) -> tuple[list[str], list[list[str]]]:
    headers = ["KIND", "NETWORK", "ATTACHMENT", "DETAIL"] + (["ACTION"] if actions else [])
    rows = []
    for i, d in enumerate(drifts):
        row = [network_pb2.Drift.Kind.Name(d.kind), d.network or "-", d.attachment or "-", d.detail]
        if actions:
            row.append(actions[i] if i < len(actions) else "")
        rows.append(row)
    return headers, rows


def _check(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    drifts = client.check()
    if _json_mode(args):
        print_json([to_dict(d) for d in drifts], out)
    elif drifts:
        out.write(format_table(*_drift_rows(drifts)))
    else:
        out.write("no drift: the kernel matches diycd's records\n")
    return 1 if drifts else 0


def _repair(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    reply = client.repair()
    if _json_mode(args):
        print_json(to_dict(reply), out)
    elif reply.drifts:
        out.write(format_table(*_drift_rows(reply.drifts, list(reply.actions))))
    else:
        out.write("nothing to repair\n")
    return 1 if any(a.startswith("failed") for a in reply.actions) else 0


def _events(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    stream = client.events(args.network, container=args.container)
    try:
        for event in stream:
            if _json_mode(args):
                print_json(to_dict(event), out, compact=True)
            else:
                out.write(format_event(event) + "\n")
            out.flush()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how the stream is meant to end
    finally:
        stream.cancel()
    return 0


def _image_import(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    # diycd resolves nothing relative to the caller's directory: send an absolute path.
    path = os.path.abspath(args.path)
    if os.path.isdir(path):
        image = client.import_image(args.name, directory=path)
    else:
        image = client.import_image(args.name, tar_path=path)
    if _json_mode(args):
        print_json(to_dict(image), out)
    else:
        out.write(f"imported image {image.name}: {format_size(image.size_bytes)}, {image.file_count} files\n")
    return 0


def _image_ls(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    found = client.list_images()
    if _json_mode(args):
        print_json([to_dict(i) for i in found], out)
    else:
        out.write(format_table(*image_rows(found)))
    return 0


def _image_rm(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    client.remove_image(args.name)
    if _json_mode(args):
        print_json({"image": args.name, "removed": True}, out)
    else:
        out.write(f"removed image {args.name}\n")
    return 0


def _image_busybox(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    """Builds the tree locally; diycd is not involved."""
    directory = os.path.abspath(args.directory)
    try:
        images.build_busybox_rootfs(directory)
    except FileExistsError as exc:
        raise AlreadyExistsError(str(exc), errno=errno.EEXIST) from None
    except ValueError as exc:
        raise FailedPreconditionError(str(exc)) from None
    except FileNotFoundError as exc:
        raise FailedPreconditionError(f"{exc.filename or 'busybox'}: not found (install busybox-static)",
                                      errno=exc.errno) from None
    except OSError as exc:
        raise DiycError(f"cannot write {directory}: {exc.strerror or exc}", errno=exc.errno) from None
    if _json_mode(args):
        print_json({"directory": directory}, out)
    else:
        out.write(f"wrote a busybox root filesystem to {directory}\n")
    return 0


def _write_bytes(stream: TextIO, data: bytes) -> None:
    """Container output goes out byte for byte, and at once (it may be a progress line)."""
    raw = getattr(stream, "buffer", None)
    if raw is None:  # a StringIO in tests
        stream.write(data.decode("utf-8", errors="replace"))
    else:
        stream.flush()
        raw.write(data)
        raw.flush()
    stream.flush()


def _relay(stream: Iterable[container_pb2.LogChunk], out: TextIO, err: TextIO) -> None:
    for chunk in stream:
        _write_bytes(err if chunk.stream == container_pb2.LogChunk.STDERR else out, chunk.data)


class _Relay(threading.Thread):
    """Copies a log stream to out and err until it ends; ``done`` is set then.

    A failure of the stream is kept in ``error`` for the main thread to raise.
    """

    def __init__(self, stream: Iterable[container_pb2.LogChunk], out: TextIO, err: TextIO) -> None:
        super().__init__(name="diyc log relay", daemon=True)
        self.stream, self.out, self.err = stream, out, err
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            _relay(self.stream, self.out, self.err)
        except BaseException as exc:  # handed to the main thread
            self.error = exc
        finally:
            self.done.set()


@contextlib.contextmanager
def _ctrl_c_deferred() -> Iterator[threading.Event]:
    """Holds Ctrl-C back during the block; the event says whether it was pressed.

    RunContainer goes on in diycd even if the client gives up, so an
    interrupted call would leave a container running that the caller never
    learnt the name of. Waiting for the answer keeps it in hand.
    """
    pressed = threading.Event()
    # Only where Ctrl-C would raise KeyboardInterrupt: not in a thread, nor
    # where SIGINT is ignored or handled otherwise.
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield pressed
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.set())
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def _run(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    with _ctrl_c_deferred() as interrupted:
        container = client.run_container(
            args.image, args.command, name=args.name, env=args.env, workdir=args.workdir,
            hostname=args.hostname, networks=args.networks, memory_bytes=args.memory,
            pids_limit=args.pids, cpus=args.cpus)
    if args.detach:
        if interrupted.is_set():
            client.remove_container(container.name, force=True)
            return 130
        if _json_mode(args):
            print_json(to_dict(container), out)
        else:
            out.write(container.name + "\n")
        return 0

    # The output is relayed on a thread of its own: a gRPC stream whose read
    # was interrupted by Ctrl-C cannot be read again, and the output must
    # keep flowing while the container stops (it may print on SIGTERM). The
    # first Ctrl-C stops the container; a second one gives up waiting.
    stopper: threading.Thread | None = None

    def stop() -> None:
        with contextlib.suppress(DiycError):
            client.stop_container(container.name)

    def start_stopping() -> threading.Thread:
        thread = threading.Thread(target=stop, name=f"stop {container.name}", daemon=True)
        thread.start()
        return thread

    if interrupted.is_set():
        stopper = start_stopping()
    logs = client.container_logs(container.name, follow=True)
    relay = _Relay(logs, out, args.err)
    relay.start()
    try:
        while not relay.done.is_set():
            try:
                relay.done.wait(0.2)
            except KeyboardInterrupt:
                if stopper is not None:
                    raise
                stopper = start_stopping()
    finally:
        logs.cancel()
    if relay.error is not None:
        raise relay.error
    result = client.wait_container(container.name)
    if stopper is not None:
        stopper.join()
    if args.rm:
        client.remove_container(container.name)
    return 128 + result.signal if result.signal else result.exit_code


def _ps(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    containers = client.list_containers(all=args.all)
    if _json_mode(args):
        print_json([to_dict(c) for c in containers], out)
    else:
        attachments = client.list_attachments() if containers else []
        out.write(format_table(*container_rows(containers, attachments)))
    return 0


def _inspect(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    container = client.get_container(args.name)
    if _json_mode(args):
        print_json(to_dict(container), out)
    else:
        out.write(format_container(container))
    return 0


def _logs(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    stream = client.container_logs(args.name, follow=args.follow)
    try:
        _relay(stream, out, args.err)
    except KeyboardInterrupt:
        pass  # how `logs -f` of a container that keeps running is meant to end
    finally:
        stream.cancel()
    return 0


def _stop(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    client.stop_container(args.name, timeout_seconds=args.time, signal=args.signal)
    if _json_mode(args):
        print_json({"container": args.name, "stopped": True}, out)
    else:
        out.write(f"stopped {args.name}\n")
    return 0


def _wait(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    result = client.wait_container(args.name)
    if _json_mode(args):
        print_json(to_dict(result), out)
    else:
        out.write(f"{128 + result.signal if result.signal else result.exit_code}\n")
    return 0


def _rm(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    client.remove_container(args.name, force=args.force)
    if _json_mode(args):
        print_json({"container": args.name, "removed": True}, out)
    else:
        out.write(f"removed container {args.name}\n")
    return 0


# --------------------------------------------------------------------------
# Entry point


def _fail(message: str, err: TextIO) -> int:
    err.write(f"{PROG}: {message}\n")
    return 1


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Runs one command; returns the exit status (argparse exits 2 itself on usage errors)."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    if args.handler is _probe:
        _check_probe_args(args)
    if args.handler is _run:
        _check_run_args(args)
    # Commands relaying a container's stderr write it here.
    args.err = err
    try:
        with make_client(args) as client:
            return args.handler(client, args, out)
    except DiycError as exc:
        return _fail(f"{exc.code}: {exc.message}", err)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, and keep Python's
        # final flush of stdout from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def run() -> None:
    sys.exit(main())
