"""Distributed crawling (``newsarchive crawl --redis redis://HOST:PORT/DB``): several
crawler processes of one run share one frontier, one request dupefilter and one state
in Redis. The frontier is scrapy-redis's priority queue (pinned 0.9.1); this module
covers what scrapy-redis leaves open on Scrapy 2.19 (README, "Distributed crawling"):

* keys are namespaced by run id (``newsarchive:{run_id}:requests`` / ``:dupefilter`` /
  ``:processing:{worker}`` / ``:workers``; ``newsarchive:alive:{worker}``), so a new run starts
  with an empty frontier (the home page and hubs are fetched again) while processes of
  one run share everything;
* :class:`RedisDupeFilter` fingerprints with the crawler's own
  ``request_fingerprinter`` (scrapy-redis hashes its own way and ignores
  ``REQUEST_FINGERPRINTER_CLASS``);
* :class:`ReliableScheduler` filters every new request, ``dont_filter`` ones too
  (each process's ``start()`` yields the same seeds: only the first goes through),
  except requests re-issued by downloader middlewares for an in-flight request
  (retries, redirects), which keep Scrapy's own ``dont_filter`` semantics. A popped request is moved
  atomically into this process's ``processing`` hash and leaves it only when its
  callback's output (every follow-up request) is in the queue, or its download failed
  for good. A process whose ``alive`` key (refreshed every few seconds) expired is
  dead: the first live process that notices pushes its processing entries back into
  the queue and drops what it recorded in the state but never published;
* :class:`Coordinator` keeps the process open while the queue has requests or any
  live process has requests in flight, and lets it close once that has been so for
  ``NEWSARCHIVE_REDIS_IDLE_SECONDS``.
"""

from __future__ import annotations

import heapq
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Iterator

from scrapy import signals
from scrapy.exceptions import DontCloseSpider, NotConfigured
from scrapy_redis.dupefilter import RFPDupeFilter
from scrapy_redis.scheduler import Scheduler
from twisted.internet import task

from crawler.redis_state import alive_key

logger = logging.getLogger(__name__)

#: Meta key carrying the processing-hash token of the popped request a request came from.
PROC_META = "_newsarchive_proc"

# Pop the highest-priority request and park it in the processing hash, atomically: a
# process killed between the two steps would otherwise lose the request.
_POP = """
local r = redis.call('zrange', KEYS[1], 0, 0, 'WITHSCORES')
if #r == 0 then return nil end
redis.call('zremrangebyrank', KEYS[1], 0, 0)
local token = redis.sha1hex(r[1])
redis.call('hset', KEYS[2], token, r[2] .. ' ' .. r[1])
return {token, r[1]}
"""


def run_prefix(run_id: str) -> str:
    """Redis key prefix of one run: ``newsarchive:{run_id}``."""
    return f"newsarchive:{run_id}"


def worker_id() -> str:
    """``host:pid:random``: unique across machines and pid reuse."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


def redis_settings(settings, redis_url: str, run_id: str) -> None:
    """Configure ``settings`` (Scrapy Settings, priority cmdline) for a distributed
    crawl on ``redis_url``: the scheduler, dupefilter, coordinator and state backend."""
    prefix = run_prefix(run_id)
    wid = worker_id()
    values = {
        "REDIS_URL": redis_url,
        "SCHEDULER": "crawler.distributed.ReliableScheduler",
        "DUPEFILTER_CLASS": "crawler.distributed.RedisDupeFilter",
        "SCHEDULER_QUEUE_CLASS": "scrapy_redis.queue.PriorityQueue",
        "SCHEDULER_QUEUE_KEY": f"{prefix}:requests",
        "SCHEDULER_DUPEFILTER_KEY": f"{prefix}:dupefilter",
        "SCHEDULER_PERSIST": True,  # peers still use it; keys expire with the run
        "SCHEDULER_IDLE_BEFORE_CLOSE": 0,  # never block the reactor in a pop
        "NEWSARCHIVE_REDIS_URL": redis_url,
        "NEWSARCHIVE_REDIS_PREFIX": prefix,
        "NEWSARCHIVE_WORKER_ID": wid,
        "NEWSARCHIVE_STATE_URL": redis_url,
    }
    for name, value in values.items():
        settings.set(name, value, priority="cmdline")
    settings.setdefault("NEWSARCHIVE_REDIS_IDLE_SECONDS", 3.0)
    settings.setdefault("NEWSARCHIVE_REDIS_HEARTBEAT_TTL", 15.0)
    ext = dict(settings.getdict("EXTENSIONS"))
    ext["crawler.distributed.Coordinator"] = 100
    settings.set("EXTENSIONS", ext, priority="cmdline")
    smw = dict(settings.getdict("SPIDER_MIDDLEWARES"))
    smw["crawler.distributed.DoneSpiderMiddleware"] = 1  # outermost: sees the output last
    settings.set("SPIDER_MIDDLEWARES", smw, priority="cmdline")
    dmw = dict(settings.getdict("DOWNLOADER_MIDDLEWARES"))
    dmw["crawler.distributed.DoneDownloaderMiddleware"] = 1  # outermost: failures nobody retries
    settings.set("DOWNLOADER_MIDDLEWARES", dmw, priority="cmdline")


class RedisDupeFilter(RFPDupeFilter):
    """scrapy-redis's shared set of fingerprints, with Scrapy's fingerprints
    (``crawler.request_fingerprinter``, i.e. ``REQUEST_FINGERPRINTER_CLASS``)."""

    fingerprinter = None

    @classmethod
    def from_spider(cls, spider):
        df = super().from_spider(spider)
        df.fingerprinter = spider.crawler.request_fingerprinter
        return df

    def request_fingerprint(self, request) -> str:
        if self.fingerprinter is None:
            return super().request_fingerprint(request)
        return self.fingerprinter.fingerprint(request).hex()


class ReliableScheduler(Scheduler):
    """scrapy-redis's scheduler with a reliable pop (see the module docstring)."""

    @classmethod
    def from_crawler(cls, crawler):
        instance = super().from_crawler(crawler)
        s = crawler.settings
        instance.prefix = s.get("NEWSARCHIVE_REDIS_PREFIX")
        instance.worker = s.get("NEWSARCHIVE_WORKER_ID")
        instance.processing_key = f"{instance.prefix}:processing:{instance.worker}"
        instance._pop = instance.server.register_script(_POP)
        crawler.newsarchive_scheduler = instance
        # The spider's errback calls it: failures reach errbacks outside the spider
        # middlewares (and a redirect loop's IgnoreRequest outside process_exception).
        crawler.newsarchive_request_done = instance.done
        return instance

    def enqueue_request(self, request):
        parent = request.meta.get(PROC_META)
        # New requests are always filtered (every process's start() yields the same
        # seeds); re-issued ones (redirects, retries) keep Scrapy's dont_filter.
        if (parent is None or not request.dont_filter) and self.df.request_seen(request):
            self.df.log(request, self.spider)
            if parent is not None:
                self.server.hdel(self.processing_key, parent)
            return False
        if self.stats:
            self.stats.inc_value("scheduler/enqueued/redis")
        self.queue.push(request)
        if parent is not None:
            # A retry or redirect of an in-flight request: it is in the queue now.
            self.server.hdel(self.processing_key, parent)
        return True

    def next_request(self):
        popped = self._pop(keys=[self.queue.key, self.processing_key])
        if not popped:
            return None
        token, data = popped
        request = self.queue._decode_request(data)
        request.meta[PROC_META] = token.decode() if isinstance(token, bytes) else token
        if self.stats:
            self.stats.inc_value("scheduler/dequeued/redis")
        return request

    def done(self, request) -> None:
        """``request`` is finished: its follow-ups are queued, or it failed for good."""
        token = request.meta.get(PROC_META)
        if token is not None:
            self.server.hdel(self.processing_key, token)


def _done(crawler, request) -> None:
    scheduler = getattr(crawler, "newsarchive_scheduler", None)
    if scheduler is not None:
        scheduler.done(request)


class DoneSpiderMiddleware:
    """Outermost spider middleware: once a callback's output has been consumed (every
    request it yielded is in the Redis queue), its request leaves ``processing``."""

    def __init__(self, crawler):
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    async def process_spider_output_async(self, response, result):
        try:
            async for out in result:
                yield out
        finally:
            _done(self.crawler, response.request)

    def process_spider_output(self, response, result):
        try:
            yield from result
        finally:
            _done(self.crawler, response.request)


class DoneDownloaderMiddleware:
    """Outermost downloader middleware: a download failure no inner middleware turned
    into a new request (retry) is final; our errbacks yield no requests."""

    def __init__(self, crawler):
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_exception(self, request, exception):
        _done(self.crawler, request)
        return None


class Coordinator:
    """Heartbeat, re-queueing of dead peers' requests, and the shared idle rule.

    Settings: ``NEWSARCHIVE_REDIS_HEARTBEAT_TTL`` (seconds a silent process is
    considered alive, default 15), ``NEWSARCHIVE_REDIS_IDLE_SECONDS`` (the queue must
    be empty and no live process busy this long before a process closes, default 3).
    """

    def __init__(self, crawler):
        s = crawler.settings
        if not s.get("NEWSARCHIVE_REDIS_PREFIX"):
            raise NotConfigured("not a distributed crawl")
        from redis import Redis

        self.crawler = crawler
        self.server = Redis.from_url(s.get("NEWSARCHIVE_REDIS_URL"))
        self.prefix = s.get("NEWSARCHIVE_REDIS_PREFIX")
        self.worker = s.get("NEWSARCHIVE_WORKER_ID")
        self.ttl = s.getfloat("NEWSARCHIVE_REDIS_HEARTBEAT_TTL", 15.0)
        self.idle_seconds = s.getfloat("NEWSARCHIVE_REDIS_IDLE_SECONDS", 3.0)
        self.idle_since: float | None = None
        self._loop = task.LoopingCall(self.tick)
        crawler.newsarchive_manifest_merger = RunManifestMerger(self.server, self.prefix, self.worker, self.ttl)
        crawler.signals.connect(self.spider_opened, signals.spider_opened)
        crawler.signals.connect(self.spider_idle, signals.spider_idle)
        crawler.signals.connect(self.spider_closed, signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    # -- keys ---------------------------------------------------------------
    def alive_key(self, worker: str) -> str:
        return alive_key(worker)

    def processing_key(self, worker: str) -> str:
        return f"{self.prefix}:processing:{worker}"

    @property
    def queue_key(self) -> str:
        return f"{self.prefix}:requests"

    # -- lifecycle ----------------------------------------------------------
    def heartbeat(self) -> None:
        self.server.set(self.alive_key(self.worker), "1", px=int(self.ttl * 1000))
        self.server.sadd(f"{self.prefix}:workers", self.worker)

    def spider_opened(self, spider):
        self.heartbeat()
        self.reclaim()
        self._loop.start(min(1.0, self.ttl / 5), now=False)

    def spider_closed(self, spider, reason):
        if self._loop.running:
            self._loop.stop()
        self.share_article_sets(spider)
        self.server.srem(f"{self.prefix}:workers", self.worker)
        self.server.delete(self.alive_key(self.worker))
        # Anything still parked (a close for another reason than "finished") goes back.
        self._requeue(self.worker)
        if not self.server.scard(f"{self.prefix}:workers"):
            # The last process out: the run's keys are kept a day (for a look), then go.
            for key in self.server.scan_iter(match=f"{self.prefix}:*"):
                self.server.expire(key, 86400)

    def share_article_sets(self, spider) -> None:
        """Add the spider's article sets (``articles_met``, ``articles_fetched``,
        ``articles_skipped``: 16-byte URL fingerprints) to the run's Redis sets of the
        same names, for :func:`merge_run_stats` to count each article once."""
        for name in ARTICLE_SETS:
            members = list(getattr(spider, name, ()))
            for at in range(0, len(members), 10_000):
                self.server.sadd(f"{self.prefix}:{name}", *members[at:at + 10_000])

    def tick(self) -> None:
        """Every second: heartbeat, re-queue dead peers, wake the engine when the
        queue has work (it would otherwise wait for its own 5 s heartbeat)."""
        self.heartbeat()
        self.reclaim()
        slot = getattr(self.crawler.engine, "_slot", None)
        if slot is not None:
            slot.nextcall.schedule()

    def reclaim(self) -> int:
        """Push the processing entries of dead peers back into the queue and drop what
        they recorded but never published; return how many requests came back."""
        back = 0
        for raw in self.server.smembers(f"{self.prefix}:workers"):
            worker = raw.decode()
            if worker == self.worker or self.server.exists(self.alive_key(worker)):
                continue
            # Claim the dead worker first so two peers do not both re-queue it.
            if not self.server.srem(f"{self.prefix}:workers", worker):
                continue
            state = getattr(self.crawler, "newsarchive_state", None)
            urls = []
            if state is not None and hasattr(state, "recover_worker"):
                urls = state.recover_worker(worker).get("urls", [])
            n = self._requeue(worker) + self._refetch(urls)
            back += n
            logger.warning("process %s is gone: %d in-flight request(s) re-queued", worker, n)
            self.crawler.stats.inc_value("newsarchive/distributed/requeued", n)
        return back

    def _refetch(self, urls: list[str]) -> int:
        """Queue ``urls`` again (no dupefilter): pages whose articles a dead process
        had recorded but not published."""
        scheduler = getattr(self.crawler, "newsarchive_scheduler", None)
        spider = getattr(self.crawler, "spider", None)
        if scheduler is None or spider is None:
            return 0
        from scrapy import Request

        for url in urls:
            scheduler.queue.push(Request(url, callback=spider.parse, errback=spider.on_error, dont_filter=True))
        return len(urls)

    def _requeue(self, worker: str) -> int:
        key = self.processing_key(worker)
        entries = self.server.hgetall(key)
        pipe = self.server.pipeline()
        for value in entries.values():
            score, _, data = value.partition(b" ")
            pipe.zadd(self.queue_key, {data: float(score)})
        pipe.delete(key)
        pipe.execute()
        return len(entries)

    def busy_peers(self) -> int:
        """Live processes (this one included) with requests in flight."""
        busy = 0
        for raw in self.server.smembers(f"{self.prefix}:workers"):
            worker = raw.decode()
            if self.server.hlen(self.processing_key(worker)):
                busy += 1
        return busy

    def spider_idle(self, spider):
        """Close only when the shared queue is empty and no process has had requests
        in flight for ``idle_seconds``."""
        self.heartbeat()
        self.reclaim()
        if self.server.zcard(self.queue_key) or self.busy_peers():
            self.idle_since = None
            own = self.server.hvals(self.processing_key(self.worker))
            if own:
                logger.debug("idle with %d request(s) in flight: %r", len(own), [v[:300] for v in own])
            raise DontCloseSpider
        now = time.monotonic()
        if self.idle_since is None:
            self.idle_since = now
        if now - self.idle_since < self.idle_seconds:
            raise DontCloseSpider


class RunManifestMerger:
    """One run manifest for all the processes of a distributed run. Each process, when
    its part of the run is in the store, adds its manifest entries to
    ``{prefix}:manifest_parts`` and leaves ``{prefix}:publishers``; the last to leave
    (dead peers do not count) writes the merged manifest, so readers that follow
    manifests never see part of a run. ``batch_offset``: this process's batch numbers
    start there (1000 per process), so dataset keys of peers never collide."""

    BATCHES_PER_PROCESS = 1000

    def __init__(self, server, prefix: str, worker: str, ttl: float = 15.0):
        self.server = server
        self.prefix = prefix
        self.worker = worker
        self.ttl = ttl
        self.store = None  # set by the publish stage
        index = server.incr(f"{prefix}:publisher_seq") - 1
        if index >= 100:
            raise ValueError("a distributed run takes at most 100 processes (5-digit batch numbers)")
        self.batch_offset = index * self.BATCHES_PER_PROCESS
        server.sadd(f"{prefix}:publishers", worker)

    # -- records of articles another process holds ---------------------------
    def send(self, owner: str, key: str, rank: int, record: dict) -> None:
        """A duplicate page of an article whose record ``owner`` buffers: hand it over
        (its URL, and its content when it is the better page)."""
        import json

        self.server.rpush(f"{self.prefix}:merge:{owner}", json.dumps({"key": key, "rank": rank, "record": record}))

    def update(self, owner: str, key: str, fields: dict) -> None:
        """Set ``fields`` on the record of ``key`` that ``owner`` buffers (e.g. a
        near-duplicate link found by this process)."""
        import json

        self.server.rpush(f"{self.prefix}:merge:{owner}", json.dumps({"key": key, "set": fields}))

    def receive(self) -> list[dict]:
        """What peers handed over to this process (and forget it)."""
        import json

        key = f"{self.prefix}:merge:{self.worker}"
        pipe = self.server.pipeline(transaction=True)
        pipe.lrange(key, 0, -1)
        pipe.delete(key)
        raw, _ = pipe.execute()
        return [json.loads(r) for r in raw]

    #: Manifest entries per Redis list element: a part is pushed and read a chunk at a time.
    ENTRIES_PER_CHUNK = 1000

    def finalize(self, run: dict, entries: Callable[[], Iterable[dict]]) -> str | None:
        """Add this process's part; write the run manifest when no live peer is left.
        ``entries()`` yields this process's ledger entries sorted by key (a
        :class:`~crawler.dataset.spool.Ledger`). Returns the manifest key when this
        process wrote it.

        Neither side holds a run's entries: each process pushes its sorted entries to
        ``{prefix}:manifest_entries:<worker>`` in chunks, and the writer merges the
        parts' chunk streams by key (batch numbers differ per process, so keys never
        repeat across parts)."""
        import json

        from crawler.dataset.manifest import manifest_entry, write_manifest

        chunks_key = f"{self.prefix}:manifest_entries:{self.worker}"
        self.server.delete(chunks_key)  # a part left by an earlier try of this finalize
        count, chunk = 0, []
        for entry in entries():
            chunk.append(manifest_entry(entry))
            if len(chunk) == self.ENTRIES_PER_CHUNK:
                self.server.rpush(chunks_key, json.dumps(chunk))
                count, chunk = count + len(chunk), []
        if chunk:
            self.server.rpush(chunks_key, json.dumps(chunk))
            count += len(chunk)
        part = {"run": run, "worker": self.worker, "entries_key": chunks_key, "entries": count}
        self.server.rpush(f"{self.prefix}:manifest_parts", json.dumps(part))
        self.server.srem(f"{self.prefix}:publishers", self.worker)
        if not self._last_to_leave():
            logger.info("run %s: manifest part stored; peers are still publishing", run["run_id"])
            return None
        if not self.server.set(f"{self.prefix}:manifest_writer", self.worker, nx=True):
            return None
        # Runs in the publish worker thread: waiting here does not stop the reactor.
        parts = [json.loads(p) for p in self.server.lrange(f"{self.prefix}:manifest_parts", 0, -1)]
        # A process that finalized twice (a store error on the first try) pushed its
        # part twice; its chunk list holds the last try's entries once.
        parts = list({p["worker"]: p for p in parts}.values())
        runs = [p["run"] for p in parts]
        merged = {
            "run_id": run["run_id"],
            "status": "finished" if all(r.get("status") == "finished" for r in runs) else "interrupted",
            "started_at": min(r.get("started_at") or "" for r in runs) or None,
            "finished_at": max(r.get("finished_at") or "" for r in runs) or None,
            "processes": len(parts),
        }
        stored, totals = write_manifest(self.store, merged, lambda: self._merged_entries(parts))
        logger.info("run %s: manifest %s (%d records, %d processes)", run["run_id"], stored.key,
                    totals["records"], len(parts))
        return stored.key

    def _part_entries(self, part: dict) -> Iterator[dict]:
        """One part's entries, in key order, read from Redis a chunk at a time."""
        import json

        for i in range(self.server.llen(part["entries_key"])):
            for raw in self.server.lrange(part["entries_key"], i, i):
                yield from json.loads(raw)

    def _merged_entries(self, parts: list[dict]) -> Iterator[dict]:
        return heapq.merge(*(self._part_entries(p) for p in parts), key=lambda e: e["key"])

    def _last_to_leave(self) -> bool:
        """True when no live peer is still publishing. A peer whose heartbeat is fresh
        (refreshed within the last few seconds) is alive and will finish the manifest
        itself; one whose heartbeat is going stale was killed: wait for it to expire
        (at most the heartbeat TTL)."""
        key = f"{self.prefix}:publishers"
        deadline = time.monotonic() + self.ttl + 2
        while True:
            stale = False
            for raw in self.server.smembers(key):
                left = self.server.pttl(alive_key(raw.decode()))
                if left < 0:  # expired (or never set): dead
                    self.server.srem(key, raw)
                elif left > (self.ttl - 3) * 1000:
                    return False
                else:
                    stale = True
            if not stale:
                return not self.server.scard(key)
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)


#: The spider's sets of canonical article URLs that a distributed run unites in Redis.
ARTICLE_SETS = ("articles_met", "articles_fetched", "articles_skipped")


def merge_run_stats(redis_url: str, run_id: str, stats: dict) -> dict:
    """Add this process's stats to the run's list in Redis and return
    the merge over every process that has finished so far (numbers summed, lists joined,
    start the earliest, finish the latest; the articles met and skipped counted once
    each, from the sets :meth:`Coordinator.share_article_sets` filled): the run report
    of a distributed run is rewritten by each process as it leaves, the last one's
    covering all of them."""
    import json
    from datetime import datetime

    from redis import Redis

    server = Redis.from_url(redis_url)
    key = f"{run_prefix(run_id)}:reports"

    def plain(v):
        return v.isoformat() if isinstance(v, datetime) else v

    server.rpush(key, json.dumps({"stats": {k: plain(v) for k, v in stats.items()}}, default=str))
    merged: dict = {}
    for raw in server.lrange(key, 0, -1):
        part = json.loads(raw)
        for name, value in part["stats"].items():
            old = merged.get(name)
            if name == "start_time":
                merged[name] = min(old, value) if old else value
            elif name == "finish_time":
                merged[name] = max(old, value) if old else value
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(old, (int, float)):
                merged[name] = old + value
            elif isinstance(value, list) and isinstance(old, list):
                merged[name] = old + [v for v in value if v not in old]
            else:
                merged[name] = value if old is None else old
    prefix = run_prefix(run_id)
    if server.exists(f"{prefix}:articles_met"):
        # Each process met its share of the articles, and several met the same ones.
        merged["newsarchive/discovery/article_urls"] = server.scard(f"{prefix}:articles_met")
        merged["newsarchive/incremental/skipped"] = len(
            server.sdiff([f"{prefix}:articles_skipped", f"{prefix}:articles_fetched"]))
    return merged
