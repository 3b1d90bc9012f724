"""FastAPI app factory: the web layer over a StateStore. No rclpy import;
the node passes `actions` (callables that call the motor node's services)
and an incident reader.

The parts: schemas (JSON shapes), routes (page, reads, writes), sse (live
updates), security (headers, body limit, token, rate limit), metrics
(/metrics) and state (the store the node fills).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from fastapi import FastAPI
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from reachy_mini import __version__
from reachy_mini.core.levels import DESCRIPTION as LEVELS
from reachy_mini.web.metrics import Metrics
from reachy_mini.web.routes import page_routes, read_routes, session_routes, write_routes
from reachy_mini.web.security import GuardMiddleware, RateLimiter, ReadGuard, Sessions, WriteGuard
from reachy_mini.web.sse import SSEHub
from reachy_mini.web.state import StateStore


@dataclass
class WebConfig:
    token: str | None = None            # bearer token for writes; None: writes disabled (403)
    max_body_bytes: int = 1024
    write_rate: int = 5                 # writes per client ...
    write_window_s: float = 10.0        # ... per this window
    protect_reads: bool = False         # exposed server (host not loopback): reads need the token too
    scrape_token: str | None = None     # read-only token for GET /metrics (Prometheus)
    read_rate: int = 120                # protected reads per client ...
    read_window_s: float = 10.0         # ... per this window
    tls: bool = False                   # served over https: the session cookie is Secure
    session_cookie: str = "reachy_mini_session"   # cookies ignore ports: one name per bridge
    session_max_age_s: float = 12 * 3600.0
    sse_queue: int = 8
    max_sse_clients: int = 500
    public_config: dict = field(default_factory=dict)
    robot: str = ""                     # robot_name: /api/health, page title, metric label


@dataclass
class Actions:
    set_torque: Callable[[bool], tuple[bool, str]]
    reboot: Callable[[], tuple[bool, str]]
    incidents: Callable[..., list[dict]]
    incident_counts: Callable[[], dict[str, int]] = dict   # level name -> incidents stored (/metrics)
    snapshot_dir: str = ""                                   # the flight recorder's files ('' = none)
    snapshot: Callable[[], tuple[bool, str]] | None = None   # asks health_node for a snapshot
    media: object | None = None   # web.vendor_audio.MediaActions: the vendor's /api/volume, /api/media


@dataclass
class AppContext:
    """What the routes share."""
    store: StateStore
    actions: Actions
    cfg: WebConfig
    hub: SSEHub
    metrics: Metrics
    limiter: RateLimiter
    guard: WriteGuard
    started: float
    reads: ReadGuard | None = None


def create_app(store: StateStore, actions: Actions, cfg: WebConfig | None = None, sdk=None, vendor=None) -> FastAPI:
    """sdk: a web.sdk_ws.SdkHub to serve the vendor SDK's /ws/sdk, or None;
    vendor: a web.vendor_api.VendorApi to serve the vendor daemon's HTTP API
    (/api/daemon, /api/state, /api/move, ...), or None."""
    cfg = cfg or WebConfig()
    limiter = RateLimiter(cfg.write_rate, cfg.write_window_s)
    hub = SSEHub(store, cfg.sse_queue, cfg.max_sse_clients)
    metrics = Metrics(store, hub, cfg.robot, actions.incident_counts if actions else dict)
    ctx = AppContext(store, actions, cfg, hub, metrics, limiter,
                     WriteGuard(cfg.token, limiter), time.time())
    read_limiter = RateLimiter(cfg.read_rate, cfg.read_window_s)
    ctx.reads = ReadGuard(cfg.protect_reads, cfg.token, cfg.scrape_token,
                          Sessions(cfg.token, cfg.session_cookie, cfg.session_max_age_s, cfg.tls), read_limiter)
    app = FastAPI(title="Reachy Mini status", version=__version__, docs_url=None, redoc_url=None,
                  description="Health of a Reachy Mini robot: diagnostics tree, motors, incidents, metrics. "
                              f"Levels are integers with names: {LEVELS}.")
    app.state.hub, app.state.metrics, app.state.limiter = ctx.hub, ctx.metrics, ctx.limiter
    app.state.read_limiter = read_limiter
    app.add_middleware(GuardMiddleware, max_body=cfg.max_body_bytes, metrics=ctx.metrics)
    for router in (page_routes(cfg.robot), read_routes(ctx), session_routes(ctx), write_routes(ctx)):
        app.include_router(router)
    if actions is not None and actions.media is not None:   # the vendor's /api/volume, /api/media (issue 30)
        from reachy_mini.web.vendor_audio import vendor_audio_routes

        app.include_router(vendor_audio_routes(actions.media))
    app.state.sdk = sdk
    from reachy_mini.web.vendor_camera import camera_routes   # vendor /api/camera (issue 31)

    app.include_router(camera_routes(store))
    app.state.vendor = vendor

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc):
        """FastAPI's 422; when the input itself cannot be sent back in JSON
        (NaN, Infinity: the vendor API's bad input), without the input."""
        try:
            return await request_validation_exception_handler(request, exc)
        except ValueError:
            return JSONResponse({"detail": [{k: v for k, v in e.items() if k in ("type", "loc", "msg")}
                                            for e in exc.errors()]}, 422)
    if vendor is not None:
        from reachy_mini.web.vendor_api import VendorGuard, unserved_routes, vendor_routes

        app.include_router(vendor_routes(vendor))
        app.include_router(unserved_routes(vendor))
        # outside the body limit and headers: a refused request never reaches a route
        app.add_middleware(VendorGuard, api=vendor)
    if sdk is not None:
        from reachy_mini.web.sdk_ws import sdk_routes

        app.include_router(sdk_routes(sdk))

    def openapi():
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        if cfg.protect_reads:   # Swagger UI's "Authorize" then applies to the reads too
            for path, ops in schema["paths"].items():
                for op in ops.values():
                    if path not in ReadGuard.OPEN:
                        op.setdefault("security", [{"bearer": []}])
        app.openapi_schema = schema
        return schema
    app.openapi = openapi
    return app
