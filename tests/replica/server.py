"""Replica of baotuyenquang.com.vn served from ``tests/fixtures/portal``.

The server is an HTTP forward proxy for the portal's two hosts, so a crawler
runs with production URLs and only ``http_proxy``/``https_proxy`` pointing at
it: absolute-form requests serve ``http://``, ``CONNECT host:443`` opens a TLS
tunnel (throwaway self-signed certificate) that serves ``https://``, and
origin-form requests sent straight to the server are routed by ``Host`` header
or ``/<host>/<rest>`` path prefix, as ``tests/fixtures/portal/README.md``
describes. Any other host is refused with 403 and logged, so tests can prove
the never-fetch set was never requested.

Route options for failure drills, beyond those of the fixtures' README (the gold
fixtures use none of them; tests add them to a copy of routes.json):

* ``"drop": N`` — the first N requests of the route get no answer: the connection is
  closed (TCP FIN; inside a CONNECT tunnel, without TLS close_notify) right after the
  request is read. Logged with ``status`` 0. ``fail_first`` counts these requests too.
* ``"drop_after_bytes": B`` (with ``drop``) — instead of nothing, send the status line,
  the headers (``Content-Length`` of the whole body) and the first B body bytes, then
  close: a body cut mid-way (the client sees data loss). Logged with the route's status.
* ``"close_delimited": true`` — send the body without ``Content-Length`` and close
  the connection after it (RFC 9112 §6.3 rule 8): the client learns the size only
  by reading, as from a streaming server.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import socket
import socketserver
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MAIN_HOST = "baotuyenquang.com.vn"
PORTAL_HOSTS = (MAIN_HOST, "m.baotuyenquang.com.vn")
DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "fixtures" / "portal"
ERROR_404 = f"site/{MAIN_HOST}/_errors/404.html"
ERROR_500 = f"site/{MAIN_HOST}/_errors/500.html"
HTML = "text/html; charset=utf-8"


def _query_key(query: str) -> tuple[tuple[str, str], ...]:
    """Order-insensitive, encoding-insensitive form of a query string.

    ``parse_qsl`` percent-decodes as UTF-8 and turns ``+`` into a space, so a
    raw ``q=Na Hang`` in routes.json, ``q=Na+Hang`` and ``q=Na%20Hang`` on the
    wire all compare equal; sorting makes the pairs a multiset.
    """
    return tuple(sorted(parse_qsl(query, keep_blank_values=True)))


def _host_of(value: str | None) -> str:
    """Lower-cased host name of a ``Host`` header / authority ('' if none)."""
    try:
        return (urlsplit("//" + (value or "")).hostname or "").lower()
    except ValueError:
        return ""


def _header(headers: dict[str, str], name: str) -> str | None:
    """Case-insensitive lookup in a routes.json header object."""
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def _http_date(value: str | None) -> dt.datetime | None:
    try:
        return email.utils.parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        return None


def _tls_context(hosts: tuple[str, ...]) -> tuple[ssl.SSLContext, bytes]:
    """Server TLS context with a fresh self-signed certificate for ``hosts``.

    Returns ``(context, certificate_pem)``. EC keys keep generation to a few
    milliseconds, so every server gets its own certificate.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # load_cert_chain only reads files; the directory is gone once loaded.
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "cert.pem").write_bytes(cert_pem)
        (Path(tmp) / "key.pem").write_bytes(key_pem)
        ctx.load_cert_chain(Path(tmp) / "cert.pem", Path(tmp) / "key.pem")
    return ctx, cert_pem


@dataclass
class _Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    delay: float = 0.0
    drop_after: int | None = None  # close the connection after this many body bytes; -1: before any answer
    close_delimited: bool = False  # no Content-Length: the end of the body is the end of the connection


class RouteTable:
    """routes.json of a fixture folder, indexed for lookup.

    Raises ``FileNotFoundError`` at load time if a route names a missing body
    file, so a broken fixture fails fast instead of in the middle of a crawl.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.routes: list[dict] = json.loads((self.root / "routes.json").read_text("utf-8"))
        self._exact: dict[tuple, int] = {}
        self._prefix: list[tuple[str, str, int]] = []
        for i, route in enumerate(self.routes):
            for f in [route.get("file")] + [v["file"] for v in route.get("versions", [])]:
                if f is not None and not (self.root / f).is_file():
                    raise FileNotFoundError(self.root / f)
            host = route.get("host", MAIN_HOST)
            path, _, query = route["path"].partition("?")
            if route.get("match") == "prefix":
                self._prefix.append((host, unquote(path), i))
            else:
                self._exact.setdefault((host, unquote(path), _query_key(query)), i)
        self._prefix.sort(key=lambda p: -len(p[1]))  # longest prefix wins

    def lookup(self, host: str, path: str, query: str) -> int | None:
        """Index of the route answering (host, path, query), or None (= 404)."""
        path = unquote(path)
        hit = self._exact.get((host, path, _query_key(query)))
        if hit is not None:
            return hit
        return next((i for h, p, i in self._prefix if h == host and path.startswith(p)), None)

    def body(self, rel: str | None, fallback: bytes = b"") -> bytes:
        """Bytes of a fixture file; ``fallback`` for null or missing error pages."""
        if rel is None:
            return b""
        path = self.root / rel
        return path.read_bytes() if path.is_file() else fallback


class ReplicaServer:
    """Threaded forward proxy + origin server replaying the portal fixtures.

    ``ReplicaServer(root=None, host='127.0.0.1', port=0, log_path=None)``;
    ``root`` defaults to ``tests/fixtures/portal``; ``port=0`` picks a free
    port; ``log_path`` appends every logged request as a JSON line (the file
    keeps the whole lifetime: ``reset()`` does not truncate it).

    ``requests`` is a snapshot list of ``{'method', 'scheme', 'host', 'path',
    'query', 'url', 'status', 'time'}`` (``time`` = epoch seconds at receipt).
    Portal requests and refused ones are logged; tunnel-opening CONNECTs to the
    portal and ``/__replica__/`` control calls are not. A refused CONNECT is
    logged with ``path=''`` and ``url='https://host:port'``.

    Use as a context manager or call ``start()`` / ``stop()``.
    """

    def __init__(self, root: Path | str | None = None, host: str = "127.0.0.1",
                 port: int = 0, log_path: Path | str | None = None):
        self.table = RouteTable(Path(root) if root is not None else DEFAULT_ROOT)
        self.host = host
        self._want_port = port
        self.log_path = Path(log_path) if log_path else None
        self.tls_context, self.cert_pem = _tls_context(PORTAL_HOSTS)
        self._lock = threading.Lock()
        self._log: list[dict] = []
        self._hits: dict[int, int] = {}  # every request per route (drives fail_first)
        self._ok: dict[int, int] = {}  # successful requests per route (drives versions)
        self._log_file = None
        self._server: _ProxyServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self.stopping = False

    # -- lifecycle -------------------------------------------------------
    def start(self) -> "ReplicaServer":
        """Bind, listen and serve in a background thread; returns self."""
        if self.log_path:
            self._log_file = self.log_path.open("a", encoding="utf-8")
        self.stopping = False
        self._server = _ProxyServer((self.host, self._want_port), self)
        self._port = self._server.server_address[1]
        # a short poll interval keeps stop() (which waits for one poll) fast in tests
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="replica", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open (keep-alive / tunnel) connections."""
        if self._server is None:
            return
        self.stopping = True
        self._server.shutdown()
        self._server.server_close()
        # Handler threads block reading idle keep-alive sockets; shutting the
        # sockets down wakes them up instead of leaving them for the timeout.
        for handler in list(self._server.handlers):
            try:
                handler.connection.shutdown(socket.SHUT_RDWR)
            except (OSError, ValueError):
                pass
        self._thread.join()
        with self._lock:  # a late handler thread must not write to a closed file
            log_file, self._log_file = self._log_file, None
        if log_file:
            log_file.close()
        self._server = None

    def __enter__(self) -> "ReplicaServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The listening port (valid after ``start()``, kept after ``stop()``)."""
        return self._port

    @property
    def proxy_url(self) -> str:
        """``http://HOST:PORT``, for ``http_proxy``/``https_proxy``."""
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[dict]:
        """Snapshot of the request log (see class docstring for the shape)."""
        with self._lock:
            return [dict(e) for e in self._log]

    def reset(self) -> None:
        """Clear the per-route counters and the in-memory request log."""
        with self._lock:
            self._log.clear()
            self._hits.clear()
            self._ok.clear()

    # -- request handling (called from handler threads) -------------------
    def _record(self, method: str, scheme: str, host: str, path: str, query: str,
                url: str, status: int, started: float) -> None:
        entry = {"method": method, "scheme": scheme, "host": host, "path": path,
                 "query": query, "url": url, "status": status, "time": started}
        with self._lock:
            self._log.append(entry)
            if self._log_file:
                self._log_file.write(json.dumps(entry, ensure_ascii=False) + "\n")
                self._log_file.flush()

    def refuse(self, method: str, scheme: str, host: str, path: str, query: str, url: str) -> _Reply:
        """403 for a host outside the portal; logged so tests can see it."""
        self._record(method, scheme, host, path, query, url, 403, time.time())
        return _Reply(403, [("Content-Type", "text/plain; charset=utf-8")], b"not routed")

    def serve(self, method: str, scheme: str, host: str, path: str, query: str, headers) -> _Reply:
        """Answer a portal request per routes.json, update counters, log it."""
        started = time.time()
        url = f"{scheme}://{host}{path}" + (f"?{query}" if query else "")
        idx = self.table.lookup(host, path, query)
        reply = self._route_reply(idx, headers)
        self._record(method, scheme, host, path, query, url, reply.status, started)
        return reply

    def _route_reply(self, idx: int | None, req_headers) -> _Reply:
        table = self.table
        if idx is None:
            return _Reply(404, [("Content-Type", HTML)], table.body(ERROR_404, b"Not Found"))
        route = table.routes[idx]
        delay = route.get("delay_ms", 0) / 1000
        with self._lock:
            hits = self._hits[idx] = self._hits.get(idx, 0) + 1
            if hits <= route.get("drop", 0):
                after = route.get("drop_after_bytes")
                if after is None:
                    return _Reply(0, delay=delay, drop_after=-1)
                # The answer the route would give, cut after `after` body bytes.
                reply = self._answer(route, n=self._ok.get(idx, 0) + 1, req_headers=req_headers, delay=delay)
                reply.drop_after = after
                return reply
            if hits <= route.get("fail_first", 0) + route.get("drop", 0):
                return _Reply(500, [("Content-Type", HTML)], table.body(ERROR_500, b"Server Error"), delay)
            n = self._ok[idx] = self._ok.get(idx, 0) + 1
        return self._answer(route, n, req_headers, delay)

    def _answer(self, route: dict, n: int, req_headers, delay: float) -> _Reply:
        """The route's answer to its ``n``-th successful request (versions, 304, redirect)."""
        table = self.table
        file, headers = route.get("file"), dict(route.get("headers", {}))
        versions = [v for v in route.get("versions", []) if v["from_request"] <= n]
        if versions:
            entry = max(versions, key=lambda v: v["from_request"])
            file = entry["file"]
            headers.update(entry.get("headers", {}))
        if route["status"] == 200 and self._not_modified(headers, req_headers):
            kept = [(k, v) for k, v in headers.items() if k.lower() in ("etag", "last-modified")]
            return _Reply(304, kept, b"", delay)
        body = table.body(file)
        out = [(k, v) for k, v in headers.items() if k.lower() != "content-length"]
        if "redirect_to" in route:
            out.append(("Location", route["redirect_to"]))
        if route.get("close_delimited"):
            out.append(("Connection", "close"))
        return _Reply(route["status"], out, body, delay, close_delimited=bool(route.get("close_delimited")))

    @staticmethod
    def _not_modified(headers: dict[str, str], req_headers) -> bool:
        etag = _header(headers, "ETag")
        inm = req_headers.get("If-None-Match")
        if inm is not None:  # RFC 9110: If-None-Match wins over If-Modified-Since
            tags = [t.strip().removeprefix("W/") for t in inm.split(",")]  # weak comparison
            return etag is not None and (etag in tags or "*" in tags)
        since = _http_date(req_headers.get("If-Modified-Since"))
        modified = _http_date(_header(headers, "Last-Modified"))
        return since is not None and modified is not None and since >= modified

    def control(self, method: str, path: str) -> _Reply:
        """``GET /__replica__/requests`` (JSON log), ``POST /__replica__/reset``."""
        if path == "/__replica__/requests" and method in ("GET", "HEAD"):
            body = json.dumps(self.requests, ensure_ascii=False).encode()
        elif path == "/__replica__/reset" and method == "POST":
            self.reset()
            body = b'{"reset": true}'
        else:
            return _Reply(404, [("Content-Type", "application/json")], b"{}")
        return _Reply(200, [("Content-Type", "application/json; charset=utf-8")], body)

    def is_self(self, host: str, port: int | None) -> bool:
        """True when an absolute-form URL names this server itself."""
        return port == self.port and host in ("127.0.0.1", "localhost", self.host)


class _ProxyServer(socketserver.ThreadingTCPServer):
    # Plain TCPServer, not http.server.HTTPServer: the latter calls getfqdn(),
    # which can stall for seconds on a machine without DNS.
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], replica: ReplicaServer):
        self.replica = replica
        self.handlers: set[_Handler] = set()
        super().__init__(address, _Handler)

    def handle_error(self, request, client_address) -> None:
        if not self.replica.stopping:  # errors from sockets we closed in stop() are expected
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """One client connection: proxy requests, tunnels and direct requests."""

    protocol_version = "HTTP/1.1"  # keep-alive; every reply carries Content-Length
    timeout = 60  # idle keep-alive connections are dropped after this
    server: _ProxyServer

    def setup(self) -> None:
        super().setup()
        self.tunnel_host: str | None = None  # set once CONNECT has switched to TLS
        self.tls: ssl.SSLSocket | None = None
        self.server.handlers.add(self)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            # The server only closes the original socket, which TLS detached.
            if self.tls is not None:
                self.tls.close()
            self.server.handlers.discard(self)

    def log_message(self, format, *args) -> None:  # the request log is the record
        pass

    def do_GET(self) -> None:
        self._dispatch(head_only=False)

    def do_HEAD(self) -> None:
        self._dispatch(head_only=True)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))  # drain to keep the connection usable
        self._dispatch(head_only=False)

    def do_CONNECT(self) -> None:
        replica = self.server.replica
        host = _host_of(self.path)
        if self.tunnel_host is not None or host not in PORTAL_HOSTS:
            reply = replica.refuse("CONNECT", "https", host, "", "", f"https://{self.path}")
            reply.headers.append(("Connection", "close"))  # also makes the handler close
            return self._send(reply, head_only=False)
        self.send_response(200, "Connection established")
        self.end_headers()
        # The client sends its ClientHello only after reading the 200, so
        # nothing is left in the plain-text read buffer we drop here.
        try:
            self.tls = replica.tls_context.wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError):
            self.close_connection = True
            return
        self.connection = self.tls
        self.rfile = self.tls.makefile("rb")
        self.wfile = self.tls.makefile("wb")
        self.tunnel_host = host
        # handle() keeps looping over handle_one_request(), now on the tunnel;
        # urllib sends "CONNECT … HTTP/1.0", which would otherwise end it here.
        self.close_connection = False

    def _dispatch(self, head_only: bool) -> None:
        replica = self.server.replica
        # http.server decodes the request line as latin-1; undo that so raw
        # UTF-8 (Vietnamese) in a path/query compares equal to routes.json.
        target = self.path.encode("latin-1").decode("utf-8", "replace")
        if target[:8].lower().startswith(("http://", "https://")):  # absolute-form: a proxy request
            parts = urlsplit(target)
            host, path = (parts.hostname or "").lower(), parts.path or "/"
            if self.tunnel_host is None and replica.is_self(host, parts.port):
                # a client with http_proxy set, asking for the control endpoint
                return self._direct(path, parts.query, head_only)
            if host not in PORTAL_HOSTS:
                reply = replica.refuse(self.command, parts.scheme, host, path, parts.query, target)
            else:
                reply = replica.serve(self.command, parts.scheme, host, path, parts.query, self.headers)
            return self._send(reply, head_only)
        path, _, query = target.partition("?")
        if self.tunnel_host is not None:
            host = _host_of(self.headers.get("Host"))
            host = host if host in PORTAL_HOSTS else self.tunnel_host
            return self._send(replica.serve(self.command, "https", host, path, query, self.headers), head_only)
        return self._direct(path, query, head_only)

    def _direct(self, path: str, query: str, head_only: bool) -> None:
        """Origin-form request to the server itself (README 'How a test server…')."""
        replica = self.server.replica
        if path.startswith("/__replica__/"):
            return self._send(replica.control(self.command, path), head_only)
        first, _, rest = path[1:].partition("/")
        if first.lower() in PORTAL_HOSTS:  # path-prefix mode: /<host>/<rest>
            host, path = first.lower(), "/" + rest
        else:
            host = _host_of(self.headers.get("Host"))
            host = host if host in PORTAL_HOSTS else MAIN_HOST
        self._send(replica.serve(self.command, "http", host, path, query, self.headers), head_only)

    def _send(self, reply: _Reply, head_only: bool) -> None:
        if reply.delay:
            time.sleep(reply.delay)  # this connection's thread only
        if reply.drop_after == -1:
            return self._drop()
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.status != 304 and not reply.close_delimited:  # keep-alive needs the length; a 304 has no body
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if reply.drop_after is not None:
            self.wfile.write(reply.body[:reply.drop_after])
            self.wfile.flush()
            return self._drop()
        if reply.body and not head_only:
            self.wfile.write(reply.body)
        if reply.close_delimited:
            self.close_connection = True

    def _drop(self) -> None:
        """Close the connection now, without a (complete) answer. Inside a tunnel the
        TCP socket under TLS is shut down, as a failing server or middlebox would."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except (OSError, ValueError):
            pass
