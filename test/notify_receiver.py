"""A real local HTTP receiver for the notification tests (unit and
integration): a threaded http.server on 127.0.0.1 that records every POST and
answers by a script (status codes, 'hang' until released, or 'garbage')."""
from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    """A port nothing listens on (connections to it are refused until a
    Receiver is started on it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    def __init__(self, port: int = 0, script=None) -> None:
        self.posts: list[dict] = []          # {"path", "headers", "body" (parsed JSON or text), "t"}
        self.attempts = 0
        self.script = list(script or [])      # answers for the next requests: int status, "hang" or "garbage"; then 200
        self.release = threading.Event()     # ends every "hang"
        self.lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(n)
                with rec.lock:
                    rec.attempts += 1
                    answer = rec.script.pop(0) if rec.script else 200
                if answer == "hang":
                    rec.release.wait(30)
                    answer = 200
                if answer == "garbage":          # not an HTTP answer
                    self.wfile.write(b"SPAM\r\n\r\n")
                    self.close_connection = True
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                if 200 <= answer < 300:
                    with rec.lock:
                        rec.posts.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                          "t": time.monotonic()})
                self.send_response(answer)
                if answer == 429:
                    self.send_header("Retry-After", "0")
                if 300 <= answer < 400:
                    self.send_header("Location", "http://127.0.0.1:1/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def bodies(self) -> list:
        with self.lock:
            return [p["body"] for p in self.posts]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
