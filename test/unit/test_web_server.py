"""web/server.QuietServer: uvicorn on a real socket, its main loop waking
once a second (not ten times), the Date header still fresh, stop() from
another thread ending it at once."""
from __future__ import annotations

import threading
import time
from email.utils import parsedate_to_datetime

import httpx
import uvicorn

from reachy_mini.web.server import TICK_S, QuietServer
from tools.bench.stack import free_port


async def _app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            pass
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def test_quiet_server_serves_ticks_once_a_second_and_stops_at_once():
    port = free_port()
    server = QuietServer(uvicorn.Config(_app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert r.status_code == 200 and r.text == "ok"
        assert abs(parsedate_to_datetime(r.headers["date"]).timestamp() - time.time()) < 5
        t0, n0 = time.monotonic(), server.ticks
        time.sleep(3.0)
        elapsed, ticks = time.monotonic() - t0, server.ticks - n0
        # uvicorn's own loop ticks every 0.1 s (30 here); load only makes ticks fewer
        assert ticks <= elapsed / TICK_S + 1, (ticks, elapsed)
        # the Date header moves on with the ticks
        later = parsedate_to_datetime(httpx.get(f"http://127.0.0.1:{port}/", timeout=10).headers["date"])
        assert later.timestamp() >= parsedate_to_datetime(r.headers["date"]).timestamp() + 1
    finally:
        t1 = time.monotonic()
        server.stop()
        thread.join(20)
    assert not thread.is_alive()
    print(f"stopped {time.monotonic() - t1:.2f} s after stop() (a tick is {TICK_S} s)")
