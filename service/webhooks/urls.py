"""Which webhook URLs we send to: SSRF protection.

A webhook URL comes from a client, and the server POSTs to it from inside its own network. So
a URL is refused unless it is ``http`` or ``https``, has a host and no ``user:password``, and
**every** address its host resolves to is globally routable: no loopback, private, link-local
(where cloud metadata services answer, 169.254.169.254), shared (carrier-grade NAT), multicast,
reserved or unspecified address, IPv4 embedded in IPv6 included. Hosts listed in
``GRAPHFLOW_WEBHOOK_ALLOW_HOSTS`` (exact names, any case) skip the address check: tests, or a
receiver inside the network on purpose.

The check runs twice: when a run is created (``check_webhook_url``), and before each delivery
attempt (``resolve_for_delivery``), because the name may resolve elsewhere by then (DNS
rebinding); the sender then connects to the very address that was checked.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from service.errors import InvalidWebhookError

__all__ = [
    "MAX_URL_LENGTH",
    "Resolver",
    "check_webhook_url",
    "resolve_for_delivery",
    "system_resolve",
]

MAX_URL_LENGTH = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
_ALLOW_HINT = "to send to it anyway, add the host to GRAPHFLOW_WEBHOOK_ALLOW_HOSTS"

Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port) -> the host's addresses`` as text; raises ``OSError`` when it has none."""

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def system_resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (``socket.getaddrinfo``), in the system's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class _Target:
    host: str  # lower case, without brackets
    port: int
    addresses: list[str]


def check_webhook_url(
    url: str, allow_hosts: Collection[str], resolve: Resolver = system_resolve
) -> str:
    """``url`` unchanged if runs may send webhooks to it (see the module docstring).

    Raises:
        InvalidWebhookError: the URL is malformed, too long, not http(s), carries credentials,
            its host does not resolve, or one of its addresses is not public and the host is
            not in ``allow_hosts``.
    """
    _target(url, allow_hosts, resolve)
    return url


def resolve_for_delivery(
    url: str, allow_hosts: Collection[str], resolve: Resolver = system_resolve
) -> tuple[str, int]:
    """The address and port to connect to for a delivery to ``url``, checked now.

    Raises:
        InvalidWebhookError: as ``check_webhook_url``.
    """
    target = _target(url, allow_hosts, resolve)
    return target.addresses[0], target.port


def _target(url: str, allow_hosts: Collection[str], resolve: Resolver) -> _Target:
    parts = _split(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme.lower()]
    except ValueError as exc:
        raise InvalidWebhookError(host, f"invalid port: {exc}") from None
    literal = _ip(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = list(resolve(host, port))
        except (OSError, UnicodeError) as exc:
            raise InvalidWebhookError(host, f"the host does not resolve ({exc})") from None
        if not addresses:
            raise InvalidWebhookError(host, "the host does not resolve to any address")
    if host in {h.lower() for h in allow_hosts}:
        return _Target(host, port, addresses)
    for address in addresses:
        ip = _ip(address)
        kind = "unparsable" if ip is None else _not_public(ip)
        if kind is not None:
            shown = f"{address} is" if literal is not None else f"it resolves to {address},"
            raise InvalidWebhookError(
                host,
                f"{shown} not a public address ({kind}); webhooks go to public addresses "
                f"only ({_ALLOW_HINT})",
            )
    return _Target(host, port, addresses)


def _split(url: str) -> SplitResult:
    """The URL's parts, once its length, scheme, host and lack of credentials are checked."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidWebhookError("", f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        # urlsplit silently drops some of them; a URL stored with them is not the one sent.
        raise InvalidWebhookError("", "the URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError as exc:
        raise InvalidWebhookError("", f"not a valid URL ({exc})") from None
    if parts.scheme.lower() not in _DEFAULT_PORTS:
        scheme = parts.scheme or "no scheme"
        raise InvalidWebhookError(host, f"only http and https URLs are allowed, not {scheme!r}")
    if not host:
        raise InvalidWebhookError("", "the URL has no host")
    if parts.username is not None or parts.password is not None:
        # They would be stored with the run and shown back; receivers authenticate us by the
        # signature instead.
        raise InvalidWebhookError(host, "the URL must not carry a user name or password")
    return parts


def _ip(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _not_public(ip: Address) -> str | None:
    """What kind of non-public address ``ip`` is, or None when it is globally routable."""
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv6 form of an IPv4 address reaches that IPv4 address: judge that one.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            return _not_public(embedded)
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local (cloud metadata services live there)"
    if ip.version == 4 and ip in _SHARED:
        return "shared (carrier-grade NAT)"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    # ``is_global`` alone is not enough: Python counts multicast as global.
    if not ip.is_global:
        return "non-global"
    return None
