"""A real rclpy node in the test process, spinning on a background thread,
that records what it hears."""
from __future__ import annotations

import threading
import time

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor


class RosProbe:
    def __init__(self, name: str = "probe") -> None:
        self.ctx = Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node(name, context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.lock = threading.Lock()
        self.msgs: dict[str, list] = {}
        self._stop = False
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while not self._stop and self.ctx.ok():
            self.ex.spin_once(timeout_sec=0.05)

    def listen(self, msg_type, topic: str, depth: int = 100, best_effort: bool = False) -> None:
        """best_effort: needed for the sensor-data topics (audio), whose
        BEST_EFFORT publishers a RELIABLE subscriber never matches; also how
        image_proc subscribes to the (RELIABLE) camera."""
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        def cb(m, topic=topic):
            with self.lock:
                self.msgs.setdefault(topic, []).append((time.monotonic(), m))
        self.msgs.setdefault(topic, [])
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT if best_effort
                         else ReliabilityPolicy.RELIABLE)
        return self.node.create_subscription(msg_type, topic, cb, qos)   # node.destroy_subscription() to leave

    def publisher_qos(self, topic: str):
        """QoS profiles of the publishers of `topic` (from discovery)."""
        return [i.qos_profile for i in self.node.get_publishers_info_by_topic(topic)]

    def get(self, topic: str, since: float = 0.0) -> list:
        with self.lock:
            return [(t, m) for t, m in self.msgs.get(topic, []) if t >= since]

    def call(self, srv_type, name: str, req, timeout: float = 5.0):
        cli = self.node.create_client(srv_type, name)
        assert cli.wait_for_service(timeout_sec=timeout), f"service {name} not available"
        fut = cli.call_async(req)
        end = time.monotonic() + timeout
        while not fut.done() and time.monotonic() < end:
            time.sleep(0.01)
        assert fut.done(), f"service {name} did not answer"
        return fut.result()

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.ex.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)
