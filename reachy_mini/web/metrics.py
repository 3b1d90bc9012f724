"""/metrics through prometheus_client: one registry per app.

- HTTP requests by route and status (unhandled errors count as code="500")
  and their latency: prometheus_client Counter and Histogram, updated by the
  GuardMiddleware.
- Everything else is read at scrape time from what the bridge already holds
  (the health node's aggregated diagnostics, the motor figures, the page
  connections, the incident database) by a custom collector, so an idle
  bridge spends nothing on metrics.

Every series carries the `robot` label (robot_name). The full list is in
docs/operations.md ("Metrics"); `METRICS` below is the same list, checked by the tests.
"""
from __future__ import annotations

import platform
import time
from typing import Callable

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, disable_created_metrics,
                               generate_latest)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from reachy_mini import __version__
from reachy_mini.core.health.system import HOST_KEYS, NODE_KEYS
from reachy_mini.core.levels import DESCRIPTION as LEVELS
from reachy_mini.core.levels import Level
from reachy_mini.web.state import number, group_items, group_values

CONTENT_TYPE = CONTENT_TYPE_LATEST
disable_created_metrics()   # no *_created series: they double the counters and nobody graphs them
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

# name -> (type, help); the docs' metric table and the monitoring configs use these names.
METRICS = {
    "reachy_mini_up": ("gauge", "1 while the health node publishes (silent for at most health_stale_s)"),
    "reachy_mini_health_level": ("gauge", f"the robot's top level: {LEVELS}; STALE when the monitor is silent"),
    "reachy_mini_health_age_seconds": ("gauge", "age of the last aggregated diagnostics"),
    "reachy_mini_component_level": ("gauge", f"level of each item of the aggregated tree: {LEVELS}"),
    "reachy_mini_motor_level": ("gauge", "each servo's diagnostic level"),
    "reachy_mini_motor_temperature_celsius": ("gauge", "servo temperature"),
    "reachy_mini_motor_voltage_volts": ("gauge", "servo input voltage"),
    "reachy_mini_motor_current_amperes": ("gauge", "servo current"),
    "reachy_mini_motor_loop_rate_hertz": ("gauge", "achieved motor control loop rate"),
    "reachy_mini_motor_loop_target_hertz": ("gauge", "requested motor control loop rate (loop_rate_hz)"),
    "reachy_mini_audio_level_dbfs": ("gauge", "microphone RMS level"),
    "reachy_mini_host_cpu_usage_ratio": ("gauge", "host CPU busy, 0..1"),
    "reachy_mini_host_memory_usage_ratio": ("gauge", "host memory in use, 0..1"),
    "reachy_mini_host_disk_usage_ratio": ("gauge", "data disk in use, 0..1"),
    "reachy_mini_host_disk_free_bytes": ("gauge", "data disk free space"),
    "reachy_mini_host_temperature_celsius": ("gauge", "host temperature sensors"),
    "reachy_mini_node_resident_memory_bytes": ("gauge", "resident memory of each node process"),
    "reachy_mini_node_cpu_usage_ratio": ("gauge", "CPU of each node process, fraction of one core"),
    "reachy_mini_node_open_fds": ("gauge", "open file descriptors of each node process"),
    "reachy_mini_node_restarts": ("counter", "restarts of each node seen by the health node"),
    "reachy_mini_node_hang_kills": ("counter", "hung node kills"),
    "reachy_mini_incidents": ("gauge", "incidents in the incident database, by level"),
    "reachy_mini_web_sse_clients": ("gauge", "live page connections"),
    "reachy_mini_web_sse_dropped": ("counter", "updates dropped for slow page clients"),
    "reachy_mini_http_requests": ("counter", "HTTP requests by route and status (unhandled errors: code 500)"),
    "reachy_mini_http_request_duration_seconds": ("histogram", "HTTP request latency"),
    "reachy_mini_build_info": ("gauge", "1, with the versions as labels"),
}


def exposed_names() -> set[str]:
    """The sample family names as Prometheus sees them (counters end in _total)."""
    out = set()
    for name, (kind, _) in METRICS.items():
        out |= {f"{name}_total"} if kind == "counter" else \
            {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else {name}
    return out


class HttpMetrics:
    """Requests and latency, recorded by the middleware."""

    def __init__(self, registry: CollectorRegistry, robot: str) -> None:
        self.robot = robot
        self.requests = Counter("reachy_mini_http_requests", METRICS["reachy_mini_http_requests"][1],
                                ["robot", "method", "route", "code"], registry=registry)
        self.latency = Histogram("reachy_mini_http_request_duration_seconds",
                                 METRICS["reachy_mini_http_request_duration_seconds"][1],
                                 ["robot", "method", "route"], buckets=BUCKETS, registry=registry)
        self.total = 0

    def observe(self, method: str, route: str, code: int, seconds: float) -> None:
        self.total += 1
        self.requests.labels(self.robot, method, route, str(code)).inc()
        self.latency.labels(self.robot, method, route).observe(seconds)


class StateCollector(Collector):
    """The robot's figures, read at scrape time."""

    def __init__(self, store, hub, robot: str, incident_counts: Callable[[], dict[str, int]]) -> None:
        self.store, self.hub, self.robot, self.incident_counts = store, hub, robot, incident_counts
        self._incidents: tuple[float, dict] = (0.0, {})

    def _fam(self, name: str, labels: tuple[str, ...] = ()):
        kind, help_ = METRICS[name]
        cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        return cls(name, help_, labels=["robot", *labels])

    def _incident_counts(self) -> dict:
        t, counts = self._incidents
        if time.monotonic() - t > 5.0:     # a COUNT over the table at most every 5 s, whatever the scrape rate
            try:
                counts = self.incident_counts()
            except Exception:   # noqa: BLE001 - a locked or missing database must not fail the scrape
                pass
            self._incidents = (time.monotonic(), counts)
        return counts

    def collect(self):
        r, store = self.robot, self.store
        s = store.snapshot()
        age = store.health_age()
        up = age is not None and age <= store.stale_after_s
        out = {n: self._fam(n) for n in ("reachy_mini_up", "reachy_mini_health_level", "reachy_mini_health_age_seconds",
                                         "reachy_mini_motor_loop_rate_hertz", "reachy_mini_motor_loop_target_hertz",
                                         "reachy_mini_audio_level_dbfs", "reachy_mini_host_cpu_usage_ratio",
                                         "reachy_mini_host_memory_usage_ratio", "reachy_mini_host_disk_usage_ratio",
                                         "reachy_mini_host_disk_free_bytes", "reachy_mini_web_sse_clients",
                                         "reachy_mini_web_sse_dropped")}
        comp = self._fam("reachy_mini_component_level", ("component",))
        per_motor = {n: self._fam(n, ("motor",)) for n in (
            "reachy_mini_motor_level", "reachy_mini_motor_temperature_celsius", "reachy_mini_motor_voltage_volts",
            "reachy_mini_motor_current_amperes")}
        per_node = {n: self._fam(n, ("node",)) for n in (
            "reachy_mini_node_resident_memory_bytes", "reachy_mini_node_cpu_usage_ratio", "reachy_mini_node_open_fds",
            "reachy_mini_node_restarts", "reachy_mini_node_hang_kills")}
        temps = self._fam("reachy_mini_host_temperature_celsius", ("sensor",))
        incidents = self._fam("reachy_mini_incidents", ("level",))

        out["reachy_mini_up"].add_metric([r], int(up))
        out["reachy_mini_health_level"].add_metric([r], int(s["top"]["level"]) if s["top"] else int(Level.STALE))
        if age is not None:
            out["reachy_mini_health_age_seconds"].add_metric([r], round(age, 3))
        for st in ([s["top"]] if s["top"] else []) + s["tree"]:
            comp.add_metric([r, st["name"]], st["level"])
        for m in store.motors():
            per_motor["reachy_mini_motor_level"].add_metric([r, m["name"]], m["level"])
            for key, name, scale in (("temperature_c", "reachy_mini_motor_temperature_celsius", 1.0),
                                     ("voltage_v", "reachy_mini_motor_voltage_volts", 1.0),
                                     ("current_ma", "reachy_mini_motor_current_amperes", 0.001)):
                if m[key] is not None:
                    per_motor[name].add_metric([r, m["name"]], m[key] * scale)
        if up:   # figures of a silent monitor are not current: leave them out rather than repeat them
            bus = group_values(s["tree"], "Motors", "bus")
            for key, name in (("achieved rate (Hz)", "reachy_mini_motor_loop_rate_hertz"),
                              ("target rate (Hz)", "reachy_mini_motor_loop_target_hertz")):
                if (v := number(bus.get(key))) is not None:
                    out[name].add_metric([r], v)
            host = group_values(s["tree"], "Host", "system")
            for key, (name, scale) in HOST_KEYS.items():
                if (v := number(host.get(key))) is not None:
                    out[name].add_metric([r], v * scale)
            for key, raw in host.items():
                if key.startswith("temperature ") and key.endswith(" (C)") and (v := number(raw)) is not None:
                    temps.add_metric([r, key[len("temperature "):-len(" (C)")]], v)
            for node, st in group_items(s["tree"], "Nodes"):
                for key, (name, scale) in NODE_KEYS.items():
                    if (v := number(st["values"].get(key))) is not None:
                        per_node[name].add_metric([r, node], v * scale)
        if s["audio_level_dbfs"] is not None:
            out["reachy_mini_audio_level_dbfs"].add_metric([r], s["audio_level_dbfs"])
        out["reachy_mini_web_sse_clients"].add_metric([r], len(self.hub.clients))
        out["reachy_mini_web_sse_dropped"].add_metric([r], self.hub.dropped)
        counts = self._incident_counts()
        for lv in Level:
            incidents.add_metric([r, lv.name], counts.get(lv.name, 0))
        yield from out.values()
        yield comp
        yield from per_motor.values()
        yield temps
        yield from per_node.values()
        yield incidents


class Metrics:
    """The app's registry: HTTP metrics, the state collector, build info."""

    def __init__(self, store, hub, robot: str, incident_counts: Callable[[], dict[str, int]] = dict) -> None:
        import os

        self.registry = CollectorRegistry(auto_describe=True)
        self.http = HttpMetrics(self.registry, robot)
        self.registry.register(StateCollector(store, hub, robot, incident_counts))
        build = GaugeMetricFamily("reachy_mini_build_info", METRICS["reachy_mini_build_info"][1],
                                  labels=["robot", "version", "python", "ros_distro"])
        build.add_metric([robot, __version__, platform.python_version(),
                          os.environ.get("ROS_DISTRO", "kilted")], 1)

        class _Build(Collector):
            def collect(self):
                yield build
        self.registry.register(_Build())

    def observe(self, method: str, route: str, code: int, seconds: float) -> None:
        self.http.observe(method, route, code, seconds)

    @property
    def requests(self) -> int:
        return self.http.total

    def render(self) -> bytes:
        return generate_latest(self.registry)
