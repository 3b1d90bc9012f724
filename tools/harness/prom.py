"""A real Prometheus, a real Alertmanager and a local webhook receiver, for
tests of the shipped config/monitoring/ files against the real servers
(Debian packages prometheus and prometheus-alertmanager, installed by
tools/sysdeps.sh test).

The configurations are derived from the shipped ones, changing only what a
test must change: 1 s scrape and evaluation intervals, a file_sd target list
written for the test's robots, the alert rules with shorter `for:`
durations, loopback ports, Alertmanager's webhook pointed at the local
receiver with short group timers. Everything else (jobs, honor_labels,
rule expressions, routes, inhibitions) is the shipped text.

    with MonitoringStack(tmp, {"robot1": 8001, "robot2": 8002}) as mon:
        mon.wait_query('up{job="reachy_mini"} == 1', n=2)
        ...
        mon.receiver.wait(lambda posts: ..., timeout=30)

On a failure, `mon.describe()` gives the servers' log tails and what the
receiver got.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
MONITORING = os.path.join(REPO, "config", "monitoring")
PROMETHEUS = "prometheus"
ALERTMANAGER = "prometheus-alertmanager"   # Debian's name; upstream's is "alertmanager"


def alertmanager_binary() -> str | None:
    return shutil.which(ALERTMANAGER) or shutil.which("alertmanager")


def missing_binaries() -> list[str]:
    """The server and tool binaries that are not installed (empty: all there)."""
    out = [b for b in (PROMETHEUS, "promtool", "amtool") if not shutil.which(b)]
    if not alertmanager_binary():
        out.append(ALERTMANAGER)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- durations and config rewriting ------------------------------------------

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_DUR = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


def parse_duration(text: str) -> float:
    """A Prometheus duration ("1m", "30s", "1h30m") in seconds."""
    text = str(text).strip()
    parts = _DUR.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def format_duration(seconds: float) -> str:
    ms = max(0, int(round(seconds * 1000)))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def shortened_rules(rules: dict, scale: float = 0.1, floor_s: float = 1.0,
                    override: dict[str, float] | None = None) -> dict:
    """The rule groups with every alert's `for:` multiplied by `scale` (at
    least `floor_s`), or set from `override` (alert name -> seconds)."""
    rules = json.loads(json.dumps(rules))
    override = dict(override or {})
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            name = rule["alert"]
            if name in override:
                rule["for"] = format_duration(override.pop(name))
            elif "for" in rule:
                rule["for"] = format_duration(max(floor_s, parse_duration(rule["for"]) * scale))
    if override:
        raise ValueError(f"no such alert in the rules: {sorted(override)}")
    return rules


def prometheus_config(shipped: dict, targets_file: str, rule_files: list[str], alertmanager: str,
                      interval: str = "1s") -> dict:
    """The shipped prometheus.yml with test intervals, target list, rules and
    Alertmanager address."""
    cfg = json.loads(json.dumps(shipped))
    cfg["global"].update({"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval})
    cfg["rule_files"] = list(rule_files)
    cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    jobs = [j for j in cfg["scrape_configs"] if j["job_name"] == "reachy_mini"]
    assert jobs, "the shipped prometheus.yml has no reachy_mini job"
    for job in jobs:
        for sd in job["file_sd_configs"]:
            sd["files"] = [targets_file]
            sd["refresh_interval"] = "1s"
    return cfg


def targets(robots: dict[str, int], host: str = "127.0.0.1") -> list[dict]:
    """A file_sd target list like robots.example.yml: one entry per robot."""
    return [{"targets": [f"{host}:{port}"], "labels": {"robot": name}} for name, port in robots.items()]


def alertmanager_config(shipped: dict, receiver_url: str, group_wait: str = "1s",
                        group_interval: str = "1s", repeat_interval: str = "1h") -> dict:
    """The shipped alertmanager.yml with short group timers and every webhook
    pointed at `receiver_url`."""
    cfg = json.loads(json.dumps(shipped))
    cfg["route"].update({"group_wait": group_wait, "group_interval": group_interval,
                         "repeat_interval": repeat_interval})
    n = 0
    for rcv in cfg.get("receivers", []):
        for hook in rcv.get("webhook_configs", []):
            hook["url"] = receiver_url
            n += 1
    assert n, "the shipped alertmanager.yml has no webhook receiver"
    return cfg


# --- the webhook receiver ------------------------------------------------------

class WebhookReceiver:
    """An HTTP server on 127.0.0.1 (in a thread) that records the JSON body of
    every POST with its arrival time (time.monotonic())."""

    def __init__(self) -> None:
        self.posts: list[tuple[float, dict]] = []
        self.cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = {"unparsed": body.decode(errors="replace")}
                with outer.cond:
                    outer.posts.append((time.monotonic(), doc))
                    outer.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook", daemon=True)
        self.thread.start()

    def alerts(self) -> list[tuple[float, dict]]:
        """Every alert received: (arrival time, alert with its status, labels,
        annotations, startsAt, endsAt)."""
        with self.cond:
            return [(t, a) for t, doc in self.posts for a in doc.get("alerts", [])]

    def wait(self, pred, timeout: float):
        """Waits until pred(alerts()) is truthy; returns it, or None on timeout."""
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                got = pred([(t, a) for t, doc in self.posts for a in doc.get("alerts", [])])
                if got:
                    return got
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.5))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the servers -----------------------------------------------------------------

class Server:
    """One server process, its output in a log file, stopped with SIGTERM
    then SIGKILL."""

    def __init__(self, name: str, argv: list[str], log_path: str, url: str) -> None:
        self.name, self.url, self.log_path = name, url, log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready within {timeout} s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        self.log.flush()
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError as e:
            return f"(no log: {e})"
        return "\n".join(f"  {self.name}| {ln}" for ln in text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()


class MonitoringStack:
    """Receiver, Alertmanager and Prometheus (started in that order, stopped in
    the reverse one) scraping `robots` (name -> web port on 127.0.0.1)."""

    def __init__(self, workdir: str, robots: dict[str, int], for_scale: float = 0.1, for_floor_s: float = 1.0,
                 for_override: dict[str, float] | None = None, monitoring_dir: str = MONITORING) -> None:
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.robots = dict(robots)
        self.receiver: WebhookReceiver | None = None
        self.alertmanager: Server | None = None
        self.prometheus: Server | None = None

        def load(name: str) -> dict:
            with open(os.path.join(monitoring_dir, name)) as f:
                return yaml.safe_load(f)
        self._prom_cfg = load("prometheus.yml")
        self._am_cfg = load("alertmanager.yml")
        self.rules = {}
        for rf in self._prom_cfg["rule_files"]:
            rules = shortened_rules(load(rf), for_scale, for_floor_s, for_override)
            self.rules[rf] = rules

    def _write(self, name: str, doc) -> str:
        path = os.path.join(self.workdir, name)
        with open(path, "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False)
        return path

    def start(self) -> "MonitoringStack":
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        missing = missing_binaries()
        if missing:
            raise RuntimeError(f"not installed: {', '.join(missing)} (tools/sysdeps.sh test)")
        self.receiver = WebhookReceiver()
        am_port, prom_port = free_port(), free_port()
        am_cfg = self._write("alertmanager.yml", alertmanager_config(self._am_cfg, self.receiver.url))
        self.alertmanager = Server(
            "alertmanager",
            [alertmanager_binary(), f"--config.file={am_cfg}",
             f"--storage.path={os.path.join(self.workdir, 'am_data')}",
             f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=", "--log.level=info"],
            os.path.join(self.workdir, "alertmanager.log"), f"http://127.0.0.1:{am_port}")
        self.alertmanager.wait_ready()
        rule_paths = [self._write(f"test_{os.path.basename(rf)}", r) for rf, r in self.rules.items()]
        tfile = self._write("robots.yml", targets(self.robots))
        cfg = self._write("prometheus.yml", prometheus_config(self._prom_cfg, tfile, rule_paths,
                                                             f"127.0.0.1:{am_port}"))
        self.prometheus = Server(
            "prometheus",
            [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={os.path.join(self.workdir, 'tsdb')}",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=info"],
            os.path.join(self.workdir, "prometheus.log"), f"http://127.0.0.1:{prom_port}")
        self.prometheus.wait_ready()

    def stop(self) -> None:
        for s in (self.prometheus, self.alertmanager):
            if s is not None:
                s.stop()
        if self.receiver is not None:
            self.receiver.close()

    def __enter__(self) -> "MonitoringStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- Prometheus' HTTP API ---
    def api(self, path: str, **params) -> dict:
        url = f"{self.prometheus.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                doc = json.load(r)
        except urllib.error.HTTPError as e:   # a bad query: 400 with the error in the body
            doc = json.loads(e.read() or b"{}") or {"status": "error", "error": str(e)}
        if doc.get("status") != "success":
            raise RuntimeError(f"Prometheus {path} {params}: {doc.get('errorType')}: {doc.get('error')}")
        return doc["data"]

    def query(self, expr: str) -> list[dict]:
        """An instant query's result (a list of {metric, value} for a vector)."""
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] in ("vector", "matrix") else [{"metric": {}, "value":
                                                                                     data["result"]}]

    def wait_query(self, expr: str, n: int = 1, timeout: float = 60.0) -> list[dict]:
        """Waits until `expr` returns at least `n` series; returns them."""
        end = time.monotonic() + timeout
        res: list[dict] = []
        while time.monotonic() < end:
            res = self.query(expr)
            if len(res) >= n:
                return res
            time.sleep(0.5)
        raise AssertionError(f"{expr!r} returned {len(res)} series (< {n}) within {timeout} s: {res}\n"
                             f"{self.describe()}")

    def post_alerts(self, alerts: list[dict]) -> None:
        """Sends alerts straight to Alertmanager (its v2 API), as Prometheus
        does: each {"labels": {...}, "annotations": {...}}."""
        req = urllib.request.Request(f"{self.alertmanager.url}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200, r.status

    def alerts(self) -> list[dict]:
        """Prometheus' own view: pending and firing alerts."""
        return self.api("alerts")["alerts"]

    def describe(self) -> str:
        parts = []
        try:
            parts.append("Prometheus targets: " + json.dumps(
                [(t["labels"].get("robot"), t["health"], t.get("lastError")) for t in self.api("targets")["activeTargets"]]))
            parts.append("Prometheus alerts: " + json.dumps(
                [(a["labels"].get("robot"), a["labels"]["alertname"], a["state"]) for a in self.alerts()]))
        except Exception as e:  # noqa: BLE001 (diagnostics only)
            parts.append(f"(Prometheus API: {e})")
        if self.receiver is not None:
            parts.append("receiver got: " + json.dumps(
                [(round(t, 1), a["status"], a["labels"].get("robot"), a["labels"].get("alertname"))
                 for t, a in self.receiver.alerts()]))
        for s in (self.prometheus, self.alertmanager):
            if s is not None:
                parts.append(s.tail())
        return "\n".join(parts)
