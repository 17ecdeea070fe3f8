"""Registry of site profiles.

``get_profile("baotuyenquang")`` returns the shared, stateless profile instance; add a new
site by writing a :class:`~crawler.sites.base.SiteProfile` subclass and listing it here.
"""

from __future__ import annotations

from crawler.sites.base import SiteProfile
from crawler.sites.baotuyenquang import BaoTuyenQuang

__all__ = ["PROFILES", "SiteProfile", "BaoTuyenQuang", "get_profile"]

#: name -> profile instance. Profiles hold no per-page state, so one instance is shared.
PROFILES: dict[str, SiteProfile] = {p.name: p for p in (BaoTuyenQuang(),)}


def get_profile(name: str) -> SiteProfile:
    """Profile registered under ``name``.

    Raises ``KeyError`` whose message lists the known names.
    """
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise KeyError(f"unknown site profile {name!r}; known profiles: {known}") from None
