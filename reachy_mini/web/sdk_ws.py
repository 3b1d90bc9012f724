"""`/ws/sdk`: the vendor SDK's websocket (PyPI `reachy-mini` 1.13), the thin
asyncio shell over core/sdk.py. No rclpy: the node passes an SdkBackend
(callables that publish on the ROS motion path and read our state).

Each client gets the state stream (joint_positions and head_pose at 50 Hz,
daemon_status at 1 Hz) through its own bounded queue; commands are
latest-wins across clients (each is published as it comes). Loopback
clients only unless `open_to_network`. Bad frames, unknown types and floods
are counted and dropped (a flooding client is closed); nothing a client
sends stops the server.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from fastapi import APIRouter, WebSocket

from reachy_mini.core import sdk
from reachy_mini.web.security import is_loopback

log = logging.getLogger("reachy_mini.sdk")

STATE_PERIOD_S = 0.02      # 50 Hz, as the vendor's daemon
STATUS_PERIOD_S = 1.0
QUEUE = 32                 # per client: no state message is queued beyond this backlog
SETTLE_S = 0.4             # after a goto's end time, how long the joints may take to arrive


@dataclass
class SdkBackend:
    motion: Callable[[sdk.Command], None]                     # publish a motion command (ROS)
    torque: Callable[[bool], tuple[bool, str]]                # motor_node's ~/set_torque (blocking)
    state: Callable[[], tuple[dict | None, object]]           # (joints name -> rad, head 4x4) latest
    status: Callable[[], dict]                                # a daemon_status message
    goto: Callable[[sdk.Command], tuple[object, float]]       # -> (handle, duration s); ValueError: reason
    task_result: Callable[[object, bool], str | None | bool]  # (handle, final) -> False: pending; None: done; str: error
    motors: tuple[str, ...] = ()
    log: Callable[[str, str], None] = lambda level, msg: getattr(log, level)(msg)
    media: Callable[[sdk.Command], tuple[bool, str]] | None = None   # audio commands (blocking); None: not served


@dataclass
class Client:
    ws: WebSocket
    host: str
    agent: str
    guard: sdk.FloodGuard
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)   # bounded for state messages (_stream_loop)
    recording: sdk.Recording = field(default_factory=sdk.Recording)
    noted: set = field(default_factory=set)
    tasks: set = field(default_factory=set)


class SdkHub:
    def __init__(self, backend: SdkBackend, open_to_network: bool = False, max_commands_per_s: float = 1000.0) -> None:
        self.backend = backend
        self.open_to_network = open_to_network
        self.max_rate = max_commands_per_s
        self.clients: list[Client] = []
        self.counts = {"connections": 0, "commands": 0, "malformed": 0, "oversized": 0, "unknown": 0,
                       "invalid": 0, "flood_dropped": 0, "closed_for_flooding": 0, "refused_remote": 0,
                       "state_dropped": 0, "tasks": 0, "task_errors": 0, "record_dropped": 0}
        self.unsupported: dict[str, str] = {}   # type -> reason, as seen
        self.last_error = ""
        self._stream: asyncio.Task | None = None

    # ---- connection
    async def serve(self, ws: WebSocket) -> None:
        host = ws.client.host if ws.client else ""
        if not self.open_to_network and not is_loopback(host):
            self.counts["refused_remote"] += 1
            self.backend.log("warning", f"SDK client {host} refused: /ws/sdk accepts loopback clients only "
                                        "(web_bridge parameter sdk_open_to_network)")
            await ws.close(code=1008, reason="loopback clients only")
            return
        await ws.accept()
        c = Client(ws, host, ws.headers.get("x-reachy-client", "unknown"), sdk.FloodGuard(self.max_rate))
        self.clients.append(c)
        self.counts["connections"] += 1
        self.backend.log("info", f"SDK client connected from {host} ({c.agent})")
        sender = asyncio.create_task(self._send_loop(c))
        if self._stream is None or self._stream.done():
            self._stream = asyncio.create_task(self._stream_loop())
        why = "closed by the client"
        try:
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    if msg.get("code") == 1009:
                        self.counts["oversized"] += 1
                        why = f"frame larger than {sdk.MAX_FRAME_BYTES} bytes"
                    break
                data = msg.get("text")
                if data is None:
                    data = msg.get("bytes") or b""
                self.handle(c, data)
                if c.guard.should_kick():
                    self.counts["closed_for_flooding"] += 1
                    why = f"flooding: more than {self.max_rate:g} commands/s"
                    await ws.close(code=1008, reason="too many commands")
                    break
        except Exception as e:   # a broken connection is the client's end, never the server's
            why = f"{type(e).__name__}: {e}"
        finally:
            self.clients.remove(c)
            sender.cancel()
            for t in c.tasks:
                t.cancel()
            self.backend.log("info", f"SDK client {host} gone ({why})")

    # ---- client -> server
    def handle(self, c: Client, data) -> None:
        if not c.guard.allow():
            self.counts["flood_dropped"] += 1
            return
        try:
            cmd = sdk.parse(data)
        except sdk.ProtocolError as e:
            self.counts[e.kind] += 1
            self.last_error = f"{e.kind}: {e}"
            if e.kind not in c.noted:   # once per client and kind
                c.noted.add(e.kind)
                self.backend.log("warning", f"SDK client {c.host}: {e.kind} frame dropped ({e})")
            return
        self.counts["commands"] += 1
        k = cmd.kind
        if k == "motion":
            self.backend.motion(cmd)
        elif k == "torque":
            if cmd.ids is not None and set(cmd.ids) != set(self.backend.motors):
                return self._unsupported(c, "set_torque(ids)", "per-motor torque is not served: motor_node's "
                                         "~/set_torque switches all motors (call it with ids=None)")
            asyncio.get_running_loop().run_in_executor(None, self._torque, c, cmd.on)
        elif k == "auto_body_yaw":
            self._note(c, "set_automatic_body_yaw", "automatic body yaw follows motor_node's head_auto_body_yaw "
                       "parameter", "info")
        elif k == "record_start":
            c.recording.start()
        elif k == "record_append":
            if c.recording.active and not c.recording.append(cmd.record):
                self.counts["record_dropped"] += 1
                self._note(c, "recording full", f"recording over {c.recording.max_bytes} bytes: later records "
                           "dropped (the SDK accepts answers of 1 MiB at most)")
        elif k == "record_stop":
            self._push(c, json.dumps({"type": "recorded_data", "data": c.recording.stop()}, default=str))
        elif k == "task":
            self.counts["tasks"] += 1
            t = asyncio.create_task(self._task(c, cmd))
            c.tasks.add(t)
            t.add_done_callback(c.tasks.discard)
        elif k == "media":
            if self.backend.media is None:
                return self._unsupported(c, cmd.type, "audio is not connected to this bridge")
            asyncio.get_running_loop().run_in_executor(None, self._media, c, cmd)
        elif k == "unsupported":
            self._unsupported(c, cmd.type, cmd.reason)
            if cmd.uuid:
                self._push(c, json.dumps(sdk.task_progress_msg(cmd.uuid, f"not supported: {cmd.reason}")))

    def _note(self, c: Client, what: str, reason: str, level: str = "warning") -> None:
        if what not in c.noted:
            c.noted.add(what)
            self.backend.log(level, f"SDK client {c.host}: {what}: {reason}")

    def _unsupported(self, c: Client, what: str, reason: str) -> None:
        self.unsupported[what] = reason
        self._note(c, what, f"not supported ({reason}); ignored")

    def _torque(self, c: Client, on: bool) -> None:
        try:
            ok, msg = self.backend.torque(on)
        except Exception as e:   # TimeoutError: motor_node absent
            ok, msg = False, str(e)
        if not ok:
            self.last_error = f"set_torque({on}): {msg}"
            self.backend.log("warning", f"SDK client {c.host}: set_torque {on} failed: {msg}")

    def _media(self, c: Client, cmd: sdk.Command) -> None:
        try:
            ok, msg = self.backend.media(cmd)
        except Exception as e:   # TimeoutError: audio_node absent
            ok, msg = False, str(e)
        if not ok:
            self.last_error = f"{cmd.type}: {msg}"
            self.backend.log("warning", f"SDK client {c.host}: {cmd.type} failed: {msg}")

    async def _task(self, c: Client, cmd: sdk.Command) -> None:
        try:
            handle, duration = self.backend.goto(cmd)
        except ValueError as e:
            return self._finish(c, cmd.uuid, str(e))
        end = time.monotonic() + duration
        final = end + SETTLE_S
        while True:
            now = time.monotonic()
            r = self.backend.task_result(handle, now >= final)
            if r is not False and (r is not None or now >= end):
                return self._finish(c, cmd.uuid, r)
            await asyncio.sleep(0.01 if now >= end else min(0.05, max(0.0, end - now)))

    def _finish(self, c: Client, uid: str, error: str | None) -> None:
        if error:
            self.counts["task_errors"] += 1
            self.last_error = f"task: {error}"
        self._push(c, json.dumps(sdk.task_progress_msg(uid, error)))

    # ---- server -> client
    def _push(self, c: Client, text: str) -> None:
        """Answers (task_progress, recorded_data) are always queued; the state
        stream skips a client that is QUEUE messages behind."""
        c.queue.put_nowait(text)

    async def _send_loop(self, c: Client) -> None:
        try:
            while True:
                await c.ws.send_text(await c.queue.get())
        except asyncio.CancelledError:
            raise
        except Exception:   # the receive side sees the disconnect
            return

    async def _stream_loop(self) -> None:
        next_status = 0.0
        tick = time.monotonic()
        while self.clients:
            out = []
            try:
                joints, head = self.backend.state()
                if joints is not None and (m := sdk.joint_positions_msg(joints)) is not None:
                    out.append(json.dumps(m))
                if head is not None:
                    out.append(json.dumps(sdk.head_pose_msg(head)))
                now = time.monotonic()
                if now >= next_status:
                    next_status = now + STATUS_PERIOD_S
                    out.append(json.dumps(self.backend.status()))
            except Exception as e:   # never let the stream die on a bad sample
                self.backend.log("error", f"SDK state stream: {type(e).__name__}: {e}")
            for c in list(self.clients):
                if c.queue.qsize() > QUEUE:    # a slow client gets fresh samples, not a backlog
                    self.counts["state_dropped"] += len(out)
                    continue
                for text in out:
                    self._push(c, text)
            tick += STATE_PERIOD_S
            delay = tick - time.monotonic()
            if delay < 0:
                tick, delay = time.monotonic(), 0.0
            await asyncio.sleep(delay)


def sdk_routes(hub: SdkHub) -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.websocket("/ws/sdk")
    async def ws_sdk(websocket: WebSocket):
        await hub.serve(websocket)

    return r
