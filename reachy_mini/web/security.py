"""What guards the web API: security headers and body limit (a pure ASGI
middleware that also times requests), the bearer token and the per-client
rate limit of writes, and, when the server is exposed (host not loopback),
the token, scrape token or session cookie and the per-client rate limit of
reads (ReadGuard, a dependency of the read routes)."""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import threading
import time

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; anything else (0.0.0.0, ::, a LAN
    address, a host name) may be reachable from the network."""
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def bearer(request: Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" and given.strip() else None


def same(given: str | None, secret: str | None) -> bool:
    return given is not None and secret is not None and hmac.compare_digest(given.encode(), secret.encode())


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
        if not same(bearer(request), self.token):
            return problem(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        wait = self.limiter.check(request.client.host if request.client else "unknown")
        if wait:
            return problem(429, f"too many writes: at most {self.limiter.n} per {self.limiter.window:.0f} s",
                           {"Retry-After": str(int(wait) + 1)})
        return None


class Sessions:
    """The page's session cookie, for what cannot send a header (EventSource,
    <img>): `POST /api/session` with the owner's bearer token sets it;
    HttpOnly (no script reads it), SameSite=Strict (no other site's page
    sends it), Secure over TLS. Its value is `<expiry>.<HMAC(key, expiry)>`
    with a key derived from the token: stateless, so it survives a restart
    of the bridge, and changing the token ends every session. Accepted for
    GET reads only, never for writes (a write needs the header: no CSRF)."""

    def __init__(self, token: str | None, name: str, max_age_s: float, secure: bool) -> None:
        self.name, self.max_age, self.secure = name, int(max_age_s), secure
        self.key = None if token is None else hmac.new(token.encode(), b"reachy_mini session cookie v1",
                                                         hashlib.sha256).digest()

    def _sig(self, exp: str) -> str:
        return hmac.new(self.key, exp.encode(), hashlib.sha256).hexdigest()

    def issue(self, now: float | None = None) -> str:
        exp = str(int((time.time() if now is None else now) + self.max_age))
        return f"{exp}.{self._sig(exp)}"

    def valid(self, value: str | None, now: float | None = None) -> bool:
        if self.key is None or not value:
            return False
        exp, _, sig = value.partition(".")
        if not exp.isdigit() or int(exp) <= (time.time() if now is None else now):
            return False
        return hmac.compare_digest(sig.encode(), self._sig(exp).encode())

    def set_cookie(self, response) -> None:
        response.set_cookie(self.name, self.issue(), max_age=self.max_age, path="/", secure=self.secure,
                            httponly=True, samesite="strict")


class ReadGuard:
    """A dependency of the read routes. On an exposed server (`protect`:
    host not loopback) every read but /api/health needs the owner's bearer
    token or the session cookie (GET only); /metrics also takes the scrape
    token, which opens nothing else. Protected reads (and session logins)
    are rate-limited per client before the token is checked, so guessing
    is limited too. On loopback everything stays open and unlimited: only
    local processes reach it, and they can read the robot's data anyway."""

    OPEN = ("/api/health",)

    def __init__(self, protect: bool, token: str | None, scrape_token: str | None, sessions: Sessions,
                 limiter: RateLimiter) -> None:
        self.protect, self.token, self.scrape_token = protect, token, scrape_token
        self.sessions, self.limiter = sessions, limiter

    def limit(self, request: Request) -> None:
        wait = self.limiter.check(request.client.host if request.client else "unknown")
        if wait:
            raise HTTPException(429, f"too many reads: at most {self.limiter.n} per {self.limiter.window:.0f} s "
                                     "per client", {"Retry-After": str(int(wait) + 1)})

    def __call__(self, request: Request) -> None:
        path = request.url.path
        if not self.protect or path in self.OPEN:
            return
        self.limit(request)
        given = bearer(request)
        if same(given, self.token):
            return
        if path == "/metrics" and same(given, self.scrape_token):
            return
        if given is None and request.method in ("GET", "HEAD") and self.sessions.valid(
                request.cookies.get(self.sessions.name)):
            return
        if given is not None:
            why = "wrong bearer token"
        elif self.sessions.name in request.cookies:
            why = "session expired or not valid for this token: log in again (POST /api/session)"
        else:
            why = ("this robot serves the network: reads need the token (Authorization: Bearer <token>, "
                   "or the session cookie from POST /api/session)")
        raise HTTPException(401, why, {"WWW-Authenticate": "Bearer"})

    def login(self, request: Request) -> JSONResponse:
        """POST /api/session: the owner's token in the header -> the cookie."""
        if self.token is None:
            return problem(403, "no token configured: set REACHY_MINI_WEB_TOKEN (or the web_bridge token_file "
                                "parameter) and restart the web bridge")
        self.limit(request)
        if not same(bearer(request), self.token):
            return problem(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        resp = JSONResponse({"success": True, "message": "session started", "max_age_s": self.sessions.max_age})
        self.sessions.set_cookie(resp)
        return resp
