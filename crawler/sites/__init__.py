"""Registry of site profiles.

``get_profile("baotuyenquang")`` returns the shared, stateless profile instance; add a new
site by writing a :class:`~crawler.sites.base.SiteProfile` subclass and listing it here.
``generic`` reads any portal through the fallback chain alone;
:func:`profile_name_for` picks the profile for a crawl's start URLs.
"""

from __future__ import annotations

from crawler.sites.base import SiteProfile
from crawler.sites.baotuyenquang import BaoTuyenQuang
from crawler.sites.generic import GenericProfile

__all__ = ["PROFILES", "SiteProfile", "BaoTuyenQuang", "GenericProfile", "get_profile",
           "profile_name_for", "DEFAULT_PROFILE"]

#: name -> profile instance. Profiles hold no per-page state, so one instance is shared.
PROFILES: dict[str, SiteProfile] = {p.name: p for p in (BaoTuyenQuang(), GenericProfile())}

#: The profile a crawl uses when neither ``--site`` nor ``--start-url`` says otherwise.
DEFAULT_PROFILE = "baotuyenquang"


def get_profile(name: str) -> SiteProfile:
    """Profile registered under ``name``.

    Raises ``KeyError`` whose message lists the known names.
    """
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise KeyError(f"unknown site profile {name!r}; known profiles: {known}") from None


def profile_name_for(urls: list[str] | tuple[str, ...]) -> str:
    """Name of the profile for a crawl starting at ``urls``: the first profile whose hosts
    include the first URL's host; ``generic`` for a host no profile knows;
    :data:`DEFAULT_PROFILE` when there are no URLs."""
    if not urls:
        return DEFAULT_PROFILE
    host = SiteProfile.host_of(urls[0])
    for profile in PROFILES.values():
        if profile.is_own_host(host):
            return profile.name
    return GenericProfile.name
