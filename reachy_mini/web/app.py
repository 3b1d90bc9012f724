"""FastAPI app factory: the web layer over a StateStore. No rclpy import;
the node passes `actions` (callables that call the motor node's services)
and an incident reader.

Live updates: one SSE hub per app. The store's listener hands a version
number to the asyncio loop (call_soon_threadsafe, never blocks the ROS
thread); each client has a bounded queue (drop-oldest), so a slow or
stalled client only loses its own intermediate updates.
"""
from __future__ import annotations

import asyncio
import hmac
import importlib.util
import json
import os
import platform
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from .. import __version__
from .state import StateStore

STATIC = os.path.join(os.path.dirname(os.path.realpath(__file__)), "static")
# Swagger UI's files, shipped by the fastapi-offline package (no CDN at run time)
SWAGGER_DIR = os.path.join(os.path.dirname(importlib.util.find_spec("fastapi_offline").origin), "static")
SWAGGER_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'")


@dataclass
class WebConfig:
    token: str | None = None            # bearer token for writes; None: writes disabled (403)
    max_body_bytes: int = 1024
    write_rate: int = 5                 # writes per client ...
    write_window_s: float = 10.0        # ... per this window
    sse_queue: int = 8
    max_sse_clients: int = 500
    public_config: dict = field(default_factory=dict)
    robot: str = ""                     # shown in /api/health


@dataclass
class Actions:
    set_torque: Callable[[bool], tuple[bool, str]]
    reboot: Callable[[], tuple[bool, str]]
    incidents: Callable[..., list[dict]]


# ---------------------------------------------------------------- models
class Status(BaseModel):
    name: str
    level: int = Field(ge=0, le=3)
    level_name: str
    message: str
    hardware_id: str = ""
    values: dict[str, str] = {}


class Health(BaseModel):
    level: int = Field(ge=0, le=3)
    level_name: str
    message: str
    healthy: bool
    robot: str = Field("", description="robot name (namespace, else host name)")
    age_s: Optional[float] = Field(None, description="seconds since the health node last published; None: never")
    groups: dict[str, str] = Field({}, description="level name of each top-level group, e.g. Motors: OK")
    uptime_s: float = Field(0.0, description="seconds since this web server started")


class StatusTree(BaseModel):
    top: Optional[Status]
    tree: list[Status]
    updated: float


class Motor(BaseModel):
    name: str
    level: int
    level_name: str
    message: str
    hardware_id: str = ""
    position_rad: Optional[float] = None
    goal_rad: Optional[float] = None
    temperature_c: Optional[float] = None
    voltage_v: Optional[float] = None
    current_ma: Optional[float] = None
    torque: Optional[str] = None
    hardware_error_status: Optional[str] = None
    hardware_errors: Optional[str] = None
    id: Optional[str] = None
    responding: Optional[str] = None
    communication_errors: Optional[str] = None


class Incident(BaseModel):
    id: int
    t: float
    name: str
    level: int
    level_name: str
    prev_level: Optional[int] = None
    prev_level_name: Optional[str] = None
    message: str
    hardware_id: str
    kind: str


class HistoryPoint(BaseModel):
    t: float
    temperature_c: dict[str, float]
    loop_rate_hz: Optional[float] = None


class SystemInfo(BaseModel):
    package: str
    version: str
    python: str
    ros_distro: str
    libraries: dict[str, str]
    config: dict[str, Any]
    writes_enabled: bool
    uptime_s: float
    started_at: float


class TorqueRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: StrictBool = Field(description="true: torque on for all motors; false: torque off")


class RebootRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WriteResult(BaseModel):
    success: bool
    message: str


class Problem(BaseModel):
    detail: str


def _err(code: int, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, code, headers=headers)


# ---------------------------------------------------------------- helpers
class SSEHub:
    def __init__(self, store: StateStore, qsize: int, max_clients: int) -> None:
        self.store, self.qsize, self.max_clients = store, qsize, max_clients
        self.loop: asyncio.AbstractEventLoop | None = None
        self.clients: set[asyncio.Queue] = set()
        self.dropped = 0
        self._cache: tuple[int, str] = (-1, "")
        store.listeners.append(self.notify)

    def notify(self, version: int) -> None:      # any thread
        loop = self.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._fan_out, version)
            except RuntimeError:
                pass

    def close(self) -> None:                      # any thread: ends every stream (graceful shutdown)
        self.notify(None)

    def _fan_out(self, version: int | None) -> None:    # event loop
        for q in self.clients:
            if q.full():
                q.get_nowait()
                self.dropped += 1
            q.put_nowait(version)

    def payload(self) -> str:
        s = self.store.snapshot()
        if self._cache[0] != s["version"]:
            body = {k: s[k] for k in ("version", "top", "tree", "joints", "audio_level_dbfs", "camera_version",
                                      "incidents", "sample")}
            self._cache = (s["version"], json.dumps(body))
        return self._cache[1]


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


class Metrics:
    BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count: dict[tuple[str, str, int], int] = {}
        self.hist: dict[tuple[str, str], list[float]] = {}   # bucket counts + [sum, count]

    def observe(self, method: str, route: str, code: int, seconds: float) -> None:
        with self.lock:
            k = (method, route, code)
            self.count[k] = self.count.get(k, 0) + 1
            h = self.hist.setdefault((method, route), [0.0] * (len(self.BUCKETS) + 2))
            for i, b in enumerate(self.BUCKETS):
                if seconds <= b:
                    h[i] += 1
            h[-2] += seconds
            h[-1] += 1


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# ---------------------------------------------------------------- app
class GuardMiddleware:
    """Pure ASGI (no per-request task or body streaming, unlike
    @app.middleware): security headers, request body size limit, HTTP metrics."""

    HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
               (b"content-security-policy", CSP.encode()), (b"referrer-policy", b"no-referrer")]

    def __init__(self, app, max_body: int, metrics: Metrics) -> None:
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
                resp = _err(413, f"request body larger than {self.max_body} bytes")
                await resp(scope, receive, send_wrapper)
                self._observe(scope, status[0], t0)
                return
            sent = [False]

            async def replay():
                if not sent[0]:
                    sent[0] = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()
            await self.app(scope, replay, send_wrapper)
        else:
            await self.app(scope, receive, send_wrapper)
        self._observe(scope, status[0], t0)

    def _observe(self, scope, code: int, t0: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        if path != "/api/stream":
            self.metrics.observe(scope["method"], path, code, time.perf_counter() - t0)


def create_app(store: StateStore, actions: Actions, cfg: WebConfig | None = None) -> FastAPI:
    cfg = cfg or WebConfig()
    started = time.time()
    hub = SSEHub(store, cfg.sse_queue, cfg.max_sse_clients)
    limiter = RateLimiter(cfg.write_rate, cfg.write_window_s)
    metrics = Metrics()
    app = FastAPI(title="Reachy Mini status", version=__version__, docs_url=None, redoc_url=None,
                  description="Health of a Reachy Mini robot: diagnostics tree, motors, incidents, metrics. "
                              "Levels are integers with names: 0 OK, 1 WARN, 2 ERROR, 3 STALE.")
    app.state.hub, app.state.metrics, app.state.limiter = hub, metrics, limiter
    app.add_middleware(GuardMiddleware, max_body=cfg.max_body_bytes, metrics=metrics)

    # ---- page
    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(os.path.join(STATIC, "index.html"), media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        if name not in ("app.js", "style.css", "docs.js"):
            raise HTTPException(404, "no such file")
        return FileResponse(os.path.join(STATIC, name),
                            media_type="text/javascript" if name.endswith(".js") else "text/css")

    # ---- /docs: Swagger UI, offline, under the same CSP
    @app.get("/docs", include_in_schema=False)
    def docs():
        return FileResponse(os.path.join(STATIC, "docs.html"), media_type="text/html")

    @app.get("/docs/assets/{name}", include_in_schema=False)
    def docs_assets(name: str):
        if name not in SWAGGER_ASSETS:
            raise HTTPException(404, "no such file")
        return FileResponse(os.path.join(SWAGGER_DIR, name), media_type=SWAGGER_ASSETS[name])

    # ---- read API
    @app.get("/api/health", response_model=Health, responses={503: {"model": Health, "description": "ERROR or STALE"}})
    async def health():
        """The robot's health: 200 when the top level is OK or WARN; 503 when it
        is ERROR or STALE, nothing was heard yet, or the health node has been
        silent longer than its bound ("health monitor silent for N s"). The web
        server answering at all is its own liveness; this is the robot's health."""
        top = store.top
        if top is None:
            body = {"level": 3, "level_name": "STALE", "message": "no diagnostics received yet", "healthy": False}
        else:
            body = {"level": top["level"], "level_name": top["level_name"], "message": top["message"],
                    "healthy": top["level"] in (0, 1)}
        age = store.health_age()
        silent = age is None or age > store.stale_after_s     # the tree is as old as the top level
        groups = {} if silent else {i["name"].rsplit("/", 1)[-1]: i["level_name"]
                                    for i in store.snapshot()["tree"] if i["name"].count("/") == 2}
        body |= {"robot": cfg.robot, "age_s": None if age is None else round(age, 3), "groups": groups,
                 "uptime_s": round(time.time() - started, 1)}
        return JSONResponse(body, 200 if body["healthy"] else 503)

    @app.get("/api/status", response_model=StatusTree)
    def status():
        """The whole aggregated tree (/diagnostics_agg) and the top level."""
        s = store.snapshot()
        return {"top": s["top"], "tree": s["tree"], "updated": s["updated"]}

    @app.get("/api/motors", response_model=list[Motor])
    def motors():
        return store.motors()

    @app.get("/api/incidents", response_model=list[Incident])
    def incidents(since: Optional[float] = Query(None, ge=0, le=1e11, description="epoch seconds"),
                  limit: int = Query(100, ge=1, le=1000)):
        """Level changes, restarts and hang kills, newest first."""
        return actions.incidents(since=since, limit=limit)

    @app.get("/api/history", response_model=list[HistoryPoint])
    def history(minutes: float = Query(30.0, gt=0, le=1440)):
        """Motor temperatures and motor-loop rate, one point per second."""
        return store.history_since(minutes * 60)

    @app.get("/api/camera.jpg", response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}, "description": "latest frame"},
                        404: {"model": Problem, "description": "no frame received yet"}})
    def camera():
        jpg, stamp = store.camera()
        if jpg is None:
            return _err(404, "no camera frame received (is camera_node running with compressed_fps > 0?)")
        return Response(jpg, media_type="image/jpeg", headers={"X-Frame-Age-S": f"{time.time() - stamp:.3f}"})

    @app.get("/api/system/info", response_model=SystemInfo)
    def system_info():
        from importlib.metadata import PackageNotFoundError, version

        libs = {}
        for lib in ("fastapi", "uvicorn", "pydantic", "numpy", "opencv-python-headless", "sounddevice", "psutil"):
            try:
                libs[lib] = version(lib)
            except PackageNotFoundError:
                libs[lib] = "not installed"
        try:
            pkg = version("reachy_mini")
        except PackageNotFoundError:
            pkg = "source"
        return {"package": "reachy_mini", "version": pkg, "python": platform.python_version(),
                "ros_distro": os.environ.get("ROS_DISTRO", "kilted (PyPI wheels)"), "libraries": libs,
                "config": cfg.public_config, "writes_enabled": cfg.token is not None,
                "uptime_s": time.time() - started, "started_at": started}

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> str:
        """Prometheus text format."""
        s = store.snapshot()
        L: list[str] = []

        def fam(name, kind, help_):
            L.append(f"# HELP {name} {help_}")
            L.append(f"# TYPE {name} {kind}")
        fam("reachy_mini_up", "gauge", "1 while the health node publishes (silent for at most health_stale_s)")
        age = store.health_age()
        L.append(f"reachy_mini_up {int(age is not None and age <= store.stale_after_s)}")
        fam("reachy_mini_component_level", "gauge", "diagnostic level: 0 OK, 1 WARN, 2 ERROR, 3 STALE")
        for st in ([s["top"]] if s["top"] else []) + s["tree"]:
            L.append(f'reachy_mini_component_level{{component="{_esc(st["name"])}"}} {st["level"]}')
        ms = store.motors()
        for key, name, help_ in (("temperature_c", "reachy_mini_motor_temperature_celsius", "motor temperature"),
                                 ("voltage_v", "reachy_mini_motor_voltage_volts", "motor input voltage"),
                                 ("current_ma", "reachy_mini_motor_current_milliamperes", "motor current")):
            fam(name, "gauge", help_)
            for m in ms:
                if m[key] is not None:
                    L.append(f'{name}{{motor="{_esc(m["name"])}"}} {m[key]}')
        fam("reachy_mini_motor_loop_rate_hertz", "gauge", "achieved motor control loop rate")
        if s["sample"] and s["sample"]["loop_rate_hz"] is not None:
            L.append(f"reachy_mini_motor_loop_rate_hertz {s['sample']['loop_rate_hz']}")
        fam("reachy_mini_audio_level_dbfs", "gauge", "microphone RMS level")
        if s["audio_level_dbfs"] is not None:
            L.append(f"reachy_mini_audio_level_dbfs {s['audio_level_dbfs']}")
        fam("reachy_mini_web_sse_clients", "gauge", "live page connections")
        L.append(f"reachy_mini_web_sse_clients {len(hub.clients)}")
        fam("reachy_mini_web_sse_dropped_total", "counter", "updates dropped for slow page clients")
        L.append(f"reachy_mini_web_sse_dropped_total {hub.dropped}")
        with metrics.lock:
            fam("reachy_mini_http_requests_total", "counter", "HTTP requests")
            for (m, r, c), n in sorted(metrics.count.items()):
                L.append(f'reachy_mini_http_requests_total{{method="{m}",route="{_esc(r)}",code="{c}"}} {n}')
            fam("reachy_mini_http_request_duration_seconds", "histogram", "HTTP request latency")
            for (m, r), h in sorted(metrics.hist.items()):
                lab = f'method="{m}",route="{_esc(r)}"'
                for b, n in zip(Metrics.BUCKETS, h):
                    L.append(f'reachy_mini_http_request_duration_seconds_bucket{{{lab},le="{b}"}} {int(n)}')
                L.append(f'reachy_mini_http_request_duration_seconds_bucket{{{lab},le="+Inf"}} {int(h[-1])}')
                L.append(f"reachy_mini_http_request_duration_seconds_sum{{{lab}}} {h[-2]:.6f}")
                L.append(f"reachy_mini_http_request_duration_seconds_count{{{lab}}} {int(h[-1])}")
        return "\n".join(L) + "\n"

    @app.get("/api/stream", response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"},
                        503: {"model": Problem, "description": "too many clients"}})
    async def stream(request: Request):
        """Server-sent events: one JSON state message per change (diagnostics at
        1 Hz and at once on ERROR, joints at most 5 Hz)."""
        if len(hub.clients) >= cfg.max_sse_clients:
            return _err(503, f"too many live clients (max {cfg.max_sse_clients})")
        hub.loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue(maxsize=cfg.sse_queue)
        hub.clients.add(q)

        async def gen():
            try:
                yield "retry: 1000\n\n"
                yield f"data: {hub.payload()}\n\n"
                while True:
                    try:
                        v = await asyncio.wait_for(q.get(), 15.0)
                    except asyncio.TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    while v is not None and not q.empty():   # coalesce what queued up
                        v = q.get_nowait()
                    if v is None:
                        return
                    yield f"data: {hub.payload()}\n\n"
            finally:
                hub.clients.discard(q)
        return StreamingResponse(gen(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # ---- writes
    write_responses = {400: {"model": Problem, "description": "body is not valid JSON"},
                       401: {"model": Problem, "description": "missing or wrong bearer token"},
                       403: {"model": Problem, "description": "writes are disabled (no token configured)"},
                       413: {"model": Problem, "description": "body too large"},
                       429: {"model": Problem, "description": "rate limited"},
                       502: {"model": Problem, "description": "motor node did not answer"}}

    def authorize(request: Request):
        if cfg.token is None:
            return _err(403, "writes are disabled: set REACHY_MINI_WEB_TOKEN (or the web_bridge token_file "
                             "parameter) and restart the web bridge to enable them")
        auth = request.headers.get("authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), cfg.token.encode()):
            return _err(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        wait = limiter.check(request.client.host if request.client else "unknown")
        if wait:
            return _err(429, f"too many writes: at most {limiter.n} per {limiter.window:.0f} s",
                        {"Retry-After": str(int(wait) + 1)})
        return None

    def run(fn, *args):
        try:
            ok, msg = fn(*args)
        except TimeoutError as e:
            return _err(502, str(e))
        return JSONResponse({"success": ok, "message": msg}, 200 if ok else 409)

    sec = [{"bearer": []}]

    @app.post("/api/motors/torque", response_model=WriteResult, openapi_extra={"security": sec},
              responses={**write_responses, 409: {"model": WriteResult, "description": "the motor node refused"}})
    def torque(request: Request, req: TorqueRequest = Body(...)):
        """Torque on or off for all motors (motor_node's set_torque service)."""
        return authorize(request) or run(actions.set_torque, req.enabled)

    @app.post("/api/motors/reboot", response_model=WriteResult, openapi_extra={"security": sec},
              responses={**write_responses, 409: {"model": WriteResult, "description": "the motor node refused"}})
    def reboot(request: Request, req: RebootRequest = Body(default_factory=RebootRequest)):
        """Reboot every motor (clears latched hardware errors; motor_node's reboot service)."""
        return authorize(request) or run(actions.reboot)

    def openapi():
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        app.openapi_schema = schema
        return schema
    app.openapi = openapi
    return app

