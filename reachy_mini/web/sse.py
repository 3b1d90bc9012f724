"""Live updates as server-sent events: one hub per app. The store's listener
hands a version number to the asyncio loop (call_soon_threadsafe, never
blocks the ROS thread); each client has a bounded queue (drop-oldest), so a
slow or stalled client only loses its own intermediate updates."""
from __future__ import annotations

import asyncio
import json

from reachy_mini.web.state import StateStore


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
            body["frames"] = self.store.frames() if s["tf_stamp"] else {}   # the robot view, from /tf
            self._cache = (s["version"], json.dumps(body))
        return self._cache[1]


    async def events(self, q: asyncio.Queue):
        """The event stream of one client (its queue is registered by the caller)."""
        try:
            yield "retry: 1000\n\n"
            yield f"data: {self.payload()}\n\n"
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
                yield f"data: {self.payload()}\n\n"
        finally:
            self.clients.discard(q)
