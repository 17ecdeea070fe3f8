"""SSRF guard: never fetch loopback, private, link-local, multicast or reserved
addresses, whatever a page links to or a server redirects to.

Checked for every request before it is sent, redirects included (a redirected
request passes through the downloader middlewares again):

* a literal IP in the URL is checked always, proxy or not;
* a host name is resolved and every address it resolves to is checked — unless
  the request goes through a configured proxy (``http_proxy``/``https_proxy`` or
  ``meta["proxy"]``), where the proxy, not this process, resolves and connects.

Scrapy's own resolver caches what we resolved here (DNSCACHE_ENABLED), so the
connection goes to an address this guard saw. Refused requests raise
IgnoreRequest and are counted under ``ssrf/refused/<reason>``.

Address classes: RFC 1918/6598 private, RFC 1122 loopback, RFC 3927 link-local,
multicast, reserved and unspecified, IPv4-mapped IPv6 included (Python's
``ipaddress`` ``is_global`` and friends).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import urllib.request
from urllib.parse import urlsplit

from scrapy.exceptions import IgnoreRequest, NotConfigured

logger = logging.getLogger(__name__)


def forbidden_address(address: str) -> str | None:
    """Why ``address`` (an IPv4/IPv6 literal) must not be fetched, or None if it is
    a public address. Raises ValueError when ``address`` is not an IP literal."""
    ip = ipaddress.ip_address(address.strip("[]"))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    # Most specific first: link-local and loopback ranges are also "private" to Python.
    for reason in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(ip, f"is_{reason}"):
            return reason
    if not ip.is_global:
        return "not_global"
    return None


def _literal_ip(host: str) -> str | None:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host.strip("[]")
    except ValueError:
        return None


def _env_proxied(url: str) -> bool:
    scheme = urlsplit(url).scheme
    proxies = urllib.request.getproxies()
    if scheme not in proxies:
        return False
    return not urllib.request.proxy_bypass(urlsplit(url).hostname or "")


class SsrfGuardMiddleware:
    """Downloader middleware (engine side, priority 60). Settings:
    ``SSRF_GUARD_ENABLED`` (True), ``SSRF_ALLOWED_ADDRESSES`` (list of literal
    addresses exempted, for tests that serve from 127.0.0.1 without a proxy)."""

    def __init__(self, stats, allowed: set[str]):
        self.stats = stats
        self.allowed = allowed

    @classmethod
    def from_crawler(cls, crawler):
        if not crawler.settings.getbool("SSRF_GUARD_ENABLED", True):
            raise NotConfigured
        return cls(crawler.stats, set(crawler.settings.getlist("SSRF_ALLOWED_ADDRESSES")))

    def _refuse(self, request, reason: str, address: str):
        self.stats.inc_value(f"ssrf/refused/{reason}")
        logger.warning("refused %s: %s address %s", request.url, reason, address)
        raise IgnoreRequest(f"SSRF guard: {reason} address {address}")

    async def process_request(self, request):
        host = urlsplit(request.url).hostname or ""
        literal = _literal_ip(host)
        if literal is not None:
            reason = forbidden_address(literal)
            if reason and literal not in self.allowed:
                self._refuse(request, reason, literal)
            return None
        if request.meta.get("proxy") or _env_proxied(request.url):
            return None
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            return None  # the download fails with its own DNS error, counted as such
        for info in infos:
            address = info[4][0]
            reason = forbidden_address(address)
            if reason and address not in self.allowed:
                self._refuse(request, reason, f"{address} (for {host})")
        return None
