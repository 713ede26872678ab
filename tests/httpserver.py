"""A real HTTP server on 127.0.0.1 that serves `.vital` files and CSV tables, with scripted faults."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultyServer:
    """`files`: URL path -> bytes. `script`: URL path -> list of actions consumed one per request
    ('500', '404', 'truncate', 'stall', 'ok'); when a script runs out, requests get 'ok'."""

    def __init__(self, files: dict[str, bytes], script: dict[str, list[str]] | None = None, stall_s: float = 2.0):
        self.files = files
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.stall_s = stall_s
        self.requests: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                with outer.lock:
                    outer.requests[self.path] += 1
                    steps = outer.script.get(self.path) or []
                    action = steps.pop(0) if steps else "ok"
                body = outer.files.get(self.path)
                if body is None or action == "404":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if action == "500":
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if action == "stall":
                    time.sleep(outer.stall_s)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if action == "truncate":  # promise the whole body, send half, hang up
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
