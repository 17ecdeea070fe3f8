"""Dedup stage: one record per article, however many URLs serve it; versions of an
article whose page changed; near-duplicates (republications) marked.

Order of the checks (DESIGN.md): canonical URL (the profile's canonicalisation of the
page's ``rel=canonical``, else of the fetched URL), then the content digest (same
cleaned title and text under another canonical URL), then MinHash LSH over word
shingles (:mod:`crawler.neardup`) for a new article. The state store
(:mod:`crawler.state`) keeps all of it between runs, so a later run does not emit an
article again and still recognises a republication of an article from an earlier run.

Outcomes, written to ``item["dedup"]["status"]``:

* ``new`` — first time this article is seen: version 1. When it is a near-duplicate of
  an earlier article, ``near_duplicate_of`` names that article's id (the status stays
  ``new``: it is a record of its own; ``item["dedup"]["near_duplicate"]`` is True);
* ``updated`` — the article's own canonical page now has other content: version n+1
  with ``previous_sha256``;
* ``duplicate`` — already known (another URL of it, or unchanged content). The item
  still goes on to the publish stage, which merges its URL into the record of the
  current batch; it is never published as a record of its own.

Which article of a near-duplicate pair is "the first": the one published earlier
(``published_at``), whatever order the crawl met them in. When the earlier one is met
after the later one's record went out (an earlier batch or run), published records
never change: the later article gets a *link revision*, a record of its own with
``version`` n+1, the same content (``previous_sha256`` = ``content_sha256``) and
``near_duplicate_of`` set, built from its published record (spool or store) and
published in this run's next batch (``newsarchive/dedup/near_duplicate_relinked``).
Only when that record cannot be read back (store unreachable) is the earlier article
marked ``near_duplicate_of`` the later instead (archive order), with a warning and
``newsarchive/dedup/near_duplicate_order_inverted``.

The state is opened when the pipeline is built and exposed at once as
``crawler.newsarchive_state`` for the spider (incremental decisions), the page
recorder and the publish stage (``mark_published``); what a killed run left
unpublished is dropped (:meth:`crawler.state.State.recover`) when the spider opens.
When the stages run in the item process (:mod:`crawler.item_process`), that is the
item process's crawler; the crawl process opens a connection of its own for its
spider and page recorder (:mod:`pipelines.offload`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from datasketch import MinHash
from scrapy.utils.defer import maybe_deferred_to_future

from crawler.cpu_pool import CpuPool
from crawler.items import ArticleItem, QuarantineItem
from crawler.neardup import DEFAULT_SHINGLE_SIZE, DEFAULT_THRESHOLD, NearDuplicateIndex, attached_signature
from crawler.sites import get_profile
from crawler.state import State, open_state

logger = logging.getLogger(__name__)


class DedupPipeline:
    """Item pipeline over a :class:`~crawler.state.State`.

    Settings: ``NEWSARCHIVE_STATE_DIR`` (folder of ``state.sqlite``),
    ``NEWSARCHIVE_STATE_URL`` (another backend; default the SQLite file),
    ``NEWSARCHIVE_SITE`` (profile whose URL rules give the canonical key),
    ``NEWSARCHIVE_NEARDUP_THRESHOLD`` (estimated Jaccard similarity, default 0.7),
    ``NEWSARCHIVE_SHINGLE_SIZE`` (words per shingle, default 5), ``NEWSARCHIVE_RUN_ID``.
    Stats: ``newsarchive/dedup/{new,near_duplicate,updated,duplicate,alias_content_differs}``,
    ``newsarchive/state/recovered/*`` (what a killed run left unpublished).
    """

    def __init__(self, state: State, profile, stats, index: NearDuplicateIndex, run_id: str = "manual",
                 crawler=None, pool: CpuPool | None = None):
        self.state = state
        #: Worker process for signatures (None: computed in-process, synchronously).
        self.pool = pool
        self.profile = profile
        self.stats = stats
        self.index = index
        self.run_id = run_id
        self.crawler = crawler
        # Articles first recorded in this run from a non-canonical page (m. host,
        # alternate section path): their canonical page, when it comes, replaces
        # that content instead of counting as an update.
        self._provisional: set[str] = set()

    @classmethod
    def from_crawler(cls, crawler):
        s = crawler.settings
        state = open_state(s.get("NEWSARCHIVE_STATE_URL") or None, Path(s.get("NEWSARCHIVE_STATE_DIR", "state")),
                           s.get("NEWSARCHIVE_WORKER_ID") or None)
        # Signatures stay in the state: the index keeps band hashes only (memory
        # per article does not grow a crawl by its signatures).
        index = NearDuplicateIndex(
            s.getfloat("NEWSARCHIVE_NEARDUP_THRESHOLD", DEFAULT_THRESHOLD),
            s.getint("NEWSARCHIVE_SHINGLE_SIZE", DEFAULT_SHINGLE_SIZE),
            signature_of=state.signature,
        )
        # Exposed at once: the publish stage (built after this one) may look for it in
        # its own from_crawler.
        crawler.newsarchive_state = state
        return cls(
            state,
            get_profile(s.get("NEWSARCHIVE_SITE", "baotuyenquang")),
            crawler.stats,
            index,
            s.get("NEWSARCHIVE_RUN_ID", "manual"),
            crawler,
            pool if (pool := CpuPool.for_crawler(crawler)).workers else None,
        )

    def open_spider(self):
        """Drop what an interrupted run left unpublished and load the stored
        signatures. Runs before the spider's ``start()`` is iterated, so the spider's
        decisions see the recovered state."""
        for name, value in self.state.recover().items():
            if value:
                self.stats.set_value(f"newsarchive/state/recovered/{name}", value)
                logger.info("state: dropped %d %s left unpublished by an interrupted run", value, name)
        # A shared state (distributed crawl): later, peers' new signatures are fetched
        # from its change log before each near-duplicate check.
        cursor = getattr(self.state, "signature_cursor", None)
        self._sig_cursor = cursor(self.index.params) if cursor else None
        loaded = self.index.load(self.state.signatures(self.index.params))
        self.stats.set_value("newsarchive/dedup/signatures_loaded", loaded)

    def close_spider(self):
        """Close the state, once the publish stage has marked its last batch
        published (:meth:`pipelines.publish.PublishPipeline.when_done_marking`;
        Scrapy closes the pipelines concurrently): None, or a coroutine."""
        publisher = getattr(self.crawler, "newsarchive_publisher", None)
        marking = getattr(publisher, "when_done_marking", lambda: None)()
        if marking is None:
            self.state.close()
            return None
        return self._close_after(marking)

    async def _close_after(self, marking) -> None:
        try:
            await maybe_deferred_to_future(marking)
        finally:
            self.state.close()

    def process_item(self, item):
        """The annotated item (:meth:`classify`). With a worker process and no signature
        left on the item by the validate stage (:func:`crawler.neardup.attached_signature`),
        an awaitable of it (Scrapy awaits it): the signature is computed there first.
        Either way the item is classified on the reactor thread in one step, so no other
        item's decision interleaves with it."""
        if isinstance(item, QuarantineItem):
            # The page row stays pending until the quarantine batch is durable
            # (mark_published with the page URL), like an article's.
            return item
        if not isinstance(item, ArticleItem):
            return item
        if self.pool is None:
            return self.classify(item)
        blob = attached_signature(item, self.index.shingle_size, self.index.num_perm)
        if blob is not None:  # signed by the validate stage: nothing to wait for
            return self.classify(item, self.index.from_bytes(blob))
        return self._classify_with_pool(item)

    async def _classify_with_pool(self, item: ArticleItem) -> ArticleItem:
        # Computed for every article, though a duplicate does not need it: knowing
        # that takes the state, which is read in classify() alone. The validate stage
        # usually has it already (process_item; one worker round trip for both).
        blob = await self.pool.run(
            "signature", item.get("title"), item.get("lead"), list(item.get("body") or ()),
            self.index.shingle_size, self.index.num_perm,
        )
        return self.classify(item, self.index.from_bytes(blob))

    # ------------------------------------------------------------------ decisions
    def classify(self, item: ArticleItem, signature: MinHash | None = None) -> ArticleItem:
        """Annotate ``item`` with its dedup outcome, version and near-duplicate link;
        update the state, in one transaction (a crash leaves all of the article's
        rows or none). ``signature``: the MinHash of the item's text when already
        computed (else it is computed here when needed)."""
        with self.state.transaction():
            return self._classify(item, signature)

    def _classify(self, item: ArticleItem, signature: MinHash | None) -> ArticleItem:
        canon = self.profile.canonicalize_url
        key = canon(item.get("canonical_url") or item["url"])
        # The canonical page itself (tracking parameters aside), not a copy on the
        # mobile host or under a second section path.
        strip = self.profile.strip_tracking
        own_page = strip(item["url"]) == strip(item.get("canonical_url") or item["url"])
        sha = item["content_sha256"]
        item["urls"] = [item["url"]]
        item["near_duplicate_of"] = None
        near = False
        known = self.state.by_key(key)
        if known is None and not self.state.claim(key):
            # A peer process is recording this article right now: it is its record.
            known = self.state.by_key(key)
            if known is None or known.content_sha256 != sha:
                self.state.add_url(item["url"], key)
                self.state.link_page(item["url"], key)
                item["dedup"] = {"status": "duplicate", "article_key": key, "canonical_page": False,
                                 "near_duplicate": False}
                self.stats.inc_value("newsarchive/dedup/duplicate")
                return item
        if known is None:
            by_text = self.state.by_digest(sha)
            if by_text is not None:
                key, status = by_text.article_key, "duplicate"
                own_page = False
            else:
                status = "new"
                item["version"] = 1
                item["previous_sha256"] = None
                sig = self._signature(item, signature)
                original = self._near_duplicate_original(item, key, sig)
                near = original is not None
                item["near_duplicate_of"] = original
                self._record(key, item, sha, 1, sig=sig, near_duplicate_of=original)
                if not own_page:
                    self._provisional.add(key)
        elif known.content_sha256 == sha:
            status = "duplicate"
        elif own_page and key in self._provisional:
            status = "duplicate"
            self._provisional.discard(key)
            sig = self._signature(item, signature)
            self._record(key, item, sha, known.version, sig=sig, near_duplicate_of=known.near_duplicate_of)
        elif own_page:
            status = "updated"
            item["version"] = known.version + 1
            item["previous_sha256"] = known.content_sha256
            item["near_duplicate_of"] = known.near_duplicate_of
            sig = self._signature(item, signature)
            self._record(key, item, sha, known.version + 1, sig=sig, previous=known.content_sha256,
                         near_duplicate_of=known.near_duplicate_of)
        else:
            # Another URL of a known article shows different text (e.g. a stale
            # copy): it is not a new version of the article, only another address.
            status = "duplicate"
            self.stats.inc_value("newsarchive/dedup/alias_content_differs")
        self.state.add_url(item["url"], key)
        self.state.link_page(item["url"], key)
        item["dedup"] = {"status": status, "article_key": key, "canonical_page": own_page, "near_duplicate": near}
        self.stats.inc_value(f"newsarchive/dedup/{'near_duplicate' if near else status}")
        return item

    def _signature(self, item: ArticleItem, computed: MinHash | None) -> MinHash:
        if computed is not None:
            return computed
        return self.index.signature(item.get("title"), item.get("lead"), item.get("body"))

    def _record(self, key, item, sha, version, *, sig, previous=None, near_duplicate_of=None) -> None:
        self.state.record(
            key, item.get("article_id"), sha, version,
            previous_sha256=previous, published_at=item.get("published_at"),
            near_duplicate_of=near_duplicate_of, minhash=self.index.to_bytes(sig),
            minhash_params=self.index.params, run_id=self.run_id,
        )
        self.index.add(key, sig)

    def _near_duplicate_original(self, item, key: str, sig) -> str | None:
        """The article id ``item`` is a near-duplicate of, or None. Makes the other
        article point at ``item`` instead when ``item`` is the earlier one and the
        other's record can still change."""
        if getattr(self, "_sig_cursor", None) is not None:
            rows, self._sig_cursor = self.state.signature_updates(self.index.params, self._sig_cursor)
            self.index.load(rows)
        candidates = [self.state.by_key(k) for k, _ in self.index.matches(sig, exclude=key)]
        # Another key of the same article (an id seen under two canonical URLs) is not
        # a republication.
        candidates = [c for c in candidates if c is not None and c.article_id != item.get("article_id")]
        if not candidates:
            return None
        # The first of the family: an article that is not itself marked as a copy,
        # published earliest (unknown dates last).
        roots = [c for c in candidates if not c.near_duplicate_of] or candidates
        root = min(roots, key=lambda c: (c.published_at or "9999", c.article_id or ""))
        mine = item.get("published_at") or "9999"
        if (root.published_at or "9999") <= mine:
            return root.near_duplicate_of or root.article_id
        # ``item`` is older than every known copy: it is the original, if the copies'
        # records can still be marked.
        mine_id = item.get("article_id")
        buffered = self._buffered_records()
        published = {}
        for c in candidates:
            if c.article_key in buffered or self._peer_holds(c) or c.near_duplicate_of == mine_id:
                continue
            record = self._published_record(c)
            if record is None:
                logger.warning("near-duplicate %s is older than %s, whose published record cannot be read "
                               "back: %s is marked near_duplicate_of %s instead", mine_id, c.article_id,
                               mine_id, root.article_id)
                self.stats.inc_value("newsarchive/dedup/near_duplicate_order_inverted")
                return root.article_id
            published[c.article_key] = record
        for c in candidates:
            if c.near_duplicate_of == mine_id:
                continue  # linked already (e.g. by a run that stopped before this one's record went out)
            if c.article_key in published:
                self._relink(c, published[c.article_key], mine_id)
                continue
            self.state.set_near_duplicate_of(c.article_key, mine_id)
            if c.article_key in buffered:
                buffered[c.article_key]["near_duplicate_of"] = mine_id
            else:
                self._peer_holds(c, {"near_duplicate_of": mine_id})
            if not c.near_duplicate_of:  # it was counted as new: it is a near-duplicate now
                self.stats.inc_value("newsarchive/dedup/new", -1)
                self.stats.inc_value("newsarchive/dedup/near_duplicate")
        return None

    def _published_record(self, known) -> dict | None:
        """The published record of ``known``'s current version (from the spool or the
        store), or None when it cannot be read."""
        publisher = getattr(self.crawler, "newsarchive_publisher", None)
        find = getattr(publisher, "published_record", None)
        if find is None or not known.article_id:
            return None
        return find(known.article_id, known.version, known.published_at)

    def _relink(self, known, record: dict, original_id: str) -> None:
        """Publish a link revision of ``known`` (see module docstring): version n+1,
        same content, ``near_duplicate_of`` = ``original_id``."""
        revision = dict(record, version=known.version + 1, previous_sha256=known.content_sha256,
                        near_duplicate_of=original_id, run_id=self.run_id)
        self.state.record(
            known.article_key, known.article_id, known.content_sha256, known.version + 1,
            previous_sha256=known.content_sha256, published_at=known.published_at,
            near_duplicate_of=original_id, minhash=self.index.stored(known.article_key),
            minhash_params=self.index.params, run_id=self.run_id,
        )
        self.crawler.newsarchive_publisher.add_revision(known.article_key, revision)
        self.stats.inc_value("newsarchive/dedup/near_duplicate_relinked")
        logger.info("near-duplicate link learned late: %s v%d is published again with near_duplicate_of %s",
                    known.article_id, known.version + 1, original_id)

    def _peer_holds(self, known, update: dict | None = None) -> bool:
        """Distributed crawl: True when another live process buffers ``known``'s
        record (recorded, not published); with ``update``, send it the change."""
        merger = getattr(self.crawler, "newsarchive_manifest_merger", None)
        claimant = getattr(self.state, "claimant", None)
        if merger is None or claimant is None or known.published:
            return False
        owner = claimant(known.article_key)
        if owner is None or owner == merger.worker:
            return False
        if update is not None:
            merger.update(owner, known.article_key, update)
        return True

    def _buffered_records(self) -> dict:
        """The publish stage's records not yet written (article key -> record dict), or
        an empty dict when there is no such buffer."""
        publisher = getattr(self.crawler, "newsarchive_publisher", None)
        records = getattr(publisher, "records", None)
        return records if isinstance(records, dict) else {}

