"""Where a webhook may be posted: only to addresses on the public Internet.

Campaign owners add webhook URLs from a browser; without this check the worker would post to
whatever those names lead to, the server's own loopback, its private network or the cloud's
metadata service (169.254.169.254) included. The name is resolved, every address it resolves
to is checked, and the connection is opened to an address that was checked, never resolved
again, so that a name answering differently a moment later (DNS rebinding) cannot switch it.
"""
from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from urllib.parse import urlsplit


class RefusedDestination(ValueError):
    """The URL leads somewhere the service must not post to; the message says why.

    ``permanent`` is False when the name did not resolve (DNS may answer later), True when it
    led to an address that is never allowed.
    """

    def __init__(self, message: str, permanent: bool = True):
        super().__init__(message)
        self.permanent = permanent


#: NAT64's well-known prefix (RFC 6052): its last 32 bits are the IPv4 address reached.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _ipv4_behind(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to, for the forms that lead to one: IPv4-mapped
    (``::ffff:127.0.0.1``), NAT64 (``64:ff9b::7f00:1``) and 6to4 (``2002:7f00:1::``)."""
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def _refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``address`` is not a public destination, or None when it is one.

    An IPv6 address that leads to an IPv4 one is judged by the IPv4 address: a public one
    behind NAT64 passes, a 6to4 address wrapping 127.0.0.1 does not (``is_global`` alone lets
    6to4 through, and refuses every NAT64 address).
    """
    if isinstance(address, ipaddress.IPv6Address):
        address = _ipv4_behind(address) or address
        if address.version == 6 and address.is_site_local:
            return "a site-local address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (cloud metadata lives there)"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved or non-public address"
    return None


def resolve(url: str, *, allow_private: bool = False) -> tuple[str, int, list[str]]:
    """The (host name, port, checked addresses in the resolver's order) to connect to for
    ``url``.

    Raises :class:`RefusedDestination` when the name does not resolve or when any of its
    addresses is not public (a name with one public and one private address is refused: which
    one a client would use is not ours to choose).
    """
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise RefusedDestination(f"not an http(s) URL: {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise RefusedDestination(f"the port of {url!r} is not valid") from None
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RefusedDestination(f"the name {host!r} does not resolve: {exc}",
                                 permanent=False) from None
    addresses = []
    for _family, _type, _proto, _name, sockaddr in found:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        reason = None if allow_private else _refusal(address)
        if reason:
            raise RefusedDestination(f"{host} resolves to {address}, {reason}; webhooks go "
                                     f"only to public addresses")
        if str(address) not in addresses:
            addresses.append(str(address))
    if not addresses:
        raise RefusedDestination(f"the name {host!r} has no address")
    return host, port, addresses


def _connect(addresses: list[str], port: int, timeout: float) -> socket.socket:
    """A TCP connection to the first of the checked addresses that accepts one: as a client
    resolving the name itself would, so that a name with an IPv6 address is still reached
    from a host without IPv6 connectivity."""
    error = None
    for address in addresses:
        try:
            # A literal address: create_connection has nothing to resolve.
            return socket.create_connection((address, port), timeout)
        except OSError as exc:
            error = exc
    raise error


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to addresses checked beforehand, whatever the name resolves to now."""

    def __init__(self, host: str, port: int, addresses: list[str], timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._addresses = addresses

    def connect(self):
        """Open the socket to a checked address."""
        self.sock = _connect(self._addresses, self.port, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a checked address; the certificate is verified for the URL's host name."""

    def __init__(self, host: str, port: int, addresses: list[str], timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._addresses = addresses

    def connect(self):
        """Open the socket to a checked address, then TLS with SNI for the host name."""
        sock = _connect(self._addresses, self.port, self.timeout)
        try:
            self.sock = self._context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float,
         allow_private: bool = False) -> int:
    """POST ``body`` to ``url`` after checking where it leads; return the HTTP status.

    Redirects are not followed (the status is returned as it is). Raises
    :class:`RefusedDestination`, or ``OSError`` when no answer came.
    """
    host, port, addresses = resolve(url, allow_private=allow_private)
    parts = urlsplit(url)
    connection_class = _PinnedHTTPSConnection if parts.scheme == "https" else \
        _PinnedHTTPConnection
    connection = connection_class(host, port, addresses, timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(1024)
        return response.status
    except http.client.HTTPException as exc:
        raise OSError(f"{type(exc).__name__}: {exc}") from None
    finally:
        connection.close()
