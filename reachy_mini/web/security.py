"""What guards the web API: security headers and body limit (a pure ASGI
middleware that also times requests), the bearer token and the per-client
rate limit of writes."""
from __future__ import annotations

import hmac
import threading
import time

from fastapi import Request
from fastapi.responses import JSONResponse

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'")


def problem(code: int, detail: str, headers: dict | None = None) -> JSONResponse:
    """An error answer: {"detail": reason}."""
    return JSONResponse({"detail": detail}, code, headers=headers)


class RateLimiter:
    def __init__(self, n: int, window_s: float) -> None:
        self.n, self.window = n, window_s
        self.hits: dict[str, list[float]] = {}
        self.lock = threading.Lock()

    def configure(self, n: int, window_s: float) -> None:
        """New limits at run time (web_bridge's `ros2 param set`)."""
        with self.lock:
            self.n, self.window = int(n), float(window_s)

    def check(self, client: str) -> float:
        """0 if allowed, else seconds until the next write is allowed."""
        now = time.monotonic()
        with self.lock:
            h = [t for t in self.hits.get(client, []) if now - t < self.window]
            if len(h) >= self.n:
                self.hits[client] = h
                return self.window - (now - h[0])
            h.append(now)
            self.hits[client] = h
            if len(self.hits) > 10000:   # bounded memory under many clients
                self.hits = {k: v for k, v in self.hits.items() if v and now - v[-1] < self.window}
            return 0.0


# ---------------------------------------------------------------- app
class GuardMiddleware:
    """Pure ASGI (no per-request task or body streaming, unlike
    @app.middleware): security headers, request body size limit, HTTP metrics."""

    HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
               (b"content-security-policy", CSP.encode()), (b"referrer-policy", b"no-referrer")]

    def __init__(self, app, max_body: int, metrics) -> None:
        self.app, self.max_body, self.metrics = app, max_body, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [500]
        api = scope["path"].startswith("/api/")

        async def send_wrapper(msg):
            if msg["type"] == "http.response.start":
                status[0] = msg["status"]
                hdrs = list(msg.get("headers", [])) + self.HEADERS
                if api and not any(k == b"cache-control" for k, _ in hdrs):
                    hdrs.append((b"cache-control", b"no-store"))
                msg = {**msg, "headers": hdrs}
            await send(msg)

        if scope["method"] in ("POST", "PUT", "PATCH"):
            cl = dict(scope["headers"]).get(b"content-length")
            too_big = cl is not None and (not cl.isdigit() or int(cl) > self.max_body)
            body = b""
            if not too_big:   # also bounds chunked bodies
                more = True
                while more:
                    m = await receive()
                    body += m.get("body", b"")
                    more = m.get("more_body", False)
                    if len(body) > self.max_body:
                        too_big = True
                        break
            if too_big:
                resp = problem(413, f"request body larger than {self.max_body} bytes")
                await resp(scope, receive, send_wrapper)
                self._observe(scope, status[0], t0)
                return
            sent = [False]

            async def replay():
                if not sent[0]:
                    sent[0] = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()
            app, recv = self.app, replay
        else:
            app, recv = self.app, receive
        try:
            await app(scope, recv, send_wrapper)
        finally:   # an unhandled error is counted too (code 500: no response was started)
            self._observe(scope, status[0], t0)

    def _observe(self, scope, code: int, t0: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        if path != "/api/stream":
            self.metrics.observe(scope["method"], path, code, time.perf_counter() - t0)



class WriteGuard:
    """Bearer token, then the per-client rate limit; None when a write may go on."""

    def __init__(self, token: str | None, limiter: RateLimiter) -> None:
        self.token, self.limiter = token, limiter

    def check(self, request: Request) -> JSONResponse | None:
        if self.token is None:
            return problem(403, "writes are disabled: set REACHY_MINI_WEB_TOKEN (or the web_bridge token_file "
                                "parameter) and restart the web bridge to enable them")
        auth = request.headers.get("authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return problem(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        wait = self.limiter.check(request.client.host if request.client else "unknown")
        if wait:
            return problem(429, f"too many writes: at most {self.limiter.n} per {self.limiter.window:.0f} s",
                           {"Retry-After": str(int(wait) + 1)})
        return None
