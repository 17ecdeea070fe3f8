"""An HTTP proxy in front of a moto S3 server that injects store faults on
schedule: ``503 SlowDown``, ``500 InternalError``, a timeout (the answer never
comes in time) and a connection reset in the middle of an upload.

``S3FaultProxy(target_port, plan)``: ``plan(n, method, path)`` is called for the
n-th (1-based) write request (PUT/POST) and returns ``None`` (forward it) or one of
``"slowdown"``, ``"internal"``, ``"timeout"``, ``"reset"`` or ``"lost_response"``
(the write reaches the server, its answer never reaches the client). Reads are always
forwarded. ``injected`` counts the faults by kind, ``forwarded`` the writes passed
on. Bodies are forwarded byte for byte (chunked ``aws-chunked`` uploads included)."""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ERRORS = {
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "internal": (500, "InternalError", "We encountered an internal error. Please try again."),
}


def _read_raw_body(rfile, headers) -> bytes:
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        out = bytearray()
        while True:
            line = rfile.readline()
            out += line
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    t = rfile.readline()
                    out += t
                    if t in (b"\r\n", b"\n", b""):
                        return bytes(out)
            out += rfile.read(size + 2)
    return rfile.read(int(headers.get("Content-Length") or 0))


class S3FaultProxy:
    def __init__(self, target_port: int, plan, timeout_hold: float = 4.0):
        self.target_port, self.plan, self.timeout_hold = target_port, plan, timeout_hold
        self.injected: Counter = Counter()
        self.forwarded = 0
        self._writes = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                fault = None
                if self.command in ("PUT", "POST"):
                    with proxy._lock:
                        proxy._writes += 1
                        fault = proxy.plan(proxy._writes, self.command, self.path)
                        if fault:
                            proxy.injected[fault] += 1
                        else:
                            proxy.forwarded += 1
                if fault == "reset":
                    # Read part of the upload, then reset the connection (RST).
                    self.rfile.read(min(int(self.headers.get("Content-Length") or 64), 64) // 2)
                    self._reset()
                    return
                body = _read_raw_body(self.rfile, self.headers)
                if fault == "lost_response":  # the store acts on it; the answer never arrives
                    self._forward(body)
                    self._reset()
                    return
                if fault == "timeout":
                    time.sleep(proxy.timeout_hold)
                    self.close_connection = True
                    return
                if fault in ERRORS:
                    status, code, message = ERRORS[fault]
                    xml = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                           f"<Message>{message}</Message><RequestId>FAULT</RequestId></Error>").encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(xml)))
                    self.end_headers()
                    self.wfile.write(xml)
                    return
                resp, data = self._forward(body)
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection", "date", "server"):
                        self.send_header(k, v)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                else:
                    self.send_header("Content-Length", resp.getheader("Content-Length") or "0")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _forward(self, body: bytes):
                """Send this request to the store as received; (response, its body)."""
                conn = http.client.HTTPConnection("127.0.0.1", proxy.target_port, timeout=60)
                try:
                    conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                    for k, v in self.headers.items():
                        conn.putheader(k, v)
                    conn.endheaders()
                    if body:
                        conn.send(body)
                    resp = conn.getresponse()
                    return resp, resp.read()
                finally:
                    conn.close()

            def _reset(self) -> None:
                """Close the client's connection with an RST (SO_LINGER 0)."""
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> "S3FaultProxy":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
