"""The routes, grouped by audience: the page and its assets, the read API
(health, tree, motors, incidents, history, camera, system info, metrics,
live stream) and the guarded writes."""
from __future__ import annotations

import asyncio
import html
import importlib.util
import os
import platform
import time
from typing import Optional

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse

from reachy_mini.core.levels import STALE, Level
from reachy_mini.web import metrics as prom
from reachy_mini.web.schemas import (Frames, Health, HistoryPoint, Incident, Motor, Problem, RebootRequest, SnapshotPlot,
                                     SnapshotRequest, StatusTree, SystemInfo, TorqueRequest, WriteResult)
from reachy_mini.web.security import problem

STATIC = os.path.join(os.path.dirname(os.path.realpath(__file__)), "static")
# Swagger UI's files, shipped by the fastapi-offline package (no CDN at run time)
SWAGGER_DIR = os.path.join(os.path.dirname(importlib.util.find_spec("fastapi_offline").origin), "static")
SWAGGER_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}


def page_routes(robot: str) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    with open(os.path.join(STATIC, "index.html"), encoding="utf-8") as f:
        index = f.read().replace("{robot}", html.escape(robot or "Reachy Mini"))   # the title names the robot

    @r.get("/")
    def page():
        return HTMLResponse(index)

    @r.get("/static/{name}")
    def static(name: str):
        if name not in ("app.js", "style.css", "docs.js"):
            raise HTTPException(404, "no such file")
        return FileResponse(os.path.join(STATIC, name),
                            media_type="text/javascript" if name.endswith(".js") else "text/css")

    # ---- /docs: Swagger UI, offline, under the same CSP
    @r.get("/docs")
    def docs():
        return FileResponse(os.path.join(STATIC, "docs.html"), media_type="text/html")

    @r.get("/docs/assets/{name}")
    def docs_assets(name: str):
        if name not in SWAGGER_ASSETS:
            raise HTTPException(404, "no such file")
        return FileResponse(os.path.join(SWAGGER_DIR, name), media_type=SWAGGER_ASSETS[name])

    return r


def read_routes(ctx) -> APIRouter:
    """ctx: the app's context (store, actions, cfg, hub, metrics, started).
    ctx.reads (security.ReadGuard) decides, per path, what a read needs."""
    r = APIRouter(dependencies=[Depends(ctx.reads)])
    store, actions, cfg, hub = ctx.store, ctx.actions, ctx.cfg, ctx.hub

    # ---- read API
    @r.get("/api/health", response_model=Health, responses={503: {"model": Health, "description": "ERROR or STALE"}})
    async def health():
        """The robot's health: 200 when the top level is OK or WARN; 503 when it
        is ERROR or STALE, nothing was heard yet, or the health node has been
        silent longer than its bound ("health monitor silent for N s"). The web
        server answering at all is its own liveness; this is the robot's health."""
        top = store.top
        if top is None:
            body = {"level": int(STALE), "level_name": STALE.name, "message": "no diagnostics received yet",
                    "healthy": False}
        else:
            body = {"level": top["level"], "level_name": top["level_name"], "message": top["message"],
                    "healthy": Level(top["level"]).healthy}
        age = store.health_age()
        silent = age is None or age > store.stale_after_s     # the tree is as old as the top level
        groups = {} if silent else {i["name"].rsplit("/", 1)[-1]: i["level_name"]
                                    for i in store.snapshot()["tree"] if i["name"].count("/") == 2}
        body |= {"robot": cfg.robot, "age_s": None if age is None else round(age, 3), "groups": groups,
                 "uptime_s": round(time.time() - ctx.started, 1)}
        return JSONResponse(body, 200 if body["healthy"] else 503)

    @r.get("/api/status", response_model=StatusTree)
    def status():
        """The whole aggregated tree (/diagnostics_agg) and the top level."""
        s = store.snapshot()
        return {"top": s["top"], "tree": s["tree"], "updated": s["updated"]}

    @r.get("/api/motors", response_model=list[Motor])
    def motors():
        """Per-servo health and figures; positions while someone asks (see docs/web.md)."""
        store.ask("joints")
        return store.motors()

    @r.get("/api/frames", response_model=Frames,
           responses={404: {"model": Problem, "description": "no transforms received yet"}})
    def frames():
        """Every frame of the robot in base_link, from /tf and /tf_static (the page's robot view)."""
        store.ask("frames")
        end = time.monotonic() + 2.0   # followed on demand: the first transforms come soon
        while not (f := store.frames()).get("frames") or time.time() - f["stamp"] > 2.0:
            if time.monotonic() > end:
                if f.get("frames"):
                    return f
                return problem(404, "no transforms received (is motor_node running?)")
            time.sleep(0.05)
        return f

    @r.get("/api/incidents", response_model=list[Incident])
    def incidents(since: Optional[float] = Query(None, ge=0, le=1e11, description="epoch seconds"),
                  limit: int = Query(100, ge=1, le=1000)):
        """Level changes, restarts and hang kills, newest first."""
        return actions.incidents(since=since, limit=limit)

    def snapshot_file(name: str) -> str | JSONResponse:
        """The path of a finished snapshot, or a 404 saying why (path-traversal
        safe: a strict name pattern, then the real path must be in the directory)."""
        from reachy_mini.core.health.recorder import NAME_RE

        if not NAME_RE.match(name):
            return problem(404, "not a snapshot name (snapshot_<UTC time>_<reason>.mcap)")
        folder = os.path.realpath(actions.snapshot_dir) if actions.snapshot_dir else ""
        path = os.path.realpath(os.path.join(folder, name))
        if not folder or os.path.dirname(path) != folder:
            return problem(404, "no such snapshot")
        if not os.path.isfile(path):
            return problem(404, f"no snapshot {name}: still being recorded (10 s after the incident), not written "
                                "(see the health_node: recorder diagnostic), or deleted by the quota or retention")
        return path

    @r.get("/api/snapshots/{name}", response_class=FileResponse,
           responses={200: {"content": {"application/octet-stream": {}}, "description": "the MCAP file"},
                      404: {"model": Problem, "description": "no such snapshot (with the reason)"}})
    def snapshot(name: str):
        """A flight-recorder snapshot (MCAP, ROS 2 CDR): `ros2 bag info`, Foxglove, rosbags read it."""
        path = snapshot_file(name)
        if not isinstance(path, str):
            return path
        return FileResponse(path, media_type="application/octet-stream", filename=name)

    @r.get("/api/snapshots/{name}/plot", response_model=SnapshotPlot,
           responses={404: {"model": Problem, "description": "no such snapshot (with the reason)"},
                      409: {"model": Problem, "description": "the file cannot be read (damaged)"}})
    def snapshot_plot(name: str, item: str = Query(..., max_length=500, description="aggregated item name"),
                      message: str = Query("", max_length=1000, description="the incident's message (which value)")):
        """The recorded minute around an incident: the item's triggering value
        and level, and the top level (from /diagnostics_agg and
        /diagnostics_toplevel_state in the snapshot)."""
        from reachy_mini.core.health.recorder import read_plot

        path = snapshot_file(name)
        if not isinstance(path, str):
            return path
        try:
            return read_plot(path, item, message)
        except Exception as e:   # noqa: BLE001 - a damaged file is a 409, not a 500
            return problem(409, f"cannot read {name}: {type(e).__name__}: {e}")

    @r.get("/api/history", response_model=list[HistoryPoint])
    def history(minutes: float = Query(30.0, gt=0, le=1440)):
        """Motor temperatures and motor-loop rate, one point per second."""
        return store.history_since(minutes * 60)

    @r.get("/api/camera.jpg", response_class=Response,
           responses={200: {"content": {"image/jpeg": {}}, "description": "latest frame"},
                      404: {"model": Problem, "description": "no frame received yet"}})
    def camera():
        store.ask("camera")
        jpg, stamp = store.camera()
        end = time.monotonic() + 2.0   # the bridge follows the camera on demand: the first frame comes soon
        while (jpg is None or time.time() - stamp > 2.0) and time.monotonic() < end:
            time.sleep(0.05)
            jpg, stamp = store.camera()
        if jpg is None:
            return problem(404, "no camera frame received (is camera_node running with compressed_fps > 0?)")
        return Response(jpg, media_type="image/jpeg", headers={"X-Frame-Age-S": f"{time.time() - stamp:.3f}"})

    @r.get("/api/system/info", response_model=SystemInfo)
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
                "uptime_s": time.time() - ctx.started, "started_at": ctx.started}


    @r.get("/metrics", response_class=PlainTextResponse)
    def prometheus():
        """Prometheus text format (prometheus_client); every series has the `robot` label."""
        return Response(ctx.metrics.render(), media_type=prom.CONTENT_TYPE)

    @r.get("/api/stream", response_class=StreamingResponse,
           responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"},
                      503: {"model": Problem, "description": "too many clients"}})
    async def stream(request: Request):
        """Server-sent events: one JSON state message per change (diagnostics at
        1 Hz and at once on ERROR, joints at most 5 Hz)."""
        if len(hub.clients) >= cfg.max_sse_clients:
            return problem(503, f"too many live clients (max {cfg.max_sse_clients})")
        hub.loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue(maxsize=cfg.sse_queue)
        hub.clients.add(q)
        return StreamingResponse(hub.events(q), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    return r


def session_routes(ctx) -> APIRouter:
    r = APIRouter()

    @r.post("/api/session", response_model=WriteResult, openapi_extra={"security": [{"bearer": []}]},
            responses={401: {"model": Problem, "description": "missing or wrong bearer token"},
                       403: {"model": Problem, "description": "no token configured"},
                       429: {"model": Problem, "description": "rate limited"}})
    def session(request: Request):
        """The owner's token in `Authorization: Bearer` -> an HttpOnly, SameSite=Strict
        session cookie that the page's EventSource and <img> send: accepted for GET
        reads only (writes need the header)."""
        return ctx.reads.login(request)

    return r


def write_routes(ctx) -> APIRouter:
    r = APIRouter()
    actions, guard = ctx.actions, ctx.guard

    write_responses = {400: {"model": Problem, "description": "body is not valid JSON"},
                       401: {"model": Problem, "description": "missing or wrong bearer token"},
                       403: {"model": Problem, "description": "writes are disabled (no token configured)"},
                       413: {"model": Problem, "description": "body too large"},
                       429: {"model": Problem, "description": "rate limited"},
                       502: {"model": Problem, "description": "motor node did not answer"}}

    def run(fn, *args):
        try:
            ok, msg = fn(*args)
        except TimeoutError as e:
            return problem(502, str(e))
        return JSONResponse({"success": ok, "message": msg}, 200 if ok else 409)

    sec = [{"bearer": []}]

    @r.post("/api/motors/torque", response_model=WriteResult, openapi_extra={"security": sec},
            responses={**write_responses, 409: {"model": WriteResult, "description": "the motor node refused"}})
    def torque(request: Request, req: TorqueRequest = Body(...)):
        """Torque on or off for all motors (motor_node's set_torque service)."""
        return guard.check(request) or run(actions.set_torque, req.enabled)

    @r.post("/api/motors/reboot", response_model=WriteResult, openapi_extra={"security": sec},
            responses={**write_responses, 409: {"model": WriteResult, "description": "the motor node refused"}})
    def reboot(request: Request, req: RebootRequest = Body(default_factory=RebootRequest)):
        """Reboot every motor (clears latched hardware errors; motor_node's reboot service)."""
        return guard.check(request) or run(actions.reboot)

    @r.post("/api/snapshot", response_model=WriteResult, openapi_extra={"security": sec},
            responses={**write_responses, 409: {"model": WriteResult, "description": "the recorder is off"}})
    def snapshot(request: Request, req: SnapshotRequest = Body(default_factory=SnapshotRequest)):
        """A flight-recorder snapshot now (health_node's ~/snapshot service): the
        file covers 30 s before and 10 s after; `message` names it."""
        if actions.snapshot is None:
            return guard.check(request) or JSONResponse({"success": False, "message": "no recorder"}, 409)
        return guard.check(request) or run(actions.snapshot)

    return r
