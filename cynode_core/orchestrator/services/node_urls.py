"""The check a Worker API URL passes before the orchestrator stores it and dials it later.

A node names its own Worker API URL (``worker_api.base_url`` of its
capability report) and an admin may override it; either way the orchestrator
will later send that URL job requests with the node's token. The URL must be
plain ``http``/``https`` with a host and nothing a parser could read two ways
(no user info, query or fragment), and its host must lie inside the
operator's ``node_url_networks``: an IP literal is checked as written, a host
name by resolving it, every address it resolves to included
(docs/wire_contract.md#node-url).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit

from cynode_core.contract.errors import InvalidInput
from cynode_core.orchestrator.settings import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# What a URL may hold at all: printable ASCII without space or backslash
# (parsers disagree on a backslash and on what they strip).
_URL_CHARS = re.compile(r"[!-\[\]-~]+")
# A host name (not an IP literal): dot-separated labels of letters, digits and
# hyphens, underscores too (container network aliases use them).
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\.?")


def checked_worker_url(url: str, networks: Iterable[IPNetwork]) -> str:
    """``url`` without a trailing ``/`` when it passes; :class:`InvalidInput` saying why when it does not."""
    parts = _parts(url)
    host = parts.hostname or ""
    addresses = _addresses(host, parts.port)
    allowed = tuple(networks)
    outside = sorted({str(a) for a in addresses if not any(a in net for net in allowed if a.version == net.version)})
    if outside:
        raise InvalidInput(
            f"Worker API URL host {host} is outside the networks nodes may use ({', '.join(outside)}; "
            "see CYNODE_NODE_URL_NETWORKS)"
        )
    return url.rstrip("/")


def _parts(url: str) -> SplitResult:
    if not url:
        raise InvalidInput("Worker API URL is empty")
    if not _URL_CHARS.fullmatch(url):
        raise InvalidInput("Worker API URL must be printable ASCII without spaces or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput("Worker API URL is malformed or its port is out of range") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidInput("Worker API URL must be an http:// or https:// URL")
    if "@" in parts.netloc:
        raise InvalidInput("Worker API URL must not carry a user name or password")
    if "?" in url or "#" in url:
        raise InvalidInput("Worker API URL must not carry a query or fragment")
    if not parts.hostname:
        raise InvalidInput("Worker API URL has no host")
    if port is not None and not 0 < port < 65536:
        raise InvalidInput("Worker API URL port is out of range")
    return parts


def _addresses(host: str, port: int | None) -> set[IPAddress]:
    """The host as an IP literal, else every address it resolves to (IPv4-mapped IPv6 read as IPv4)."""
    try:
        return {_plain(ipaddress.ip_address(host))}
    except ValueError:
        pass
    if not _HOST_NAME.fullmatch(host):
        raise InvalidInput(f"Worker API URL host {host!r} is neither an IP address nor a host name")
    try:
        infos = socket.getaddrinfo(host, port or 80, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise InvalidInput(f"Worker API URL host {host} does not resolve") from None
    found = {_plain(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])) for info in infos}
    if not found:
        raise InvalidInput(f"Worker API URL host {host} does not resolve")
    return found


def _plain(address: IPAddress) -> IPAddress:
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return mapped or address
