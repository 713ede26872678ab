"""A real HTTP server on 127.0.0.1 that serves `.vital` files and CSV tables, with scripted faults."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultyServer:
    """`files`: URL path -> bytes. `script`: URL path -> list of actions consumed one per request;
    when a script runs out, requests get 'ok' (so `['503'] * n` fails n times, then recovers).

    Actions: 'ok'; '404', '410', '503' ('500' is a 503 too), '429', any other status code, with a
    Retry-After header as 'CODE:SECONDS' (e.g. '503:2'); 'truncate' (promise the whole body, send
    half, hang up); 'stall' (wait `stall_s` before the headers); 'trickle' (headers at once, then
    one byte every `trickle_s`). `requests[path]` counts requests, `times[path]` their arrival
    (time.monotonic()); `set_script(path, actions)` changes a script while serving.
    """

    def __init__(self, files: dict[str, bytes], script: dict[str, list[str]] | None = None, stall_s: float = 2.0,
                 trickle_s: float = 0.05):
        self.files = files
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.stall_s = stall_s
        self.trickle_s = trickle_s
        self.requests: dict[str, int] = defaultdict(int)
        self.times: dict[str, list[float]] = defaultdict(list)
        self.lock = threading.Lock()
        self.closing = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def empty(self, code: int, retry_after: str | None = None):
                self.send_response(code)
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):
                with outer.lock:
                    outer.requests[self.path] += 1
                    outer.times[self.path].append(time.monotonic())
                    steps = outer.script.get(self.path) or []
                    action = steps.pop(0) if steps else "ok"
                body = outer.files.get(self.path)
                code, _, retry_after = action.partition(":")
                if code.isdigit():
                    self.empty(503 if code == "500" else int(code), retry_after or None)
                    return
                if body is None:
                    self.empty(404)
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
                if action == "trickle":  # a byte at a time, slowly, for as long as the client listens
                    self.close_connection = True
                    try:
                        for i in range(len(body)):
                            if outer.closing.wait(outer.trickle_s):
                                return
                            self.wfile.write(body[i : i + 1])
                            self.wfile.flush()
                    except OSError:
                        pass
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def set_script(self, path: str, actions: list[str]) -> None:
        with self.lock:
            self.script[path] = list(actions)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
