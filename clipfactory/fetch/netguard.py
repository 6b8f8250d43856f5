"""Fetch safety: manifest URLs may not reach the machine's own network.

A manifest row is untrusted input. Without a guard, ``http://169.254.169.254/latest/meta-data``
(a cloud metadata service) or ``http://10.0.0.5/admin`` in a third-party manifest would be
fetched from inside the user's network. So a manifest URL whose host resolves to an address
that is not globally routable (loopback, RFC 1918 private, link-local, carrier-grade NAT,
multicast, reserved, unspecified, and IPv4-mapped forms of those) is refused as
``fetch/private_address`` before any connection is made.

The check sits in the connection itself (:class:`GuardedHTTPHandler` and
:class:`GuardedHTTPSHandler`): the host is resolved once, every address is checked, and the
socket connects to an address that passed. So every redirect hop is checked, and a name that
resolves to a public address for the check and a private one for the connection (DNS
rebinding) gains nothing. A proxy the user configured (``http_proxy``/``https_proxy``) is the
user's endpoint and is not checked; the URL's own host still is, before the request.

yt-dlp opens its own connections (urllib or requests/urllib3, its own redirects, every HLS
segment). :func:`guarded_resolution` covers those: inside the block, in the calling thread,
every name lookup (``socket.getaddrinfo``, which every connection of those stacks goes through,
and whose answer is the address it connects to) that gives a refused address raises
:class:`PrivateAddressError`, so each page, media URL, segment and redirect hop yt-dlp visits is
checked as the fetcher's own requests are. Other threads are untouched.

``fetch.allow_private_network`` (``--allow-private-network``) turns the guard off: for tests on
loopback servers and for deliberate intranet sources. Endpoints the user configures (caption
servers, object-store endpoints) never go through it.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

__all__ = ["GuardedHTTPHandler", "GuardedHTTPSHandler", "PrivateAddressError",
           "check_url_host", "guarded_resolution", "is_public_address", "private_address_in",
           "resolve_public"]


class PrivateAddressError(OSError):
    """A host resolved to an address the guard refuses (an ``OSError``, so that urllib passes
    it up inside a ``URLError``; :func:`private_address_in` finds it there)."""

    def __init__(self, host: str, address: str, kind: str) -> None:
        super().__init__(f"{host} resolves to {address} ({kind}); refused: manifest URLs may "
                         "not reach private networks (--allow-private-network to allow)")
        self.host, self.address, self.kind = host, address, kind


def _kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``ip`` is refused, or None when it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _kind(ip.ipv4_mapped)
    for name in ("loopback", "link_local", "multicast", "unspecified", "private", "reserved"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    if not ip.is_global:  # 100.64.0.0/10 (shared address space), documentation ranges, ...
        return "not globally routable"
    return None


def is_public_address(address: str) -> bool:
    """True for a globally routable unicast IP address (a literal, not a name)."""
    try:
        return _kind(ipaddress.ip_address(address.split("%", 1)[0])) is None
    except ValueError:
        return False


def resolve_public(host: str, port: int) -> list[tuple[Any, ...]]:
    """``getaddrinfo`` results of ``host`` (TCP), all of them public; raises
    :class:`PrivateAddressError` if any is not (a name with one private address is refused:
    the connection could go to it). DNS failures raise ``socket.gaierror`` as usual."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    _refuse_private(host, infos)
    return infos


def _refuse_private(host: str, infos: list[Any]) -> None:
    """Raise :class:`PrivateAddressError` for the first refused address in ``infos``."""
    for info in infos:
        address = str(info[4][0])
        kind = _kind(ipaddress.ip_address(address.split("%", 1)[0]))
        if kind is not None:
            raise PrivateAddressError(host, address, kind)


def check_url_host(url: str) -> None:
    """Raise :class:`PrivateAddressError` when ``url``'s host resolves to a refused address.
    URLs without a network host (files, object-store buckets) are not checked here."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        resolve_public(parts.hostname, port)
    except socket.gaierror:
        return  # the connection attempt reports the DNS failure as it always did


def private_address_in(exc: BaseException | None) -> PrivateAddressError | None:
    """The :class:`PrivateAddressError` behind ``exc`` (a ``URLError``'s reason, a cause)."""
    for _ in range(6):
        if exc is None or isinstance(exc, PrivateAddressError):
            return exc
        reason = getattr(exc, "reason", None)
        exc = reason if isinstance(reason, BaseException) else (exc.__cause__ or exc.__context__)
    return None


def _guarded_create_connection(address: tuple[str, int], timeout: Any = None,
                               source_address: Any = None, **kw: Any) -> socket.socket:
    host, port = address
    last: OSError | None = None
    for family, kind, proto, _, sockaddr in resolve_public(host, port):
        sock = socket.socket(family, kind, proto)
        try:
            if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)  # the address that was checked, not a second lookup
            return sock
        except OSError as e:
            sock.close()
            last = e
    raise last or OSError(f"no address for {host}")


_real_getaddrinfo = socket.getaddrinfo
_scope = threading.local()  # .exempt: hosts not checked, set while a guarded block runs
_install_lock = threading.Lock()


def _checked_getaddrinfo(host: Any, port: Any, *args: Any, **kw: Any) -> list[Any]:
    infos = _real_getaddrinfo(host, port, *args, **kw)
    exempt = getattr(_scope, "exempt", None)
    if exempt is not None and host is not None:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.lower() not in exempt:
            _refuse_private(name, infos)
    return infos


@contextlib.contextmanager
def guarded_resolution(enabled: bool = True) -> Iterator[None]:
    """Within the block, in this thread, a name lookup that gives a refused address raises
    :class:`PrivateAddressError` (the module docstring); the user's proxy is exempt.
    ``enabled`` False makes it a no-op (``allow_private_network``)."""
    if not enabled:
        yield
        return
    with _install_lock:
        if socket.getaddrinfo is not _checked_getaddrinfo:
            socket.getaddrinfo = _checked_getaddrinfo  # checks nothing outside a block
    before = getattr(_scope, "exempt", None)
    _scope.exempt = _proxy_hosts()
    try:
        yield
    finally:
        _scope.exempt = before


def _proxy_hosts() -> set[str]:
    hosts = set()
    for proxy in urllib.request.getproxies().values():
        host = urlsplit(proxy if "://" in proxy else f"http://{proxy}").hostname
        if host:
            hosts.add(host.lower())
    return hosts


class _Guarded:
    """Connects through :func:`_guarded_create_connection`, unless the host is the user's
    proxy (mixed into http.client's connection classes)."""

    host: str

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        if self.host.lower() not in _proxy_hosts():
            self._create_connection = _guarded_create_connection


class _GuardedHTTPConnection(_Guarded, http.client.HTTPConnection):
    pass


class _GuardedHTTPSConnection(_Guarded, http.client.HTTPSConnection):
    pass


class GuardedHTTPHandler(urllib.request.HTTPHandler):
    """``http://`` through connections that refuse private addresses (module docstring)."""

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        if req.has_proxy():  # the proxy is the user's; the URL's own host is checked here
            check_url_host(req.full_url)
        return self.do_open(_GuardedHTTPConnection, req)


class GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    """``https://`` through connections that refuse private addresses (module docstring)."""

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        if req.has_proxy():
            check_url_host(req.full_url)
        kw: dict[str, Any] = {"context": getattr(self, "_context", None)}
        if getattr(self, "_check_hostname", None) is not None:  # Python < 3.12
            kw["check_hostname"] = self._check_hostname
        return self.do_open(_GuardedHTTPSConnection, req, **kw)
