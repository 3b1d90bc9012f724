"""FastAPI app factory. Pure web layer over a StateStore."""
from __future__ import annotations

import asyncio
import json
import os

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse

from .state import StateStore

_PAGE = os.path.join(os.path.dirname(os.path.realpath(__file__)), "index.html")


def create_app(store: StateStore) -> FastAPI:
    app = FastAPI(title="Reachy Mini status", version="0.1.0")

    @app.middleware("http")
    async def security_headers(request, call_next):
        resp = await call_next(request)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Content-Security-Policy"] = "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'"
        return resp

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        with open(_PAGE) as f:
            return f.read()

    @app.get("/api/health")
    def health():
        top = store.snapshot()["top"]
        if top is None:
            return JSONResponse({"level": 3, "level_name": "STALE", "message": "no diagnostics received yet"}, 503)
        return JSONResponse(top, 200 if top["level"] in (0, 1) else 503)

    @app.get("/api/status")
    def status():
        s = store.snapshot()
        return {"top": s["top"], "tree": s["tree"], "updated": s["updated"]}

    @app.get("/api/motors")
    def motors():
        s = store.snapshot()
        out = []
        for st in s["tree"]:
            if "/Motors/" in st["name"] and not st["name"].endswith("/bus"):
                name = st["name"].rsplit("/", 1)[-1]
                out.append({"name": name, "level": st["level"], "level_name": st["level_name"],
                            "message": st["message"], "position_rad": s["joints"].get(name), **st["values"]})
        return out

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        s = store.snapshot()
        lines = ["# HELP reachy_mini_component_level Diagnostic level (0 OK,1 WARN,2 ERROR,3 STALE)",
                 "# TYPE reachy_mini_component_level gauge"]
        for st in ([s["top"]] if s["top"] else []) + s["tree"]:
            lines.append(f'reachy_mini_component_level{{component="{st["name"]}"}} {st["level"]}')
        return "\n".join(lines) + "\n"

    @app.get("/api/stream")
    async def stream():
        async def gen():
            version = -1
            while True:
                version = await asyncio.to_thread(store.wait_newer, version, 15.0)
                s = store.snapshot()
                yield f"data: {json.dumps({'top': s['top'], 'tree': s['tree'], 'joints': s['joints']})}\n\n"
        return StreamingResponse(gen(), media_type="text/event-stream")

    return app
