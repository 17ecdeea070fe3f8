"""The crawl state (:class:`crawler.state.State`) in Redis, shared by the processes of a
distributed crawl (``newsarchive crawl --redis``) and kept between runs like the SQLite
file. Keys (prefix ``newsarchive:state:``):

* ``article:{key}`` hash — article_id, content_sha256, version, published_at,
  near_duplicate_of, first_seen, last_seen;
* ``version:{key}:{n}`` hash — content_sha256, previous_sha256, near_duplicate_of, minhash,
  minhash_params, published (0/1), run_id, worker, recorded_at;
* ``urls:{key}`` set; ``digests`` hash (sha256 -> first key); ``claim:{key}`` (which
  process recorded the article first, :meth:`RedisState.claim`);
* ``sigs:{params}`` hash (key -> current signature) and ``siglog:{params}`` list (keys in
  the order their signature changed: peers fetch what is new, :meth:`signature_updates`);
* ``page:{url}`` hash; ``article_pages:{key}`` set;
* ``pending:{worker}`` / ``pending_pages:{worker}`` sets: what a process recorded and has
  not published yet, so what a dead process leaves is dropped
  (:meth:`RedisState.recover_worker`) and its articles count as not known again.

A process is alive while its key ``newsarchive:alive:{worker}`` exists
(crawler/distributed.py refreshes it). Each public write is one MULTI/EXEC transaction
where it matters for a crash (``record``, ``mark_published``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone

from crawler.state import KnownArticle, KnownPage, State, StateError

PREFIX = "newsarchive:state:"


def alive_key(worker: str) -> str:
    """Key that exists while process ``worker`` is alive."""
    return f"newsarchive:alive:{worker}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _s(v) -> str | None:
    return v.decode() if isinstance(v, bytes) else v


class RedisState(State):
    """State on a Redis database (``redis://host:port/db``). ``worker`` names this
    process (its unpublished writes are tracked under it)."""

    def __init__(self, url: str, worker: str | None = None):
        from redis import Redis
        from redis.exceptions import RedisError

        self.worker = worker or "single"
        self._lock = threading.RLock()
        try:
            self.r = Redis.from_url(url)
            self.r.ping()
        except (RedisError, ValueError) as exc:
            raise StateError(f"cannot open state on {url}: {exc}") from exc

    def k(self, *parts: str) -> str:
        return PREFIX + ":".join(parts)

    # -- lifecycle ------------------------------------------------------------
    def recover(self) -> dict[str, int]:
        """Drop what processes that are no longer alive recorded but never published."""
        totals = {"articles_dropped": 0, "versions_dropped": 0, "pages_dropped": 0}
        for raw in self.r.smembers(self.k("pending_workers")):
            worker = _s(raw)
            if worker == self.worker or self.r.exists(alive_key(worker)):
                continue
            for name, value in self.recover_worker(worker).items():
                if name in totals:
                    totals[name] += value
        return totals

    def recover_worker(self, worker: str) -> dict:
        """Drop what ``worker`` recorded and never marked published. Returns the counts
        and ``urls``: every URL of the dropped articles and pages, which a live peer
        fetches again (the dead process held their records in memory only)."""
        articles = versions = pages = 0
        urls: set[str] = set()
        with self._lock:
            for raw in self.r.smembers(self.k("pending", worker)):
                key = _s(raw)
                art = self.r.hgetall(self.k("article", key))
                if not art:
                    continue
                urls.update(self.urls_of(key))
                top = int(art[b"version"])
                kept = None
                dropped: list[bytes] = []
                for v in range(top, 0, -1):
                    ver = self.r.hgetall(self.k("version", key, str(v)))
                    if ver and ver.get(b"published") == b"0" and _s(ver.get(b"worker")) == worker:
                        self.r.delete(self.k("version", key, str(v)))
                        dropped.append(ver[b"content_sha256"])
                        versions += 1
                    elif ver:
                        kept = (v, ver)
                        break
                # A version that only added a near-duplicate link has its predecessor's
                # digest: that one stays.
                for sha in set(dropped) - ({kept[1][b"content_sha256"]} if kept else set()):
                    if _s(self.r.hget(self.k("digests"), _s(sha))) == key:
                        self.r.hdel(self.k("digests"), _s(sha))
                if kept is None:
                    self.r.delete(self.k("article", key), self.k("urls", key), self.k("claim", key))
                    for params in self.r.smembers(self.k("sigparams")):
                        self.r.hdel(self.k("sigs", _s(params)), key)
                    articles += 1
                else:
                    v, ver = kept
                    restored = {"version": v, "content_sha256": ver[b"content_sha256"]}
                    if b"near_duplicate_of" in ver:  # absent in versions written before the field
                        restored["near_duplicate_of"] = ver[b"near_duplicate_of"]
                    self.r.hset(self.k("article", key), mapping=restored)
                    if ver.get(b"minhash"):
                        params = _s(ver[b"minhash_params"])
                        self.r.hset(self.k("sigs", params), key, ver[b"minhash"])
                        self.r.rpush(self.k("siglog", params), key)
            for raw in self.r.smembers(self.k("pending_pages", worker)):
                url = _s(raw)
                if self.r.hget(self.k("page", url), "pending") == b"1":
                    self.r.delete(self.k("page", url))
                    urls.add(url)
                    pages += 1
            self.r.delete(self.k("pending", worker), self.k("pending_pages", worker))
            self.r.srem(self.k("pending_workers"), worker)
        return {"articles_dropped": articles, "versions_dropped": versions, "pages_dropped": pages,
                "urls": sorted(urls)}

    def close(self) -> None:
        self.r.close()

    # -- articles -------------------------------------------------------------
    def _article(self, key: str | None) -> KnownArticle | None:
        if key is None:
            return None
        a = self.r.hgetall(self.k("article", key))
        if not a:
            return None
        version = int(a[b"version"])
        published = self.r.hget(self.k("version", key, str(version)), "published")
        return KnownArticle(
            key, _s(a.get(b"article_id")) or None, _s(a[b"content_sha256"]), version,
            _s(a.get(b"published_at")) or None, _s(a.get(b"near_duplicate_of")) or None,
            published != b"0",
        )

    def by_key(self, article_key: str) -> KnownArticle | None:
        return self._article(article_key)

    def by_digest(self, content_sha256: str) -> KnownArticle | None:
        return self._article(_s(self.r.hget(self.k("digests"), content_sha256)))

    def claim(self, article_key: str) -> bool:
        """True for the one process that may record ``article_key`` as new."""
        return bool(self.r.set(self.k("claim", article_key), self.worker, nx=True))

    def claimant(self, article_key: str) -> str | None:
        """The process that recorded ``article_key`` as new (:meth:`claim`)."""
        return _s(self.r.get(self.k("claim", article_key)))

    def record(self, article_key, article_id, content_sha256, version, *, previous_sha256=None, published_at=None,
               near_duplicate_of=None, minhash=None, minhash_params=None, run_id=None) -> None:
        now = _now()
        key = article_key
        old = self.r.hgetall(self.k("article", key))
        art = {"content_sha256": content_sha256, "version": version, "last_seen": now,
               "near_duplicate_of": near_duplicate_of or ""}
        if not old:
            art.update(first_seen=now, article_id=article_id or "", published_at=published_at or "")
        else:
            if not old.get(b"article_id") and article_id:
                art["article_id"] = article_id
            if published_at:
                art["published_at"] = published_at
        ver = {"content_sha256": content_sha256, "previous_sha256": previous_sha256 or "", "published": 0,
               "near_duplicate_of": near_duplicate_of or "", "run_id": run_id or "", "worker": self.worker,
               "recorded_at": now}
        if minhash is not None:
            ver.update(minhash=minhash, minhash_params=minhash_params or "")
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k("article", key), mapping=art)
        pipe.hset(self.k("version", key, str(version)), mapping=ver)
        pipe.hsetnx(self.k("digests"), content_sha256, key)
        pipe.sadd(self.k("pending", self.worker), key)
        pipe.sadd(self.k("pending_workers"), self.worker)
        if minhash is not None:
            pipe.sadd(self.k("sigparams"), minhash_params or "")
            pipe.hset(self.k("sigs", minhash_params or ""), key, minhash)
            pipe.rpush(self.k("siglog", minhash_params or ""), key)
        pipe.execute()

    def set_near_duplicate_of(self, article_key: str, original_id: str | None) -> None:
        version = self.r.hget(self.k("article", article_key), "version")
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k("article", article_key), "near_duplicate_of", original_id or "")
        if version is not None:
            pipe.hset(self.k("version", article_key, _s(version)), "near_duplicate_of", original_id or "")
        pipe.execute()

    def add_url(self, url: str, article_key: str) -> None:
        self.r.sadd(self.k("urls", article_key), url)

    def urls_of(self, article_key: str) -> list[str]:
        return sorted(_s(u) for u in self.r.smembers(self.k("urls", article_key)))

    def signatures(self, minhash_params: str) -> Iterator[tuple[str, bytes]]:
        rows = self.r.hgetall(self.k("sigs", minhash_params))
        return iter(sorted((_s(k), v) for k, v in rows.items()))

    def signature(self, article_key: str, minhash_params: str) -> bytes | None:
        return self.r.hget(self.k("sigs", minhash_params), article_key)

    def signature_updates(self, minhash_params: str, cursor: int) -> tuple[list[tuple[str, bytes]], int]:
        """Signatures that changed since ``cursor`` (a position in the change log),
        and the new cursor: how a process learns its peers' new articles."""
        keys = [_s(k) for k in self.r.lrange(self.k("siglog", minhash_params), cursor, -1)]
        if not keys:
            return [], cursor
        blobs = self.r.hmget(self.k("sigs", minhash_params), keys)
        return [(k, b) for k, b in zip(keys, blobs) if b], cursor + len(keys)

    def signature_cursor(self, minhash_params: str) -> int:
        """The change log's current end (what :meth:`signatures` already covers)."""
        return self.r.llen(self.k("siglog", minhash_params))

    def mark_published(self, keys: Iterable[str]) -> None:
        keys = list(dict.fromkeys(keys))
        if not keys:
            return
        with self._lock:
            pipe = self.r.pipeline(transaction=True)
            for key in keys:
                top = self.r.hget(self.k("article", key), "version")
                if top is not None:
                    for v in range(int(top), 0, -1):
                        vk = self.k("version", key, str(v))
                        if self.r.hget(vk, "published") != b"0":
                            break
                        pipe.hset(vk, "published", 1)
                for url in {key, *(_s(u) for u in self.r.smembers(self.k("article_pages", key)))}:
                    if self.r.hget(self.k("page", url), "pending") == b"1":
                        pipe.hset(self.k("page", url), "pending", 0)
                pipe.srem(self.k("pending", self.worker), key)
            pipe.execute()

    # -- pages ----------------------------------------------------------------
    def page(self, url: str) -> KnownPage | None:
        p = self.r.hgetall(self.k("page", url))
        if not p:
            return None
        g = lambda n: _s(p.get(n.encode())) or None  # noqa: E731
        key = g("article_key")
        published_at = _s(self.r.hget(self.k("article", key), "published_at")) or None if key else None
        return KnownPage(url, key, int(p[b"status"]), g("etag"), g("last_modified"), g("sitemap_lastmod"),
                         g("location"), p.get(b"pending") == b"1", g("last_checked"), published_at)

    def record_page(self, url, status, *, etag=None, last_modified=None, location=None, sitemap_lastmod=None,
                    pending=False, run_id=None) -> None:
        now = _now()
        pk = self.k("page", url)
        if status == 304:
            if not self.r.exists(pk):
                return
            fields = {"last_checked": now, "run_id": run_id or ""}
            for name, value in (("sitemap_lastmod", sitemap_lastmod), ("etag", etag), ("last_modified", last_modified)):
                if value:
                    fields[name] = value
            pipe = self.r.pipeline(transaction=True)
            pipe.hset(pk, mapping=fields)
            self._take_waiting_lastmod(pipe, pk, url, run_id, sitemap_lastmod)
            return
        old = self.r.hgetall(pk)
        fields = {"status": status, "etag": etag or "", "last_modified": last_modified or "",
                  "location": location or "", "pending": int(pending), "last_checked": now, "run_id": run_id or ""}
        if sitemap_lastmod:
            fields["sitemap_lastmod"] = sitemap_lastmod
        if not old:
            fields["first_seen"] = now
        if status != 200:
            fields["article_key"] = ""
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(pk, mapping=fields)
        if pending:
            pipe.sadd(self.k("pending_pages", self.worker), url)
            pipe.sadd(self.k("pending_workers"), self.worker)
        self._take_waiting_lastmod(pipe, pk, url, run_id, sitemap_lastmod)

    def _take_waiting_lastmod(self, pipe, pk: str, url: str, run_id: str | None, known: str | None) -> None:
        """Run ``pipe`` (the page row's write), reading in the same round trip the
        lastmod a sitemap left waiting for ``url`` in run ``run_id`` (see
        :meth:`note_lastmod`), and put it on the row when the fetch did not know one."""
        # Read after the row's write, as note_lastmod reads the row after its own write:
        # of a fetch and a sitemap read in two processes at once, one sees the other's.
        wait = bool(run_id and not known)
        if wait:
            pipe.hget(self.k("run_lastmod", run_id), url)
        results = pipe.execute()
        if wait and results[-1]:
            self.r.hset(pk, "sitemap_lastmod", results[-1])

    def link_page(self, url: str, article_key: str) -> None:
        art = self._article(article_key)
        pending = 0 if art and art.published else 1
        pk = self.k("page", url)
        if not self.r.exists(pk):
            return
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(pk, mapping={"article_key": article_key, "pending": pending})
        pipe.sadd(self.k("article_pages", article_key), url)
        if pending:
            pipe.sadd(self.k("pending_pages", self.worker), url)
            pipe.sadd(self.k("pending_workers"), self.worker)
        pipe.execute()

    def note_lastmod(self, url: str, lastmod: str, run_id: str) -> None:
        """As :meth:`State.note_lastmod`; for a page not fetched yet, the lastmod also
        waits in the run's hash (kept a day) for the process that fetches it: in a
        distributed crawl that is often another process than the sitemap's reader, and
        the sitemap's request for it is dropped by the shared dupefilter."""
        pk = self.k("page", url)
        waiting = self.k("run_lastmod", run_id)
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(waiting, url, lastmod)
        pipe.expire(waiting, 86400)
        pipe.hget(pk, "run_id")
        if pipe.execute()[2] == run_id.encode():
            self.r.hset(pk, "sitemap_lastmod", lastmod)

    def count(self) -> int:
        return sum(1 for _ in self.r.scan_iter(match=self.k("article", "*"), count=1000))
