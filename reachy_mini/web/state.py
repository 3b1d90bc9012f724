"""Thread-safe store that the web_bridge node fills from ROS callbacks and
the FastAPI app reads. Plain Python."""
from __future__ import annotations

import threading
import time

LEVELS = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}


class StateStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.version = 0
        self.top: dict | None = None
        self.tree: list[dict] = []
        self.joints: dict[str, float] = {}
        self.updated = 0.0

    def set_diagnostics(self, top: dict | None, tree: list[dict] | None) -> None:
        with self._cond:
            if top is not None:
                self.top = top
            if tree is not None:
                self.tree = tree
            self.updated = time.time()
            self.version += 1
            self._cond.notify_all()

    def set_joints(self, names, positions) -> None:
        with self._lock:
            self.joints = dict(zip(names, positions))

    def snapshot(self) -> dict:
        with self._lock:
            return {"version": self.version, "updated": self.updated, "top": self.top,
                    "tree": list(self.tree), "joints": dict(self.joints)}

    def wait_newer(self, version: int, timeout: float) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self.version != version, timeout)
            return self.version


def status_dict(name: str, level: int, message: str, values=()) -> dict:
    return {"name": name, "level": level, "level_name": LEVELS.get(level, str(level)), "message": message,
            "values": {k: v for k, v in values}}
