"""The flight recorder's ROS side (rules: core/health/recorder.py).

Lives in health_node's process (it owns the incidents). The recorded topics
are subscribed with ``raw=True`` on a reader node that is never spun: DDS
keeps each topic's samples (KEEP_LAST, about 2 s of the fastest topic) and
a 4 Hz timer takes them as serialized CDR bytes, so 100 Hz joint states
never wake the Python executor and are never deserialized. A writer thread
turns a closed snapshot window into an MCAP file, applying the quota and the
retention; a failure (disk full, unwritable directory) is counted and shown
as a WARN on the "health_node: recorder" diagnostic, nothing else.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
import time

import rclpy
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
import importlib
from std_srvs.srv import Trigger

from reachy_mini.core.health.recorder import (RECORDER_NODE, TOPICS, RingBuffer, SnapshotPlanner, adapt_reliability,
                                              cleanup, list_snapshots, message_definition, msg_file_reader,
                                              write_mcap)
from reachy_mini.core.levels import ERROR


def get_message(typename: str):
    """The message class of "pkg/msg/Type"."""
    pkg, sub, name = typename.split("/")
    return getattr(importlib.import_module(f"{pkg}.{sub}"), name)


def share_dirs() -> list[str]:
    """Where the message packages' .msg files are: the ROS wheels' prefix
    (sys.prefix/share) and every AMENT_PREFIX_PATH entry (a ROS install)."""
    dirs = [os.path.join(sys.prefix, "share")]
    dirs += [os.path.join(p, "share") for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    return dirs


class FlightRecorder:
    def __init__(self, node, directory: str, cfg) -> None:
        self.node, self.dir, self.cfg = node, directory, cfg
        self.planner = SnapshotPlanner(cfg.snapshot_before_s, cfg.snapshot_after_s)
        self.ring = RingBuffer(int(cfg.recorder_buffer_mb * 1e6), self.planner.buffer_s())
        self.written = self.failed = self.deleted = self.dropped = 0
        self.last_error = ""
        self.last_file = ""
        self.failing = False
        self.ratio = 1.0   # file size / recorded bytes of the last snapshot (compression)
        try:
            read = msg_file_reader(share_dirs())
            self.definitions = {t: message_definition(t, read) for _, t in TOPICS}
        except (OSError, ValueError, IndexError) as e:   # no .msg files: record nothing, say so (WARN)
            self.definitions = None
            self._fail(f"message definitions not found: {e}")
        self.reader = rclpy.create_node(RECORDER_NODE, context=node.context, start_parameter_services=False,
                                        cli_args=["--ros-args", "-r", f"__node:={RECORDER_NODE}"])
        # adaptive QoS (as rosbag2): each topic RELIABLE where every publisher offers it, BEST_EFFORT as
        # soon as one does not; re-adapted when the publishers change (tick). The depth holds ~2.5 s of 100 Hz.
        self.subs = []
        self.reliable: list[bool] = []
        self.adapted = 0   # re-subscriptions after a publisher change
        for topic, typ in TOPICS:
            reliable = adapt_reliability(self._offered(topic))
            self.subs.append(self._subscribe(typ, topic, reliable))
            self.reliable.append(reliable)
        self.topics = {s.topic_name: typ for s, (_, typ) in zip(self.subs, TOPICS)}   # resolved names
        self._pub_counts = [-1] * len(self.subs)
        self.jobs: queue.Queue = queue.Queue(maxsize=8)
        self.thread = threading.Thread(target=self._run, name="flight-recorder", daemon=True)
        self.thread.start()
        self.timer = node.create_timer(0.25, self.tick)
        self.service = node.create_service(Trigger, "~/snapshot", self._on_request)
        self.jobs.put(("cleanup", None, None))

    def _subscribe(self, typ: str, topic: str, reliable: bool):
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=256, durability=DurabilityPolicy.VOLATILE,
                         reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
        return self.reader.create_subscription(get_message(typ), topic, lambda m: None, qos, raw=True)

    def _offered(self, topic: str) -> list[bool]:
        """The reliability each publisher of `topic` offers (True = RELIABLE),
        ours excluded (the recorder publishes nothing)."""
        name = self.reader.resolve_topic_name(topic)
        return [i.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                for i in self.reader.get_publishers_info_by_topic(name)]

    def adapt(self) -> None:
        """Re-adapts a topic's subscription when its publishers changed so
        that the choice is no longer right (a BEST_EFFORT publisher appeared
        beside RELIABLE ones, or the last one left): what the old one holds
        is taken first, then the new one replaces it."""
        for i, ((topic, typ), sub) in enumerate(zip(TOPICS, self.subs)):
            count = self.reader.count_publishers(sub.topic_name)
            if count == self._pub_counts[i]:
                continue   # graph queries only when the number of publishers changed
            self._pub_counts[i] = count
            want = adapt_reliability(self._offered(topic), self.reliable[i])
            if want == self.reliable[i]:
                continue
            self._take(sub)
            self.reader.destroy_subscription(sub)
            self.subs[i] = self._subscribe(typ, topic, want)
            self.reliable[i] = want
            self.adapted += 1
            self.node.get_logger().info(f"flight recorder: {sub.topic_name} now subscribed "
                                        f"{'RELIABLE' if want else 'BEST_EFFORT'} (its publishers changed)")

    def _take(self, sub) -> None:
        h, name = sub.handle, sub.topic_name
        with h:
            for _ in range(512):
                got = h.take_message(sub.msg_type, True)
                if got is None:
                    break
                data, info = got
                log = info.get("received_timestamp") or time.time_ns()
                self.ring.add(name, log, info.get("source_timestamp") or log, data)

    # ---- ROS thread
    def tick(self) -> None:
        self.adapt()
        for sub in self.subs:
            self._take(sub)
        now = time.time_ns()
        self.ring.trim(now)
        for snap in self.planner.due(now):
            msgs = self.ring.window(snap.start_ns, snap.end_ns)
            try:
                self.jobs.put_nowait(("write", snap, msgs))
            except queue.Full:
                self.dropped += 1
                self._fail(f"{snap.name} not written: writer busy")

    def incident(self, name: str, level: int) -> str | None:
        """health_node's incident path: an ERROR incident opens (or joins) a
        snapshot; returns its file name for the incident row."""
        if level != ERROR:
            return None
        return self.planner.trigger(time.time_ns(), name)

    def _on_request(self, req, resp):
        name = self.planner.trigger(time.time_ns(), "request")
        resp.success = True
        resp.message = f"{name} (written {self.cfg.snapshot_after_s:.0f} s from now into {self.dir})"
        return resp

    # ---- writer thread
    def _run(self) -> None:
        while True:
            kind, snap, msgs = self.jobs.get()
            if kind == "stop":
                return
            try:
                os.makedirs(self.dir, exist_ok=True)
                if self.definitions is None:
                    continue
                if kind == "cleanup":
                    self._cleanup(0)
                    continue
                raw = sum(len(m[3]) for m in msgs)
                # room first, for the size the last file's compression predicts; then exact, with the file
                self._cleanup(int(raw * self.ratio) + 16 * 1024)
                path = os.path.join(self.dir, snap.name)
                size = write_mcap(path, msgs, self.topics, self.definitions)
                self.ratio = min(1.0, size / raw) if raw else self.ratio
                self._cleanup(0)
                if not os.path.exists(path):   # alone larger than the quota: the cleanup took it
                    self._fail(f"{snap.name} not kept: {size / 1e6:.2f} MB exceeds the quota "
                               f"({self.cfg.snapshot_quota_mb} MB)")
                    continue
                self.written += 1
                self.last_file = snap.name
                self.failing = False
            except OSError as e:
                self._fail(f"{snap.name if snap else 'snapshot directory'}: {e}")
            except Exception as e:   # noqa: BLE001 - the recorder must never take the health node down
                self._fail(f"{snap.name if snap else 'cleanup'}: {type(e).__name__}: {e}")

    def _cleanup(self, incoming: int) -> None:
        files = list_snapshots(self.dir)
        for name in cleanup(files, int(self.cfg.snapshot_quota_mb * 1e6), self.cfg.snapshot_retention_days * 86400,
                            time.time(), incoming):
            try:
                os.unlink(os.path.join(self.dir, name))
                self.deleted += 1
            except FileNotFoundError:
                pass

    def _fail(self, why: str) -> None:
        self.failed += 1
        self.failing = True
        self.last_error = why
        self.node.get_logger().warning(f"flight recorder: {why}")

    def stats(self) -> dict:
        files = list_snapshots(self.dir)
        return {"directory": self.dir, "snapshots": len(files), "disk (MB)": round(sum(f[1] for f in files) / 1e6, 2),
                "quota (MB)": self.cfg.snapshot_quota_mb, "retention (days)": self.cfg.snapshot_retention_days,
                "written": self.written, "failed": self.failed, "deleted": self.deleted,
                "buffer (MB)": round(self.ring.bytes / 1e6, 2), "buffer (s)": round(self.ring.covered_s(), 1),
                "buffer messages": len(self.ring.items),
                "reliable topics": f"{sum(self.reliable)}/{len(self.reliable)}", "qos re-adapted": self.adapted, "last file": self.last_file, "last error": self.last_error,
                "pending": self.planner.pending.name if self.planner.pending else ""}

    def close(self) -> None:
        """Writes an open snapshot with what it has, then stops."""
        for snap in self.planner.due(1 << 62):
            try:
                self.jobs.put_nowait(("write", snap, self.ring.window(snap.start_ns, snap.end_ns)))
            except queue.Full:
                pass
        self.jobs.put(("stop", None, None))
        self.thread.join(timeout=5.0)
        self.reader.destroy_node()
