"""``python3 -m diyc``: the command line of diycd, the diyc node agent.

    diyc [--socket PATH | --host HOST:PORT --tls-ca F [--tls-cert F --tls-key F]]
         [--timeout S] [--json] COMMAND ...

    diyc network create NAME --subnet CIDR [--subnet6 CIDR] [--gateway IP]
                        [--bridge NAME] [--no-nat] [--internal] [--mtu N]
    diyc network ls | inspect NAME | rm NAME [--force]
    diyc attach NETWORK (--netns NAME | --netns-path PATH | --pid PID | --container ID)
                [--ip IP] [--ifname IF] [--mac MAC]
    diyc detach NETWORK (--netns ... | ...) [--ifname IF]
    diyc attachment ls [NETWORK]
    diyc probe (--netns ... | ...) TARGET... [--network NET] [--count N] [--timeout-ms MS]
    diyc probe --network NET
    diyc events [--network NET]

Global options may also follow the command (``diyc network ls --json``).
Output is an aligned table for people, or JSON with ``--json`` whose keys
are the proto field names. Failures print one line, ``diyc: CODE: message``,
and exit 1; usage errors exit 2; a probe with an unreachable target exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

from google.protobuf import json_format
from google.protobuf.message import Message

from .client import DEFAULT_TIMEOUT, SOCKET_ENV, Client, default_socket
from .errors import DiycError
from .v1 import events_pb2

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
        description="Command line of diycd, the diyc container-networking node agent.",
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
                        help="MTU (default: the host's default-route interface)")

    leaf(network_cmds, "ls", _network_ls, "list networks", aliases=["list"])

    inspect = leaf(network_cmds, "inspect", _network_inspect, "show one network")
    inspect.add_argument("name", metavar="NAME")

    remove = leaf(network_cmds, "rm", _network_rm, "delete a network", aliases=["delete"])
    remove.add_argument("name", metavar="NAME")
    remove.add_argument("--force", action="store_true", help="detach its attachments first")

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
    events = leaf(commands, "events", _events, "print events as they happen, until Ctrl-C")
    events.add_argument("--network", metavar="NET", help="only this network's events")
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
        ("attachments", n.attachment_count), ("created", format_time(n.created_at)),
    ]
    width = max(len(key) for key, _ in fields) + 1
    return "".join(f"{key + ':':<{width}} {value}\n" for key, value in fields)


def format_event(event: Message) -> str:
    """One line per event: time, type, network and, for attachments, what and where."""
    parts = [format_time(event.time), events_pb2.Event.Type.Name(event.type), event.network or "-"]
    if event.HasField("attachment"):
        a = event.attachment
        parts.append(describe_target(a))
        parts += [x for x in (a.ifname, a.ip, a.ip6) if x]
        if a.host_ifname:
            parts.append(f"host {a.host_ifname}")
    return " ".join(parts)


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
    net = client.create_network(args.name, args.subnet, subnet6=args.subnet6, gateway=args.gateway,
                                bridge=args.bridge, nat=args.nat, internal=args.internal, mtu=args.mtu)
    if _json_mode(args):
        print_json(to_dict(net), out)
    else:
        extra = f", {net.subnet6}" if net.subnet6 else ""
        out.write(f"created network {net.name}: {net.subnet}{extra} gateway {net.gateway} bridge {net.bridge}\n")
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


def _events(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    stream = client.events(args.network)
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
