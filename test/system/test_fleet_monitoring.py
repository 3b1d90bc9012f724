"""The shipped config/monitoring/ against the real servers: three simulated
robots (namespaces robot1..3, one ROS domain, one machine), a real
Prometheus scraping them every second with the shipped rules (`for:`
shortened), a real Alertmanager with the shipped routing posting to a local
webhook receiver (tools/harness/prom.py).

An overheat on robot2 delivers ReachyMiniMotorOverheating with
robot="robot2" within 30 s, and nothing at all arrives for robot1 or robot3;
clearing it delivers the resolution. Every expression of the Grafana
dashboard returns data from the live Prometheus."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from conftest import wait_for
from reachy_mini.common.paths import config_path
from tools.harness import prom

ROBOTS = ("robot1", "robot2", "robot3")
DELIVERY_LIMIT_S = 30.0   # the requirement for the overheat alert

pytestmark = pytest.mark.skipif(bool(prom.missing_binaries()),
                                reason=f"not installed: {prom.missing_binaries()} (Debian packages prometheus, "
                                       f"prometheus-alertmanager: tools/sysdeps.sh test)")


def _get(port: int, path: str):
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=3.0)
    except httpx.HTTPError:
        return None


def _inject(env, robot: str, *args) -> None:
    out = subprocess.run([sys.executable, "-m", "reachy_mini.sim.cli", "inject", *args, "--namespace", robot],
                         env=env, capture_output=True, text=True, timeout=15)
    assert out.returncode == 0, out.stderr


def _supports(option: str) -> bool:
    out = subprocess.run([sys.executable, "-m", "reachy_mini.ops.supervisor", "--help"], capture_output=True,
                         text=True, timeout=30)
    return option in out.stdout


@pytest.fixture
def fleet(tmp_path, ros_env):
    """Three robots under their own supervisors (motor, health and web nodes on
    the simulated bus), each with its own web port; name -> port."""
    env = dict(ros_env, XDG_RUNTIME_DIR=str(tmp_path / "run"), XDG_DATA_HOME=str(tmp_path / "data"))
    os.makedirs(env["XDG_RUNTIME_DIR"])
    params = config_path("reachy_mini.yaml")   # host CPU alone is never ERROR: the shipped rules
    name_opt = _supports("--robot-name")
    procs = {}
    try:
        for name in ROBOTS:
            port = prom.free_port()
            argv = [sys.executable, "-m", "reachy_mini.ops.supervisor", "--use-sim", "--namespace", name,
                    "--web-port", str(port), "--params-file", params,
                    "--only", "motor_node", "health_node", "web_bridge", "--log-dir", str(tmp_path / f"logs_{name}")]
            if name_opt:
                argv += ["--robot-name", name]
            procs[name] = (subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            start_new_session=True), port)
        for name, (_, port) in procs.items():
            wait_for(lambda: (r := _get(port, "/api/health")) is not None and r.status_code == 200, timeout=90,
                     period=0.5)
        yield env, {n: p for n, (_, p) in procs.items()}, tmp_path
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


class HealthPoller:
    """Asks every robot's /api/health twice a second, as a fleet's load
    balancer or uptime checker would (and so the latency histogram has data)."""

    def __init__(self, ports) -> None:
        self.ports, self.stop = list(ports), threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        with httpx.Client(timeout=3.0) as c:
            while not self.stop.wait(0.5):
                for p in self.ports:
                    try:
                        c.get(f"http://127.0.0.1:{p}/api/health")
                    except httpx.HTTPError:
                        pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


def _robot_alerts(mon, robot: str) -> list:
    return [a for _, a in mon.receiver.alerts() if a["labels"].get("robot") == robot]


def test_fleet_alerts_and_dashboard(fleet):
    env, ports, tmp = fleet
    poller = HealthPoller(ports.values())
    # `for:` a quarter of the shipped durations (at least 2 s); the overheat's
    # 30 s would by itself eat the 30 s budget: 3 s.
    mon = prom.MonitoringStack(str(tmp / "monitoring"), ports, for_scale=0.25, for_floor_s=2.0,
                               for_override={"ReachyMiniMotorOverheating": 3.0})
    try:
        mon.start()
        # every robot scraped, under its own name, healthy
        up = mon.wait_query('up{job="reachy_mini"} == 1', n=3, timeout=30)
        assert {r["metric"]["robot"] for r in up} == set(ROBOTS), up
        healthy = mon.wait_query("reachy_mini_health_level <= 1 and reachy_mini_up == 1", n=3, timeout=60)
        assert {r["metric"]["robot"] for r in healthy} == set(ROBOTS), healthy
        temps = mon.wait_query('reachy_mini_motor_temperature_celsius{motor="stewart_2"}', n=3, timeout=30)
        assert {r["metric"]["robot"] for r in temps} == set(ROBOTS), temps
        assert mon.receiver.alerts() == [], mon.describe()

        # --- the overheat on robot2 reaches the receiver, for robot2 ---
        t0 = time.monotonic()
        _inject(env, "robot2", "overheat", "--id", "12")

        def overheat(status):
            return lambda alerts: [(t, a) for t, a in alerts if a["labels"].get("alertname") ==
                                   "ReachyMiniMotorOverheating" and a["labels"].get("robot") == "robot2"
                                   and a["status"] == status]
        got = mon.receiver.wait(overheat("firing"), timeout=DELIVERY_LIMIT_S + 15)
        assert got, f"no overheating alert for robot2 within {DELIVERY_LIMIT_S + 15} s\n{mon.describe()}"
        t_alert, alert = got[0]
        delivery = t_alert - t0
        print(f"\noverheat alert delivery: {delivery:.1f} s from injection to the webhook "
              f"(scrape and evaluation 1 s, for: 3 s, group_wait 1 s)", flush=True)
        assert delivery <= DELIVERY_LIMIT_S, f"delivered after {delivery:.1f} s\n{mon.describe()}"
        assert alert["labels"]["motor"] == "stewart_2" and alert["labels"]["severity"] == "critical", alert
        assert alert["annotations"]["summary"].startswith("robot2: motor stewart_2 at "), alert

        # --- every expression of the dashboard has data (robot1's view) ---
        with open(os.path.join(prom.MONITORING, "grafana", "reachy_mini_fleet.json")) as f:
            dash = json.load(f)
        from test_monitoring_config import dashboard_targets, grafana_expr
        def has_data(expr: str) -> bool:   # a series with a number (a NaN-only answer draws nothing)
            return any(r["value"][1] not in ("NaN", "+Inf", "-Inf") for r in mon.query(expr))
        exprs = [(title, grafana_expr(t["expr"])) for title, t in dashboard_targets(dash)]
        empty = [(title, e) for title, e in exprs if not has_data(e)]
        if empty:   # a rate() needing one more scrape, a page's first request: once more, later
            time.sleep(3.0)
            empty = [(title, e) for title, e in empty if not has_data(e)]
        assert not empty, "dashboard expressions without data:\n" + "\n".join(f"  {t}: {e}" for t, e in empty)
        print(f"dashboard: all {len(exprs)} expressions return data for robot1", flush=True)

        # --- the cause goes: the alert resolves ---
        _inject(env, "robot2", "clear", "--id", "12")
        t1 = time.monotonic()
        got = mon.receiver.wait(overheat("resolved"), timeout=60)
        assert got, f"the overheating alert was not resolved within 60 s\n{mon.describe()}"
        print(f"overheat resolution delivery: {got[0][0] - t1:.1f} s after clearing", flush=True)
        wait_for(lambda: (r := _get(ports["robot2"], "/api/health")) is not None and r.status_code == 200,
                 timeout=30, period=0.5)

        # --- nothing at all for the other robots, neither sent nor firing ---
        for robot in ("robot1", "robot3"):
            assert _robot_alerts(mon, robot) == [], f"{robot} got alerts\n{mon.describe()}"
            firing = [a for a in mon.alerts() if a["labels"].get("robot") == robot]
            assert firing == [], f"{robot} has alerts in Prometheus: {firing}"
        other = sorted({a["labels"]["alertname"] for _, a in mon.receiver.alerts()} - {"ReachyMiniMotorOverheating"})
        print(f"alerts received for robot2 besides the overheat: {other}", flush=True)
    finally:
        poller.close()
        mon.stop()   # before the robots: their shutdown is not an outage


def test_alertmanager_groups_by_robot_and_inhibits(tmp_path):
    """The shipped routing in the real Alertmanager: one notification per
    robot and alert name, and a robot that is down mutes its other alerts
    (not another robot's)."""
    with prom.MonitoringStack(str(tmp_path / "monitoring"), {}) as mon:
        def alert(name, robot, **labels):
            return {"labels": {"alertname": name, "robot": robot, "severity": "critical", **labels},
                    "annotations": {"summary": f"{robot}: {name}"}}
        mon.post_alerts([alert("ReachyMiniDown", "robot1"), alert("ReachyMiniError", "robot1"),
                         alert("ReachyMiniMotorOverheating", "robot1", motor="stewart_2"),
                         alert("ReachyMiniError", "robot2"),
                         alert("ReachyMiniMotorOverheating", "robot2", motor="stewart_1"),
                         alert("ReachyMiniMotorOverheating", "robot2", motor="stewart_2")])
        want = {("robot1", "ReachyMiniDown"), ("robot2", "ReachyMiniError"), ("robot2", "ReachyMiniMotorOverheating")}
        got = mon.receiver.wait(lambda a: len({(x["labels"]["robot"], x["labels"]["alertname"]) for _, x in a})
                                >= len(want) and a, timeout=20)
        assert got, mon.describe()
        time.sleep(3.0)   # a few more group intervals: anything muted would have come by now
        with mon.receiver.cond:
            posts = [doc for _, doc in mon.receiver.posts]
        groups = {(p["groupLabels"]["robot"], p["groupLabels"]["alertname"]) for p in posts}
        assert groups == want, (groups, mon.describe())
        over2 = [p for p in posts if p["groupLabels"] == {"robot": "robot2", "alertname": "ReachyMiniMotorOverheating"}]
        assert {a["labels"]["motor"] for a in over2[0]["alerts"]} == {"stewart_1", "stewart_2"}   # one message
        assert all(p["status"] == "firing" and p["receiver"] == "reachy_mini_webhook" for p in posts)
