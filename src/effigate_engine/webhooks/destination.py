"""Which URLs a webhook endpoint may have, and which addresses a delivery may reach.

Only ``http`` and ``https`` URLs with a host and no credentials are accepted. Private,
loopback, link-local, multicast and reserved addresses (the database, the cloud's metadata
service, anything on the server's own network) are refused unless the server runs with
``EFFIGATE_WEBHOOK_ALLOW_PRIVATE=1`` (development and tests): as literals when an endpoint is
stored, and as what the host name resolves to right before every attempt.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

SCHEMES = ("http", "https")
MAX_URL_LENGTH = 2048


class DestinationRefused(ValueError):
    """A URL or address a webhook may not be sent to (the message says why)."""


def check_url(url: str, *, allow_private: bool) -> str:
    """``url`` when an endpoint may have it; :class:`DestinationRefused` saying why not."""
    if len(url) > MAX_URL_LENGTH:
        raise DestinationRefused(f"is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise DestinationRefused(f"is not a URL ({exc})") from exc
    if parts.scheme.lower() not in SCHEMES:
        raise DestinationRefused("must be an http:// or https:// URL")
    if not parts.hostname:
        raise DestinationRefused("has no host")
    if parts.username is not None or parts.password is not None:
        raise DestinationRefused("may not carry credentials (user:password@)")
    if any(c.isspace() for c in url):
        raise DestinationRefused("may not contain white space")
    address = _literal(parts.hostname)
    if address is not None and not allow_private and not address.is_global:
        raise DestinationRefused(
            f"points at the non-public address {address} (allowed only when the server runs"
            " with EFFIGATE_WEBHOOK_ALLOW_PRIVATE=1)"
        )
    return url


def check_resolved(host: str, port: int, *, allow_private: bool) -> None:
    """Refuse (:class:`DestinationRefused`) a host that resolves to a non-public address, or
    does not resolve; blocking (name resolution)."""
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise DestinationRefused(f"host {host!r} does not resolve ({exc})") from exc
    for *_, where in infos:
        address = ipaddress.ip_address(where[0])
        if not address.is_global:
            raise DestinationRefused(f"host {host!r} resolves to the non-public address {address}")


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
