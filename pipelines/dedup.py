"""Dedup stage: one record per article, however many URLs serve it.

Order of the checks (DESIGN.md): canonical URL (the profile's canonicalisation of
the page's ``rel=canonical``, else of the fetched URL), then the content digest
(same cleaned text under another canonical URL). The state store keeps both
between runs, so a later run does not emit an article again.

Outcomes, written to ``item["dedup"]["status"]``:

* ``new`` — first time this article is seen: version 1;
* ``updated`` — the article's own canonical page now has other content: version
  n+1 with ``previous_sha256``;
* ``duplicate`` — already known (another URL of it, or unchanged content). The
  item still goes on to the publish stage, which merges its URL into the record of
  the current batch; it is never published as a record of its own.
"""

from __future__ import annotations

from pathlib import Path

from crawler.items import ArticleItem
from crawler.sites import get_profile
from crawler.state import SQLiteState


class DedupPipeline:
    """Item pipeline over :class:`~crawler.state.SQLiteState`.

    Settings: ``NEWSARCHIVE_STATE_DIR`` (folder of ``state.sqlite``),
    ``NEWSARCHIVE_SITE`` (profile whose URL rules give the canonical key).
    Stats: ``newsarchive/dedup/{new,updated,duplicate,alias_content_differs}``.
    """

    def __init__(self, state_path: Path, profile, stats):
        self.state_path = state_path
        self.profile = profile
        self.stats = stats
        self.state: SQLiteState | None = None
        # Articles first recorded in this run from a non-canonical page (m. host,
        # alternate section path): their canonical page, when it comes, replaces
        # that content instead of counting as an update.
        self._provisional: set[str] = set()

    @classmethod
    def from_crawler(cls, crawler):
        s = crawler.settings
        state_dir = Path(s.get("NEWSARCHIVE_STATE_DIR", "state"))
        return cls(state_dir / "state.sqlite", get_profile(s.get("NEWSARCHIVE_SITE", "baotuyenquang")), crawler.stats)

    def open_spider(self):
        self.state = SQLiteState(self.state_path)

    def close_spider(self):
        if self.state:
            self.state.close()

    def process_item(self, item):
        if not isinstance(item, ArticleItem):
            return item
        return self.classify(item)

    def classify(self, item: ArticleItem) -> ArticleItem:
        """Annotate ``item`` with its dedup outcome and version, update the state."""
        canon = self.profile.canonicalize_url
        key = canon(item.get("canonical_url") or item["url"])
        # The canonical page itself (tracking parameters aside), not a copy on the
        # mobile host or under a second section path.
        strip = self.profile.strip_tracking
        own_page = strip(item["url"]) == strip(item.get("canonical_url") or item["url"])
        sha = item["content_sha256"]
        item["urls"] = [item["url"]]
        known = self.state.by_key(key)
        if known is None:
            by_text = self.state.by_digest(sha)
            if by_text is not None:
                key, status = by_text.article_key, "duplicate"
                own_page = False
            else:
                status = "new"
                item["version"] = 1
                self.state.record(key, item.get("article_id"), sha, 1)
                if not own_page:
                    self._provisional.add(key)
        elif known.content_sha256 == sha:
            status = "duplicate"
        elif own_page and key in self._provisional:
            status = "duplicate"
            self._provisional.discard(key)
            self.state.record(key, item.get("article_id"), sha, known.version)
        elif own_page:
            status = "updated"
            item["version"] = known.version + 1
            item["previous_sha256"] = known.content_sha256
            self.state.record(key, item.get("article_id"), sha, known.version + 1)
        else:
            # Another URL of a known article shows different text (e.g. a stale
            # copy): it is not a new version of the article, only another address.
            status = "duplicate"
            self.stats.inc_value("newsarchive/dedup/alias_content_differs")
        self.state.add_url(item["url"], key)
        item["dedup"] = {"status": status, "article_key": key, "canonical_page": own_page}
        self.stats.inc_value(f"newsarchive/dedup/{status}")
        return item
