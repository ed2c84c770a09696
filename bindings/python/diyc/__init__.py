"""diyc: container networking for Linux, driven from Python.

The network core (namespaces, links, addresses, routes, sysctls, ping) runs
in-process through the same C++ library that serves the diycd daemon.
"""

from __future__ import annotations

from ._net import (
    Addr,
    IPRoute,
    Link,
    NetNS,
    PingResult,
    Route,
    parse_cidr,
    parse_ip,
    ping,
    sysctl_get,
    sysctl_set,
    validate_ifname,
    validate_netns_name,
)
from .errors import (
    AlreadyExistsError,
    DiycError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnavailableError,
)

__version__ = "0.1.0"

__all__ = [
    "Addr",
    "AlreadyExistsError",
    "DiycError",
    "FailedPreconditionError",
    "IPRoute",
    "InvalidArgumentError",
    "Link",
    "NetNS",
    "NotFoundError",
    "PermissionDeniedError",
    "PingResult",
    "ResourceExhaustedError",
    "Route",
    "UnavailableError",
    "parse_cidr",
    "parse_ip",
    "ping",
    "sysctl_get",
    "sysctl_set",
    "validate_ifname",
    "validate_netns_name",
]
