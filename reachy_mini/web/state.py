"""Thread-safe state that the web_bridge node fills from ROS callbacks and
the FastAPI app reads. Plain Python, no rclpy.

Writers (ROS threads) never wait on readers: they take a short lock, bump a
version and call the registered listeners (the app's SSE hub, which hands the
event to the asyncio loop with call_soon_threadsafe and returns at once).
"""
from __future__ import annotations

import collections
import threading
import time

from reachy_mini.core.identity import device_of
from reachy_mini.core.levels import STALE, Level


# Per-motor keys of motor_node's diagnostics (motor_core.motor_health).
MOTOR_KEYS = {"temperature (C)": "temperature_c", "voltage (V)": "voltage_v", "current (mA)": "current_ma",
              "torque": "torque", "hardware error status": "hardware_error_status",
              "hardware error": "hardware_errors", "goal (rad)": "goal_rad", "id": "id", "responding": "responding",
              "communication errors": "communication_errors"}


def status_dict(name: str, level: int, message: str, values=(), hardware_id: str = "") -> dict:
    return {"name": name, "level": int(level), "level_name": Level.name_of(level), "message": message,
            "hardware_id": hardware_id, "values": {k: v for k, v in values}}


def number(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def group_items(tree: list[dict], group: str):
    """(leaf name, item) of each item directly under `group` of the aggregated
    tree ("/Reachy Mini/Motors/bus" is leaf "bus" of group "Motors")."""
    for st in tree:
        parts = st["name"].rsplit("/", 2)
        if len(parts) == 3 and parts[1] == group:
            yield parts[2], st


def group_values(tree: list[dict], group: str, leaf: str) -> dict:
    """The values of item `leaf` of `group` ({} when absent)."""
    return next((st["values"] for name, st in group_items(tree, group) if name == leaf), {})


class StateStore:
    def __init__(self, history_s: float = 1800.0, sample_period_s: float = 1.0, stale_after_s: float = 3.0) -> None:
        self._lock = threading.Lock()
        self.version = 0
        self._top: dict | None = None     # as the health node last published it
        self.top_received = 0.0           # monotonic time of that message
        self.stale_after_s = stale_after_s
        self._stale = False
        self.tree: list[dict] = []
        self.joints: dict[str, float] = {}
        self.joints_stamp = 0.0
        self.updated = 0.0
        self.tf_static: dict[str, tuple] = {}    # child frame -> transform (core/frames.Transform)
        self.tf_moving: dict[str, tuple] = {}
        self.tf_stamp = 0.0
        self.visuals: list = []                  # the URDF's shapes (core/frames.Visual), from robot_description
        self.camera_jpeg: bytes | None = None
        self.camera_stamp = 0.0
        self.camera_version = 0
        self.audio_level: float | None = None
        # direction of arrival, the vendor's DoaSnapshot {"angle": rad, "speech_detected": bool}, or None
        # (served by the vendor API's /api/state/doa; filled from audio_node by the audio work)
        self.doa: dict | None = None
        self.urdf: str | None = None             # robot_description as received (the vendor's /api/kinematics/urdf)
        self.audio_stamp = 0.0
        # direction of arrival (vendor's DoaSnapshot): None or {"angle": rad, "speech_detected": bool};
        # filled by web_bridge from audio_node's audio/direction + audio/speech
        self.doa: dict | None = None
        self.incidents: list[dict] = []
        self.history: collections.deque = collections.deque(maxlen=max(2, int(history_s / sample_period_s)))
        self.sample_period_s = sample_period_s
        self._last_sample = 0.0
        self._last_joint_push = 0.0
        self.listeners: list = []
        self.asked: dict[str, float] = {}   # what an API client asked for last (monotonic)

    # ---- demand: the node follows a topic only while someone looks at it
    def ask(self, what: str) -> None:
        self.asked[what] = time.monotonic()

    def asked_within(self, what: str, seconds: float) -> bool:
        return time.monotonic() - self.asked.get(what, -1e9) < seconds

    # ---- writers (ROS side)
    def _changed(self) -> None:
        self.version += 1
        v = self.version
        for fn in list(self.listeners):
            fn(v)

    @property
    def top(self) -> dict | None:
        """The top level as the robot's owner must see it: the health node's
        last word, or STALE when the health node has been silent longer than
        stale_after_s (a dead monitor must not leave "healthy" on display)."""
        with self._lock:
            return self._top_locked(time.monotonic())

    def _top_locked(self, now: float) -> dict | None:
        if self._top is None:
            return None
        age = now - self.top_received
        if age > self.stale_after_s:
            return status_dict("toplevel_state", STALE, f"health monitor silent for {age:.0f} s "
                               f"(last: {self._top['level_name']}: {self._top['message']})", [])
        return self._top

    def health_age(self) -> float | None:
        """Seconds since the health node last published (None: never)."""
        with self._lock:
            return None if self._top is None else time.monotonic() - self.top_received

    def check_stale(self) -> bool:
        """Called periodically (web_bridge timer): pushes a change to the page
        when the health node goes silent or comes back. True on a change."""
        with self._lock:
            stale = self._top is not None and time.monotonic() - self.top_received > self.stale_after_s
            changed = stale != self._stale
            self._stale = stale
        if changed:
            self._changed()
        return changed

    def set_diagnostics(self, top: dict | None, tree: list[dict] | None) -> None:
        with self._lock:
            if top is not None:
                self._top = top
                self.top_received = time.monotonic()
                self._stale = False
            if tree is not None:
                self.tree = tree
                self._sample_locked(time.time())
            self.updated = time.time()
        self._changed()

    def set_joints(self, names, positions, min_period_s: float = 0.2) -> None:
        now = time.time()
        with self._lock:
            self.joints = dict(zip(names, positions))
            self.joints_stamp = now
            push = now - self._last_joint_push >= min_period_s
            if push:
                self._last_joint_push = now
        if push:   # 100 Hz joint states are pushed to pages at 5 Hz at most
            self._changed()

    def set_transforms(self, transforms, static: bool) -> None:
        """/tf or /tf_static, as (parent, child, xyz, quaternion) tuples. The
        moving ones arrive with the joints, whose push carries them to the
        page; a static change is pushed at once."""
        with self._lock:
            (self.tf_static if static else self.tf_moving).update({t[1]: t for t in transforms})
            self.tf_stamp = time.time()
        if static:
            self._changed()

    def set_description(self, urdf: str) -> None:
        """robot_description: the shapes the robot view draws (none if it cannot be read)."""
        from reachy_mini.core.frames import RobotFrames

        try:
            visuals = RobotFrames(urdf).visuals
        except ValueError:
            visuals = []
        with self._lock:
            self.visuals = visuals
            self.urdf = urdf
        self._changed()

    def frames(self) -> dict:
        """The robot view (core/frames.view): every frame in base_link."""
        from reachy_mini.core.frames import view

        with self._lock:
            transforms = list(self.tf_static.values()) + list(self.tf_moving.values())
            visuals = self.visuals
        return view(transforms, visuals) | {"stamp": self.tf_stamp} if transforms else {}

    def set_camera(self, jpeg: bytes) -> None:
        with self._lock:
            self.camera_jpeg, self.camera_stamp = bytes(jpeg), time.time()
            self.camera_version += 1

    def set_audio_level(self, dbfs: float) -> None:
        with self._lock:
            self.audio_level, self.audio_stamp = float(dbfs), time.time()

    def set_incidents(self, rows: list[dict]) -> None:
        with self._lock:
            changed = [r.get("id") for r in rows] != [r.get("id") for r in self.incidents]
            self.incidents = rows
        if changed:
            self._changed()

    def _sample_locked(self, now: float) -> None:
        if now - self._last_sample < self.sample_period_s * 0.9:
            return
        self._last_sample = now
        temps, rate = {}, None
        for leaf, st in group_items(self.tree, "Motors"):
            if leaf == "bus":
                rate = number(st["values"].get("achieved rate (Hz)"))
            else:
                t = number(st["values"].get("temperature (C)"))
                if t is not None:
                    temps[leaf] = t
        self.history.append({"t": now, "temperature_c": temps, "loop_rate_hz": rate})

    # ---- readers (HTTP side)
    def snapshot(self) -> dict:
        with self._lock:
            top = self._top_locked(time.monotonic())
            tree = list(self.tree) if top is None or top is self._top else \
                [dict(i, level=int(STALE), level_name=STALE.name) for i in self.tree]   # as old as the silent monitor
            return {"version": self.version, "updated": self.updated, "top": top, "tree": tree,
                    "joints": dict(self.joints), "tf_stamp": self.tf_stamp, "audio_level_dbfs": self.audio_level,
                    "audio_stamp": self.audio_stamp, "camera_stamp": self.camera_stamp,
                    "camera_version": self.camera_version, "incidents": list(self.incidents),
                    "sample": self.history[-1] if self.history else None}

    def camera(self) -> tuple[bytes | None, float]:
        with self._lock:
            return self.camera_jpeg, self.camera_stamp

    def history_since(self, seconds: float) -> list[dict]:
        cut = time.time() - seconds
        with self._lock:
            return [h for h in self.history if h["t"] >= cut]

    def motors(self) -> list[dict]:
        s = self.snapshot()
        out = []
        for name, st in group_items(s["tree"], "Motors"):
            if device_of(st["hardware_id"]).startswith("dynamixel:"):   # servos only
                m = {"name": name, "level": st["level"], "level_name": st["level_name"], "message": st["message"],
                     "hardware_id": st.get("hardware_id", ""), "position_rad": s["joints"].get(name)}
                for k, key in MOTOR_KEYS.items():
                    v = st["values"].get(k)
                    m[key] = number(v) if key in ("temperature_c", "voltage_v", "current_ma", "goal_rad") else v
                out.append(m)
        return out
