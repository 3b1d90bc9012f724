"""A background rclpy listener for a DiagnosticArray topic, in its own
context and thread: latest level, message and values per status name. Used
by the benchmarks and the soak test (not by the nodes)."""
from __future__ import annotations

import threading
import time

from reachy_mini.core.levels import Level


class DiagnosticsListener:
    def __init__(self, domain: int, topic: str = "/diagnostics", name: str = "diag_listener") -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.ctx = Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = rclpy.create_node(name, context=self.ctx)
        self.lock = threading.Lock()
        self.items: dict[str, tuple[int, str, dict, float]] = {}
        self.last_msg = 0.0
        self.node.create_subscription(DiagnosticArray, topic, self._cb, 10)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self._stop = False
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop:
            self.ex.spin_once(timeout_sec=0.1)

    def _cb(self, m) -> None:
        now = time.monotonic()
        with self.lock:
            for s in m.status:
                lv = Level.of(s.level)
                self.items[s.name] = (lv, s.message, {kv.key: kv.value for kv in s.values}, now)
            self.last_msg = now

    def level(self, name: str, since: float = 0.0, max_silence_s: float = 3.0) -> int | None:
        """None when unknown, older than `since`, or when the topic has been
        silent for `max_silence_s` (the view is not current)."""
        with self.lock:
            it = self.items.get(name)
            if it is None or it[3] < since or time.monotonic() - self.last_msg > max_silence_s:
                return None
            return it[0]

    def values(self, name: str) -> dict:
        with self.lock:
            it = self.items.get(name)
            return dict(it[2]) if it else {}

    def value(self, name: str, key: str) -> str | None:
        return self.values(name).get(key)

    def close(self) -> None:
        import rclpy

        self._stop = True
        self._thread.join(2)
        self.ex.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)
