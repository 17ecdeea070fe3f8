"""Page requisites: the images, stylesheets and scripts a page needs to be
replayed as it looked (what ``wget --page-requisites`` and Heritrix's embed hops
fetch). Only same-site resources count: anything on a host outside ``hosts`` is
left alone, so embeds and trackers (YouTube, Google Tag Manager, Zalo…) are
never fetched. Pure functions of (URL, bytes); the spider turns the result into
requests (``WARC_PAGE_REQUISITES``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from crawler.warc.outlinks import css_outlinks, html_outlinks

#: Outlink contexts (see :mod:`crawler.warc.outlinks`) that are requisites, not
#: navigation or embedded pages (iframes are documents with their own links).
REQUISITE_CONTEXTS = frozenset(
    {"img/@src", "img/@srcset", "source/@src", "source/@srcset", "script/@src", "video/@poster",
     "input/@src", "css/url()", "css/@import"}
)
def _on_site(url: str, hosts: frozenset[str] | set[str]) -> bool:
    try:
        return (urlsplit(url).hostname or "").lower() in hosts
    except ValueError:
        return False


def html_requisites(url: str, body: bytes, hosts) -> list[str]:
    """Same-site images, stylesheets, icons and scripts of an HTML page, in
    document order, without duplicates. ``hosts`` are exact host names.

    ``<link href>`` counts when its ``rel`` styles or brands the page
    (stylesheet, icon, preload…: hop ``E`` in :mod:`crawler.warc.outlinks`),
    never for feeds, ``canonical`` or the mobile ``alternate``."""
    hosts = {h.lower() for h in hosts}
    out: list[str] = []
    for link, hop, context in html_outlinks(url, body):
        wanted = context in REQUISITE_CONTEXTS or (context == "link/@href" and hop == "E")
        if wanted and _on_site(link, hosts) and link not in out:
            out.append(link)
    return out


def css_requisites(url: str, body: bytes, hosts) -> list[str]:
    """Same-site ``url()`` and ``@import`` references of a stylesheet."""
    hosts = {h.lower() for h in hosts}
    out: list[str] = []
    for link, _hop, _context in css_outlinks(url, body):
        if _on_site(link, hosts) and link not in out:
            out.append(link)
    return out
