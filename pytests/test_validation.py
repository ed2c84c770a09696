"""Pure input validation: no kernel involved, runs without root."""

from __future__ import annotations

import ipaddress

import pytest

import diyc

VALID_IFNAMES = ["eth0", "a", "x" * 15, "t-br", "veth_1-a", "br.100", "ALL", "Default0", "eth0@x"]
INVALID_IFNAMES = [
    pytest.param("", id="empty"),
    pytest.param("x" * 16, id="16-bytes"),
    pytest.param("é" * 8, id="8-chars-16-bytes"),
    pytest.param("a/b", id="slash"),
    pytest.param("a b", id="space"),
    pytest.param("a\tb", id="tab"),
    pytest.param("a\nb", id="newline"),
    pytest.param("a:b", id="colon"),
    pytest.param("a\0b", id="nul"),
    pytest.param("a\x7fb", id="del-control"),
    pytest.param("a\x01b", id="control"),
    pytest.param(".", id="dot"),
    pytest.param("..", id="dotdot"),
    pytest.param("all", id="all"),
    pytest.param("default", id="default"),
]


@pytest.mark.parametrize("name", VALID_IFNAMES)
def test_validate_ifname_accepts(name: str) -> None:
    diyc.validate_ifname(name)


@pytest.mark.parametrize("name", INVALID_IFNAMES)
def test_validate_ifname_rejects(name: str) -> None:
    with pytest.raises(diyc.InvalidArgumentError) as excinfo:
        diyc.validate_ifname(name)
    assert excinfo.value.code == "INVALID_ARGUMENT"


VALID_NETNS_NAMES = ["a", "t-a", "ns.1", "x" * 255, "all", "default", "..."]
INVALID_NETNS_NAMES = [
    pytest.param("", id="empty"),
    pytest.param(".", id="dot"),
    pytest.param("..", id="dotdot"),
    pytest.param("a/b", id="slash"),
    pytest.param("/abs", id="absolute"),
    pytest.param("../escape", id="traversal"),
    pytest.param("x" * 256, id="256-bytes"),
    pytest.param("a\0b", id="nul"),
    pytest.param("a\nb", id="newline"),
    pytest.param("a\x01b", id="control"),
]


@pytest.mark.parametrize("name", VALID_NETNS_NAMES)
def test_validate_netns_name_accepts(name: str) -> None:
    diyc.validate_netns_name(name)


@pytest.mark.parametrize("name", INVALID_NETNS_NAMES)
def test_validate_netns_name_rejects(name: str) -> None:
    with pytest.raises(diyc.InvalidArgumentError):
        diyc.validate_netns_name(name)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1/8", ("10.0.0.1", 8, 4)),
        ("10.77.0.2/24", ("10.77.0.2", 24, 4)),
        ("192.168.1.0/24", ("192.168.1.0", 24, 4)),
        ("0.0.0.0/0", ("0.0.0.0", 0, 4)),
        ("255.255.255.255/32", ("255.255.255.255", 32, 4)),
        ("fd00:77::1/64", ("fd00:77::1", 64, 6)),
        ("::/0", ("::", 0, 6)),
        ("::1/128", ("::1", 128, 6)),
        ("fe80::1/64", ("fe80::1", 64, 6)),
    ],
)
def test_parse_cidr_canonical(text: str, expected: tuple[str, int, int]) -> None:
    assert diyc.parse_cidr(text) == expected


@pytest.mark.parametrize(
    ("text", "address", "prefixlen"),
    [
        ("FD00:77::1/64", "fd00:77::1", 64),
        ("fd00:0:0:0:0:0:0:1/64", "fd00::1", 64),
        ("2001:DB8:0:0::5/48", "2001:db8::5", 48),
    ],
)
def test_parse_cidr_ipv6_spellings(text: str, address: str, prefixlen: int) -> None:
    parsed_address, parsed_prefixlen, family = diyc.parse_cidr(text)
    assert ipaddress.ip_address(parsed_address) == ipaddress.ip_address(address)
    assert (parsed_prefixlen, family) == (prefixlen, 6)


BAD_CIDRS = [
    "10.0.0.0/33",
    "10.1/8",
    "010.0.0.1/8",
    "300.1.1.1/24",
    "1.2.3.4 /24",
    "1.2.3.4/ 24",
    " 1.2.3.4/24",
    "1.2.3.4/24 ",
    "10.0.0.0/",
    "/24",
    "",
    "10.0.0.0",
    "10.0.0.0/-1",
    "10.0.0.0/+8",
    "10.0.0.0/2x",
    "10.0.0.0/8/8",
    "10.0.0.0/4294967320",
    "10.0.0.0/99999999999999999999",
    "1.2.3.4.5/32",
    "0x0a.0.0.1/8",
    "10.0.0.1\0/8",
    "fd00::/129",
    "fd00:::1/64",
    "fd00::1%eth0/64",
    "gggg::1/64",
]


@pytest.mark.parametrize("text", BAD_CIDRS)
def test_parse_cidr_rejects(text: str) -> None:
    with pytest.raises(diyc.InvalidArgumentError):
        diyc.parse_cidr(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1", ("10.0.0.1", 4)),
        ("0.0.0.0", ("0.0.0.0", 4)),
        ("255.255.255.255", ("255.255.255.255", 4)),
        ("::1", ("::1", 6)),
        ("fe80::1", ("fe80::1", 6)),
        ("fd00:77::3", ("fd00:77::3", 6)),
    ],
)
def test_parse_ip(text: str, expected: tuple[str, int]) -> None:
    assert diyc.parse_ip(text) == expected


BAD_IPS = [
    "",
    "10.0.0",
    "10.0.0.256",
    "010.0.0.1",
    "1.2.3.4/24",
    " 1.2.3.4",
    "1.2.3.4 ",
    "1.2.3.4\0",
    "fe80::1%eth0",
    "g::1",
    ":::",
    "localhost",
]


@pytest.mark.parametrize("text", BAD_IPS)
def test_parse_ip_rejects(text: str) -> None:
    with pytest.raises(diyc.InvalidArgumentError):
        diyc.parse_ip(text)


def test_invalid_argument_is_value_error_with_code() -> None:
    with pytest.raises(ValueError) as excinfo:
        diyc.parse_cidr("10.0.0.0/33")
    error = excinfo.value
    assert isinstance(error, diyc.DiycError)
    assert error.code == "INVALID_ARGUMENT"
    assert error.errno is None or isinstance(error.errno, int)
    assert str(error)


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (diyc.NotFoundError, LookupError),
        (diyc.InvalidArgumentError, ValueError),
        (diyc.PermissionDeniedError, PermissionError),
        (diyc.AlreadyExistsError, diyc.DiycError),
        (diyc.FailedPreconditionError, diyc.DiycError),
        (diyc.ResourceExhaustedError, diyc.DiycError),
    ],
)
def test_error_hierarchy(cls: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(cls, diyc.DiycError)
    assert issubclass(cls, builtin)
