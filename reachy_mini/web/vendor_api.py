"""The vendor daemon's HTTP API (reachy-mini 1.13.0, under /api): the thin
FastAPI shell over core/vendor_api.py. No rclpy: the node passes a
VendorBackend (callables over the same ROS motion path as /ws/sdk).

VendorGuard applies the access rules to every vendor route, including the
audio (web/vendor_audio.py) and camera (web/vendor_camera.py) routers:
loopback clients only unless the owner opens it (sdk_open_to_network), the
Host / Origin checks, and writes counted and rate-limited per client.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid as _uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Literal

from fastapi import APIRouter, HTTPException, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictFloat

from reachy_mini.core import sdk
from reachy_mini.core import vendor_api as va
from reachy_mini.web.security import is_loopback

log = logging.getLogger("reachy_mini.vendor_api")
SETTLE_S = 0.4           # after a goto's end time, how long the joints may take to arrive
_SAFE = ("GET", "HEAD", "OPTIONS")


@dataclass
class VendorBackend:
    state: Callable[[], tuple[dict | None, Any]]              # fresh (joints, head 4x4); blocks <= a few s
    status: Callable[[], dict]                                # the daemon_status (core/sdk.daemon_status)
    bus: Callable[[], dict]                                   # motor_node's bus diagnostic values
    mode: Callable[[], str | None]                            # enabled | disabled | None (unknown)
    motion: Callable[[sdk.Command], None]
    goto: Callable[[sdk.Command], tuple[object, float]]       # ValueError: refused, with the reason
    task_result: Callable[[object, bool], str | None | bool]
    torque: Callable[[bool], tuple[bool, str]]
    doa: Callable[[], dict | None] = lambda: None
    urdf: Callable[[], str | None] = lambda: None
    robot: str = ""
    log: Callable[[str, str], None] = lambda level, msg: getattr(log, level)(msg)


# ---------------------------------------------------------------- models (the vendor's, bounded)
_STRICT = ConfigDict(allow_inf_nan=False, extra="forbid")
Metres = Annotated[StrictFloat, Field(ge=-va.MAX_TRANSLATION_M, le=va.MAX_TRANSLATION_M, allow_inf_nan=False,
                                      description="m")]
Angle = Annotated[StrictFloat, Field(ge=-va.MAX_ANGLE_RAD, le=va.MAX_ANGLE_RAD, allow_inf_nan=False,
                                     description="rad")]
Number = Annotated[StrictFloat, Field(allow_inf_nan=False)]


class XYZRPYPose(BaseModel):
    model_config = _STRICT
    x: Metres = 0.0
    y: Metres = 0.0
    z: Metres = 0.0
    roll: Angle = 0.0
    pitch: Angle = 0.0
    yaw: Angle = 0.0


class Matrix4x4Pose(BaseModel):
    model_config = _STRICT
    m: tuple[Number, Number, Number, Number, Number, Number, Number, Number, Number, Number, Number, Number,
             Number, Number, Number, Number]


AnyPose = XYZRPYPose | Matrix4x4Pose


class GotoModelRequest(BaseModel):
    model_config = _STRICT
    head_pose: AnyPose | None = None
    antennas: tuple[Angle, Angle] | None = None
    body_yaw: Angle | None = None
    duration: Annotated[StrictFloat, Field(gt=0, le=va.MAX_DURATION_S, allow_inf_nan=False, description="s")]
    interpolation: Literal["linear", "minjerk", "ease_in_out", "cartoon"] = "minjerk"


class FullBodyTarget(BaseModel):
    model_config = _STRICT
    target_head_pose: AnyPose | None = None
    target_antennas: tuple[Angle, Angle] | None = None
    target_body_yaw: Angle | None = None
    timestamp: str | None = None


class Problem(BaseModel):
    detail: str | list[dict[str, Any]]


ERRORS = {code: {"model": Problem, "description": why} for code, why in (
    (400, "untrusted or duplicate Host / Origin header"),
    (403, "not a loopback client (sdk_open_to_network), or a cross-origin write"),
    (409, "refused by motor_node or its rules (e-stop, torque off, ...), with the reason"),
    (413, "request body too large"), (422, "invalid input, naming the field"),
    (429, "too many writes from this client"), (503, "no state from motor_node yet"))}


class MoveUUID(BaseModel):
    uuid: _uuid.UUID


def _pose(p) -> dict | None:
    return None if p is None else p.model_dump()


# ---------------------------------------------------------------- moves
@dataclass
class Moves:
    """The vendor's move tasks: each goto (or play/…) runs as an asyncio
    task, listed by /move/running, cancelled by /move/stop, announced on
    /move/ws/updates."""
    tasks: dict[str, asyncio.Task] = field(default_factory=dict)
    listeners: list[WebSocket] = field(default_factory=list)
    failed: Callable[[str, str], None] = lambda uid, why: None

    async def notify(self, kind: str, uid: str, details: str = "") -> None:
        for ws in list(self.listeners):
            try:
                await ws.send_json({"type": kind, "uuid": uid, "details": details})
            except Exception:
                if ws in self.listeners:
                    self.listeners.remove(ws)

    def start(self, run) -> str:
        uid = str(_uuid.uuid4())

        async def wrap():
            try:
                await self.notify("move_started", uid)
                details = await run()
                await self.notify("move_completed", uid, details or "")
            except asyncio.CancelledError:
                await self.notify("move_cancelled", uid)
            except Exception as e:
                self.failed(uid, str(e))
                await self.notify("move_failed", uid, str(e))
            finally:
                self.tasks.pop(uid, None)

        self.tasks[uid] = asyncio.create_task(wrap())
        return uid


class VendorApi:
    def __init__(self, backend: VendorBackend, open_to_network: bool = False,
                 max_writes_per_s: float = 1000.0) -> None:
        self.b = backend
        self.open_to_network = open_to_network
        self.max_rate = max_writes_per_s
        self.moves = Moves(failed=self._move_failed)
        self.guards: dict[str, sdk.FloodGuard] = {}
        self.targets: dict = {"head": None, "joints": {}}
        self.counts = {"requests": 0, "writes": 0, "refused_remote": 0, "refused_host": 0, "refused_origin": 0,
                       "rate_limited": 0, "invalid": 0, "refused_motion": 0, "unserved": 0, "moves_failed": 0}
        self.last_error = ""

    def _move_failed(self, uid: str, why: str) -> None:
        self.counts["moves_failed"] += 1
        self.last_error = f"move {uid}: {why}"
        self.b.log("warning", f"vendor API move {uid} failed: {why}")

    # ---- access (VendorGuard)
    def check(self, client: str, hosts: list[str], origins: list[str], write: bool) -> tuple[int, str] | None:
        self.counts["requests"] += 1
        why = va.access(client, hosts, origins, write, self.open_to_network, is_loopback)
        if why is not None:
            code, reason = why
            key = "refused_remote" if "loopback" in reason else "refused_origin" if code == 403 else "refused_host"
            self.counts[key] += 1
            if self.counts[key] in (1, 10, 100, 1000):   # logged, not flooded
                self.b.log("warning", f"vendor API: {client} refused ({reason}; {self.counts[key]} so far)")
            return why
        if write:
            self.counts["writes"] += 1
            g = self.guards.get(client)
            if g is None:
                if len(self.guards) > 1000:
                    self.guards.clear()
                g = self.guards[client] = sdk.FloodGuard(self.max_rate)
            if not g.allow():
                self.counts["rate_limited"] += 1
                return 429, f"too many writes: at most {self.max_rate:g} per second per client (sdk_max_commands_per_s)"
        return None

    def refuse(self, code: int, reason: str, kind: str = "invalid"):
        self.counts[kind] += 1
        self.last_error = f"{code}: {reason}"
        raise HTTPException(code, reason)

    # ---- the robot's state
    async def present(self) -> tuple[dict, Any]:
        joints, head = await run_in_threadpool(self.b.state)
        if joints is None or head is None or any(n not in joints for n in sdk.HEAD_ORDER + sdk.ANTENNAS):
            self.refuse(503, "backend not running: no joint_states / head/pose from motor_node yet", "refused_motion")
        return joints, head

    def note_target(self, cmd: sdk.Command, joints: dict | None = None) -> None:
        if cmd.head is not None:
            self.targets["head"] = cmd.head
        j = self.targets["joints"]
        if cmd.antennas is not None:
            j.update(zip(sdk.ANTENNAS, cmd.antennas))
        if cmd.body_yaw is not None:
            j[sdk.HEAD_ORDER[0]] = cmd.body_yaw
        if joints:
            j.update(joints)

    # ---- moves
    async def run_goto(self, cmd: sdk.Command, handle=None, duration: float | None = None) -> None:
        """Waits for a goto already sent (handle) or sends it; raises with motor_node's reason."""
        if handle is None:
            try:
                handle, duration = self.b.goto(cmd)
            except ValueError as e:
                raise RuntimeError(_rest_reason(str(e))) from None
            self.note_target(cmd)
        end = time.monotonic() + duration
        final = end + SETTLE_S
        while True:
            now = time.monotonic()
            await run_in_threadpool(self.b.state)
            r = self.b.task_result(handle, now >= final)
            if r is not False and (r is not None or now >= end):
                if r:
                    raise RuntimeError(r)
                return
            await asyncio.sleep(0.02 if now >= end else min(0.05, max(0.0, end - now)))

    async def send_goto(self, cmd: sdk.Command) -> tuple[object, float]:
        """Sends a goto now: a refusal (e-stop, torque off, no state, out of
        reach) is an HTTP 409 with the reason, and nothing moves."""
        await self.present()
        try:
            handle, duration = self.b.goto(cmd)
        except ValueError as e:
            self.refuse(409, _rest_reason(str(e)), "refused_motion")
        self.note_target(cmd)
        return handle, duration

    async def hold(self) -> None:
        """Stops a trajectory: the present joints become the goal (latest wins in motor_node)."""
        joints, _ = await self.present()
        self.b.motion(sdk.Command("motion", "stop", head_joints=va.head_joints(joints),
                                  antennas=va.antenna_positions(joints)))


def _rest_reason(msg: str) -> str:
    if msg.startswith("torque off"):
        return "torque off: POST /api/motors/set_mode/enabled first"
    return msg


# ---------------------------------------------------------------- the guard (all vendor prefixes)
class VendorGuard:
    """Pure ASGI: the access rules of every vendor route (core/vendor_api.VENDOR_PREFIXES)."""

    def __init__(self, app, api: VendorApi) -> None:
        self.app, self.api = app, api

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or not va.is_vendor_path(scope["path"]):
            return await self.app(scope, receive, send)
        hosts, origins = [], []
        for k, v in scope.get("headers", []):
            if k == b"host":
                hosts.append(v.decode("latin-1"))
            elif k == b"origin":
                origins.append(v.decode("latin-1"))
        client = scope["client"][0] if scope.get("client") else ""
        write = scope["type"] == "websocket" or scope.get("method", "GET").upper() not in _SAFE
        why = self.api.check(client, hosts, origins, write)
        if why is None:
            if scope["type"] == "websocket":
                return await self.app(scope, receive, send)
            return await self.app(scope, receive, self._unmatched(scope, send))
        code, reason = why
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": reason[:120]})
            return
        headers = {"Retry-After": "1"} if code == 429 else None
        await JSONResponse({"detail": reason}, code, headers=headers)(scope, receive, send)

    def _unmatched(self, scope, send):
        """A vendor path no route claims answers 501 with the reason, not a bare
        404 (e.g. /api/media/* before the audio routes are in)."""
        state = {"swallow": False}

        async def wrapped(msg):
            if msg["type"] == "http.response.start" and msg["status"] in (404, 405) and "endpoint" not in scope:
                why = va.unserved_reason(scope["path"])
                if why is not None:
                    state["swallow"] = True
                    self.api.counts["unserved"] += 1
                    body = json.dumps({"detail": why}).encode()
                    await send({"type": "http.response.start", "status": 501,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
                    return
            if state["swallow"]:
                return
            await send(msg)
        return wrapped


# ---------------------------------------------------------------- routes
def vendor_routes(api: VendorApi) -> APIRouter:
    r = APIRouter(prefix="/api", tags=["vendor daemon API (reachy-mini 1.13.0)"], responses=ERRORS)
    b = api.b

    # ---- daemon
    @r.get("/daemon/status")
    async def daemon_status() -> dict:
        st = await run_in_threadpool(b.status)
        return va.with_backend(st, await run_in_threadpool(b.bus))

    @r.post("/daemon/start", status_code=501, include_in_schema=False)
    @r.post("/daemon/stop", status_code=501, include_in_schema=False)
    @r.post("/daemon/restart", status_code=501, include_in_schema=False)
    async def daemon_control() -> dict:
        api.refuse(501, va.DAEMON_CONTROL_REASON, "unserved")

    @r.get("/daemon/robot-name")
    async def robot_name() -> dict:
        return {"name": b.robot or None}

    @r.post("/daemon/robot-name", status_code=501, include_in_schema=False)
    async def set_robot_name() -> dict:
        api.refuse(501, va.ROBOT_NAME_REASON, "unserved")

    @r.get("/daemon/hardware-id")
    async def hardware_id() -> dict:
        return {"hardware_id": None}   # the vendor's null: no Pollen audio device serial is read by this stack

    @r.get("/daemon/robot-app-lock-status")
    async def app_lock() -> dict:
        return {"state": "free", "holder_name": None}   # no managed apps here (/api/apps is 501)

    # ---- state
    @r.get("/state/present_head_pose")
    async def present_head_pose(use_pose_matrix: bool = False) -> dict:
        _, head = await api.present()
        return va.any_pose(head, use_pose_matrix)

    @r.get("/state/present_body_yaw")
    async def present_body_yaw() -> float:
        joints, _ = await api.present()
        return float(joints[sdk.HEAD_ORDER[0]])

    @r.get("/state/present_antenna_joint_positions")
    async def present_antennas() -> list[float]:
        joints, _ = await api.present()
        return va.antenna_positions(joints)

    @r.get("/state/doa")
    async def doa() -> dict | None:
        return b.doa()

    @r.get("/state/imu")
    async def imu() -> None:
        return None   # the vendor's None on robots without an IMU (Lite, simulation); no IMU is served here

    async def _full(flags: dict) -> dict:
        joints, head = await api.present()
        return va.full_state(flags, joints, head, b.mode(), api.targets, b.doa(), None)

    @r.get("/state/full")
    async def full(with_control_mode: bool = True, with_head_pose: bool = True, with_target_head_pose: bool = False,
                   with_head_joints: bool = False, with_target_head_joints: bool = False, with_body_yaw: bool = True,
                   with_target_body_yaw: bool = False, with_antenna_positions: bool = True,
                   with_target_antenna_positions: bool = False, with_passive_joints: bool = False,
                   with_doa: bool = False, with_imu: bool = False, use_pose_matrix: bool = False) -> dict:
        return await _full(dict(locals()))

    @r.websocket("/state/ws/full")
    async def ws_full(ws: WebSocket, frequency: float = 10.0, with_head_pose: bool = True,
                      with_target_head_pose: bool = False, with_head_joints: bool = False,
                      with_target_head_joints: bool = False, with_body_yaw: bool = True,
                      with_target_body_yaw: bool = False, with_antenna_positions: bool = True,
                      with_target_antenna_positions: bool = False, with_passive_joints: bool = False,
                      with_doa: bool = False, with_imu: bool = False, use_pose_matrix: bool = False):
        flags = {k: v for k, v in locals().items() if k.startswith(("with_", "use_"))}
        if not (0.1 <= frequency <= 100.0):
            await ws.close(1008, "frequency: must be in [0.1, 100] Hz")
            return
        await ws.accept()
        try:
            while True:
                try:
                    await ws.send_json(await _full(flags))
                except HTTPException:   # no state yet: skip the frame, as the vendor
                    pass
                await asyncio.sleep(1.0 / frequency)
        except (WebSocketDisconnect, RuntimeError):
            return

    # ---- move
    @r.get("/move/running")
    async def running() -> list[MoveUUID]:
        return [MoveUUID(uuid=u) for u in api.moves.tasks]

    @r.post("/move/goto")
    async def goto(req: GotoModelRequest) -> MoveUUID:
        try:
            cmd = va.goto_command(_pose(req.head_pose), req.antennas, req.body_yaw, req.duration, req.interpolation)
        except ValueError as e:
            api.refuse(422, str(e))
        handle, duration = await api.send_goto(cmd)
        return MoveUUID(uuid=api.moves.start(lambda: api.run_goto(cmd, handle, duration)))

    async def _sequence(steps, first: tuple, then_off: bool = False) -> str:
        """The vendor's scripted gotos; steps[0] already sent (first: its handle, duration)."""
        note = ""
        for i, cmd in enumerate(steps):
            try:
                await api.run_goto(cmd, *(first if i == 0 else (None, None)))
            except RuntimeError as e:
                if not (then_off and i == len(steps) - 1 and str(e).startswith("did not reach the target")):
                    raise
                # the vendor's sleep pose puts stewart_1 beyond the joint range motor_node enforces:
                # the head rests at the nearest allowed pose, then goes limp as the vendor's
                note = f"sleep pose clamped by the joint envelope ({e})"
                b.log("warning", f"vendor API goto_sleep: {note}")
        if then_off:
            await asyncio.sleep(2.0)   # the vendor rests at the sleep pose, then goes limp
            ok, msg = await run_in_threadpool(b.torque, False)
            if not ok:
                raise RuntimeError(f"torque off after goto_sleep failed: {msg}")
        return note

    @r.post("/move/play/wake_up")
    async def wake_up() -> MoveUUID:
        steps = va.wake_up_steps()
        handle, duration = await api.send_goto(steps[0])

        async def run():
            return await _sequence(steps, (handle, duration))
        return MoveUUID(uuid=api.moves.start(run))

    @r.post("/move/play/goto_sleep")
    async def goto_sleep() -> MoveUUID:
        _, head = await api.present()
        steps = va.goto_sleep_steps(head)
        handle, duration = await api.send_goto(steps[0])

        async def run():
            return await _sequence(steps, (handle, duration), then_off=True)
        return MoveUUID(uuid=api.moves.start(run))

    @r.get("/move/recorded-move-datasets/list/{dataset_name:path}", status_code=501, include_in_schema=False)
    async def list_dataset(dataset_name: str) -> list[str]:
        api.refuse(501, va.RECORDED_MOVES_REASON, "unserved")

    @r.post("/move/play/recorded-move-dataset/{dataset_name:path}/{move_name}", status_code=501,
            include_in_schema=False)
    async def play_dataset(dataset_name: str, move_name: str) -> MoveUUID:
        api.refuse(501, va.RECORDED_MOVES_REASON, "unserved")

    @r.post("/move/stop", responses={404: {"model": Problem, "description": "no running move with this uuid"}})
    async def stop(uuid: MoveUUID) -> dict:
        uid = str(uuid.uuid)
        task = api.moves.tasks.pop(uid, None)
        if task is None:
            api.refuse(404, f"running move with UUID {uid} not found")
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        await api.hold()
        return {"message": f"Stopped move with UUID: {uid}"}

    @r.websocket("/move/ws/updates")
    async def ws_updates(ws: WebSocket):
        await ws.accept()
        api.moves.listeners.append(ws)
        try:
            while True:
                await ws.receive_text()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if ws in api.moves.listeners:
                api.moves.listeners.remove(ws)

    async def _set_target(t: FullBodyTarget) -> dict:
        try:
            cmd = va.target_command(_pose(t.target_head_pose), t.target_antennas, t.target_body_yaw)
        except ValueError as e:
            api.refuse(422, str(e))
        if api.moves.tasks:
            return {"status": "ignored", "reason": "move_running"}
        await api.present()
        b.motion(cmd)
        api.note_target(cmd)
        return {"status": "ok"}

    @r.post("/move/set_target")
    async def set_target(target: FullBodyTarget) -> dict:
        return await _set_target(target)

    @r.websocket("/move/ws/set_target")
    async def ws_set_target(ws: WebSocket):
        await ws.accept()
        try:
            while True:
                data = await ws.receive_text()
                try:
                    await _set_target(FullBodyTarget.model_validate_json(data))
                except Exception as e:   # the vendor answers each bad frame and goes on
                    detail = e.detail if isinstance(e, HTTPException) else str(e)
                    await ws.send_json({"status": "error", "detail": detail})
        except (WebSocketDisconnect, RuntimeError):
            pass

    @r.websocket("/move/ws/raw/write")
    async def raw_write(ws: WebSocket):
        await ws.close(1008, va.RAW_WRITE_REASON[:120])

    # ---- motors
    @r.get("/motors/status")
    async def motors_status() -> dict:
        mode = b.mode()
        if mode is None:
            api.refuse(503, "backend not running: no motor diagnostics from motor_node yet", "refused_motion")
        return {"mode": mode}

    @r.post("/motors/set_mode/{mode}")
    async def set_mode(mode: Literal["enabled", "disabled", "gravity_compensation"]) -> dict:
        try:
            on = va.check_mode(mode)
        except NotImplementedError as e:
            api.refuse(409, str(e), "unserved")   # the vendor's code for a mode its backend refuses
        try:
            ok, msg = await run_in_threadpool(b.torque, on)
        except Exception as e:   # TimeoutError: motor_node absent
            ok, msg = False, str(e)
        if not ok:
            api.refuse(409, f"motor_node refused torque {'on' if on else 'off'}: {msg}", "refused_motion")
        return {"status": f"motors changed to {mode} mode"}

    # ---- kinematics
    @r.get("/kinematics/info")
    async def kin_info() -> dict:
        return {"info": {"engine": "AnalyticalKinematics", "collision check": False}}

    @r.get("/kinematics/urdf")
    async def urdf() -> dict:
        text = await run_in_threadpool(b.urdf)
        if not text:
            api.refuse(503, "no robot_description from motor_node yet", "refused_motion")
        return {"urdf": text}

    @r.get("/kinematics/stl/{filename}", responses={404: {"model": Problem, "description": "no such STL file"}})
    async def stl(filename: str):
        api.refuse(404, f"STL file not found {filename[:80]}: this stack's URDF draws the robot with primitive "
                        "shapes and serves no STL meshes")

    # ---- what is not served: 501 with the reason, never a bare 404
    for prefix in va.UNSERVED:
        _unserved(r if prefix.startswith("/api/") else None, prefix, api)
    return r


def unserved_routes(api: VendorApi) -> APIRouter:
    """The vendor's wireless-only routers outside /api (update, wifi, cache, logs)."""
    r = APIRouter()
    for prefix in va.UNSERVED:
        if not prefix.startswith("/api/"):
            _unserved(r, prefix, api)
    return r


def _unserved(r: APIRouter | None, prefix: str, api: VendorApi) -> None:
    if r is None:
        return
    path = prefix[4:] if prefix.startswith("/api/") else prefix
    why = va.UNSERVED[prefix]

    async def not_served(rest: str = ""):
        api.refuse(501, why, "unserved")

    for p in (path, path + "/{rest:path}"):
        r.add_api_route(p, not_served, methods=["GET", "POST", "PUT", "DELETE", "PATCH"], status_code=501,
                        include_in_schema=False)
