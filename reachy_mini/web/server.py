"""uvicorn's Server, waking once a second instead of ten times.

uvicorn's main loop sleeps 0.1 s between ticks, and a tick only refreshes
the Date header (once a second) and looks at should_exit: on an idle robot
those ten wake-ups a second were most of web_bridge's HTTP thread's CPU
(issue 33). Here the loop waits up to a second, still refreshing the Date
header at every tick, and stop() (any thread) ends it at once.
"""
from __future__ import annotations

import asyncio

import uvicorn

TICK_S = 1.0


class QuietServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.ticks = 0

    async def main_loop(self) -> None:
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        # on_tick refreshes the Date header when its counter is a multiple of 10
        while not await self.on_tick(0):
            self.ticks += 1
            try:
                await asyncio.wait_for(self._wake.wait(), TICK_S)
            except asyncio.TimeoutError:
                pass

    def stop(self) -> None:
        """Ends the server from any thread (uvicorn then shuts down gracefully)."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:   # the loop closed meanwhile: it has stopped anyway
                pass
