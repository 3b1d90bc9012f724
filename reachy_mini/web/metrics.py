"""/metrics in the Prometheus text format: component levels, motor
figures, loop rate, audio level, page connections and HTTP requests."""
from __future__ import annotations

import threading

from reachy_mini.core.levels import DESCRIPTION as LEVELS


class Metrics:
    BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count: dict[tuple[str, str, int], int] = {}
        self.hist: dict[tuple[str, str], list[float]] = {}   # bucket counts + [sum, count]

    def observe(self, method: str, route: str, code: int, seconds: float) -> None:
        with self.lock:
            k = (method, route, code)
            self.count[k] = self.count.get(k, 0) + 1
            h = self.hist.setdefault((method, route), [0.0] * (len(self.BUCKETS) + 2))
            for i, b in enumerate(self.BUCKETS):
                if seconds <= b:
                    h[i] += 1
            h[-2] += seconds
            h[-1] += 1


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(store, hub, metrics: Metrics) -> str:
    """The exposition text of one scrape."""
    s = store.snapshot()
    L: list[str] = []

    def fam(name, kind, help_):
        L.append(f"# HELP {name} {help_}")
        L.append(f"# TYPE {name} {kind}")
    fam("reachy_mini_up", "gauge", "1 while the health node publishes (silent for at most health_stale_s)")
    age = store.health_age()
    L.append(f"reachy_mini_up {int(age is not None and age <= store.stale_after_s)}")
    fam("reachy_mini_component_level", "gauge", f"diagnostic level: {LEVELS}")
    for st in ([s["top"]] if s["top"] else []) + s["tree"]:
        L.append(f'reachy_mini_component_level{{component="{_esc(st["name"])}"}} {st["level"]}')
    ms = store.motors()
    for key, name, help_ in (("temperature_c", "reachy_mini_motor_temperature_celsius", "motor temperature"),
                             ("voltage_v", "reachy_mini_motor_voltage_volts", "motor input voltage"),
                             ("current_ma", "reachy_mini_motor_current_milliamperes", "motor current")):
        fam(name, "gauge", help_)
        for m in ms:
            if m[key] is not None:
                L.append(f'{name}{{motor="{_esc(m["name"])}"}} {m[key]}')
    fam("reachy_mini_motor_loop_rate_hertz", "gauge", "achieved motor control loop rate")
    if s["sample"] and s["sample"]["loop_rate_hz"] is not None:
        L.append(f"reachy_mini_motor_loop_rate_hertz {s['sample']['loop_rate_hz']}")
    fam("reachy_mini_audio_level_dbfs", "gauge", "microphone RMS level")
    if s["audio_level_dbfs"] is not None:
        L.append(f"reachy_mini_audio_level_dbfs {s['audio_level_dbfs']}")
    fam("reachy_mini_web_sse_clients", "gauge", "live page connections")
    L.append(f"reachy_mini_web_sse_clients {len(hub.clients)}")
    fam("reachy_mini_web_sse_dropped_total", "counter", "updates dropped for slow page clients")
    L.append(f"reachy_mini_web_sse_dropped_total {hub.dropped}")
    with metrics.lock:
        fam("reachy_mini_http_requests_total", "counter", "HTTP requests")
        for (m, r, c), n in sorted(metrics.count.items()):
            L.append(f'reachy_mini_http_requests_total{{method="{m}",route="{_esc(r)}",code="{c}"}} {n}')
        fam("reachy_mini_http_request_duration_seconds", "histogram", "HTTP request latency")
        for (m, r), h in sorted(metrics.hist.items()):
            lab = f'method="{m}",route="{_esc(r)}"'
            for b, n in zip(Metrics.BUCKETS, h):
                L.append(f'reachy_mini_http_request_duration_seconds_bucket{{{lab},le="{b}"}} {int(n)}')
            L.append(f'reachy_mini_http_request_duration_seconds_bucket{{{lab},le="+Inf"}} {int(h[-1])}')
            L.append(f"reachy_mini_http_request_duration_seconds_sum{{{lab}}} {h[-2]:.6f}")
            L.append(f"reachy_mini_http_request_duration_seconds_count{{{lab}}} {int(h[-1])}")
    return "\n".join(L) + "\n"
