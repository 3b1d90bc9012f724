"""The shipped config/monitoring/ files, checked by the real tools (Debian's
prometheus and prometheus-alertmanager: promtool, amtool): Prometheus
config, alert rules and their unit tests (every alert fires for the right
robot and stays silent when it should), Alertmanager config, and the Grafana
dashboard (every expression is valid PromQL and uses only metrics that the
web bridge exposes). The live servers: test/system/test_fleet_monitoring.py."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from tools.harness import prom

REPO = prom.REPO
MON = prom.MONITORING
DASHBOARD = os.path.join(MON, "grafana", "reachy_mini_fleet.json")
RULES = os.path.join(MON, "reachy_mini.rules.yml")
RULE_TESTS = os.path.join(MON, "tests", "reachy_mini.rules.test.yml")

# The contract with web_bridge's /metrics (docs/operations.md, "Metrics"): the only names
# the rules and the dashboard may use, with their types (histograms also
# give _bucket, _sum and _count series). `up` is Prometheus' own.
METRICS = {
    "reachy_mini_up": "gauge",
    "reachy_mini_health_level": "gauge",
    "reachy_mini_health_age_seconds": "gauge",
    "reachy_mini_component_level": "gauge",
    "reachy_mini_motor_temperature_celsius": "gauge",
    "reachy_mini_motor_voltage_volts": "gauge",
    "reachy_mini_motor_current_amperes": "gauge",
    "reachy_mini_motor_level": "gauge",
    "reachy_mini_motor_loop_rate_hertz": "gauge",
    "reachy_mini_motor_loop_target_hertz": "gauge",
    "reachy_mini_audio_level_dbfs": "gauge",
    "reachy_mini_host_cpu_usage_ratio": "gauge",
    "reachy_mini_host_memory_usage_ratio": "gauge",
    "reachy_mini_host_disk_usage_ratio": "gauge",
    "reachy_mini_host_disk_free_bytes": "gauge",
    "reachy_mini_host_temperature_celsius": "gauge",
    "reachy_mini_node_resident_memory_bytes": "gauge",
    "reachy_mini_node_cpu_usage_ratio": "gauge",
    "reachy_mini_node_open_fds": "gauge",
    "reachy_mini_node_restarts_total": "counter",
    "reachy_mini_node_hang_kills_total": "counter",
    "reachy_mini_incidents": "gauge",
    "reachy_mini_web_sse_clients": "gauge",
    "reachy_mini_web_sse_dropped_total": "counter",
    "reachy_mini_http_requests_total": "counter",
    "reachy_mini_http_request_duration_seconds": "histogram",
    "reachy_mini_build_info": "gauge",
}
ALLOWED = {"up"} | {n for n, k in METRICS.items() if k != "histogram"} | {
    n + s for n, k in METRICS.items() if k == "histogram" for s in ("_bucket", "_sum", "_count")}

# Grafana's variables, as the live test substitutes them too.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h", "${robot}": "robot1",
                "$robot": "robot1"}

_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
             "group_right", "inf", "nan", "atan2"}


def _tool(name: str) -> str:
    path = shutil.which(name) if name != "alertmanager" else prom.alertmanager_binary()
    if not path:
        pytest.skip(f"{name} is not installed (Debian packages prometheus, prometheus-alertmanager: "
                    f"tools/sysdeps.sh test)")
    return path


def _run(argv: list[str], cwd: str | None = None) -> str:
    out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"{' '.join(argv)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (not functions, keywords,
    label names or strings)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", s):
        if s[m.end():].lstrip().startswith("(") or m.group(0).lower() in _KEYWORDS:
            continue
        names.add(m.group(0))
    return names


def grafana_expr(expr: str) -> str:
    for k, v in GRAFANA_VARS.items():
        expr = expr.replace(k, v)
    assert "$" not in expr, f"an unknown Grafana variable in {expr!r}"
    return expr


def dashboard_targets(dash: dict) -> list[tuple[str, dict]]:
    """(panel title, target) of every query panel, rows' nested panels included."""
    out = []

    def walk(panels):
        for p in panels:
            if p["type"] == "row":
                walk(p.get("panels", []))
                continue
            assert p.get("targets"), f"panel {p.get('title')!r} has no targets"
            for t in p["targets"]:
                out.append((p["title"], t))
    walk(dash["panels"])
    return out


def dashboard_exprs() -> list[str]:
    with open(DASHBOARD) as f:
        return [grafana_expr(t["expr"]) for _, t in dashboard_targets(json.load(f))]


def _rules() -> list[dict]:
    with open(RULES) as f:
        return [r for g in yaml.safe_load(f)["groups"] for r in g["rules"]]


# --- the name extractor itself -------------------------------------------------

def test_metric_names_extractor():
    assert metric_names('histogram_quantile(0.99, sum by (job, robot, le) (rate(reachy_mini_http_request_'
                        'duration_seconds_bucket{route="/api/health", x=~"a|b"}[5m]))) > 0.25') == {
        "reachy_mini_http_request_duration_seconds_bucket"}
    assert metric_names("a_b < 0.8 * c_d and on (robot) e == 1e9 or max(f) by (le) unless bool g") == {
        "a_b", "c_d", "e", "f", "g"}
    assert metric_names('up{job="reachy_mini"} == 0') == {"up"}


# --- Prometheus ----------------------------------------------------------------

def test_prometheus_config_is_valid(tmp_path):
    promtool = _tool("promtool")
    work = tmp_path / "monitoring"
    shutil.copytree(MON, work)
    shutil.copy(work / "robots.example.yml", work / "robots.yml")   # as config/monitoring/README.md says
    out = _run([promtool, "check", "config", "prometheus.yml"], cwd=str(work))
    assert "SUCCESS" in out and "WARNING" not in out, out
    with open(os.path.join(MON, "prometheus.yml")) as f:
        text = f.read()
    cfg = yaml.safe_load(text)
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "reachy_mini")
    assert job["honor_labels"] is True and job["metrics_path"] == "/metrics"
    assert job["file_sd_configs"][0]["files"] == ["robots.yml"]
    assert cfg["rule_files"] == ["reachy_mini.rules.yml"]
    assert cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    # the LAN set-up is written out, commented: token file and TLS
    for line in ("# authorization:", "#   type: Bearer", "#   credentials_file: /etc/prometheus/reachy_mini.token",
                 "# scheme: https", "# tls_config:"):
        assert line in text, line
    with open(os.path.join(MON, "robots.example.yml")) as f:
        example = yaml.safe_load(f)
    assert example and all(len(e["targets"]) == 1 and e["labels"]["robot"] for e in example)


def test_harness_config_is_valid(tmp_path):
    """What tools/harness/prom.py gives the live test is a valid config too."""
    promtool = _tool("promtool")
    mon = prom.MonitoringStack(str(tmp_path), {"robot1": 8001, "robot2": 8002})
    rules = mon._write("rules.yml", mon.rules["reachy_mini.rules.yml"])
    tfile = mon._write("robots.yml", prom.targets(mon.robots))
    cfg = mon._write("prometheus.yml", prom.prometheus_config(mon._prom_cfg, tfile, [rules], "127.0.0.1:9093"))
    out = _run([promtool, "check", "config", cfg])
    assert "SUCCESS" in out and "WARNING" not in out, out
    amtool = _tool("amtool")
    am = mon._write("am.yml", prom.alertmanager_config(mon._am_cfg, "http://127.0.0.1:1/alerts"))
    _run([amtool, "check-config", am])


def test_shortened_rules():
    assert prom.parse_duration("1h30m") == 5400 and prom.parse_duration("30s") == 30
    with pytest.raises(ValueError):
        prom.parse_duration("5 minutes")
    with open(RULES) as f:
        shipped = yaml.safe_load(f)
    short = prom.shortened_rules(shipped, 0.1, 1.0, {"ReachyMiniMotorOverheating": 2.5})
    fors = {r["alert"]: r.get("for") for g in short["groups"] for r in g["rules"]}
    assert fors["ReachyMiniMotorOverheating"] == "2500ms"
    assert fors["ReachyMiniError"] == "6s" and fors["ReachyMiniHostDiskHigh"] == "90s"
    assert fors["ReachyMiniNodeRestarting"] is None   # none shipped, none added
    with pytest.raises(ValueError):
        prom.shortened_rules(shipped, override={"NoSuchAlert": 1})


def test_rules_are_valid():
    _run([_tool("promtool"), "check", "rules", RULES])


def test_rules_unit_tests_pass():
    out = _run([_tool("promtool"), "test", "rules", os.path.basename(RULE_TESTS)], cwd=os.path.dirname(RULE_TESTS))
    assert "SUCCESS" in out, out


def test_every_alert_is_unit_tested_both_ways():
    """Each alert has a case where it fires (with the robot's label) and one
    where it is expected silent."""
    with open(RULE_TESTS) as f:
        cases = [c for t in yaml.safe_load(f)["tests"] for c in t["alert_rule_test"]]
    for rule in _rules():
        name = rule["alert"]
        mine = [c for c in cases if c["alertname"] == name]
        firing = [a for c in mine for a in c.get("exp_alerts") or []]
        assert firing, f"{name}: no case where it fires"
        assert all(a["exp_labels"].get("robot") for a in firing), f"{name}: a firing case without robot"
        assert any(not c.get("exp_alerts") for c in mine), f"{name}: no case where it stays silent"


def test_rules_name_the_robot():
    names = set()
    for rule in _rules():
        names.add(rule["alert"])
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        for key in ("summary", "description"):
            assert "{{ $labels.robot }}" in rule["annotations"][key], (rule["alert"], key)
        assert "without" not in rule["expr"], rule["alert"]
        for agg in re.findall(r"\bby\s*\(([^)]*)\)", rule["expr"]):   # aggregations keep the robot
            assert "robot" in [x.strip() for x in agg.split(",")], (rule["alert"], agg)
    assert names == {"ReachyMiniDown", "ReachyMiniHealthMonitorSilent", "ReachyMiniError",
                     "ReachyMiniMotorOverheating", "ReachyMiniMotorVoltage", "ReachyMiniMotorLoopSlow",
                     "ReachyMiniNodeRestarting", "ReachyMiniHostMemoryHigh", "ReachyMiniHostDiskHigh",
                     "ReachyMiniHealthEndpointSlow"}


def test_rules_use_only_exposed_metrics():
    for rule in _rules():
        used = metric_names(rule["expr"])
        assert used and used <= ALLOWED, (rule["alert"], used - ALLOWED)


# --- Alertmanager ----------------------------------------------------------------

def test_alertmanager_config_is_valid():
    amtool = _tool("amtool")
    out = _run([amtool, "check-config", os.path.join(MON, "alertmanager.yml")])
    assert "SUCCESS" in out, out
    with open(os.path.join(MON, "alertmanager.yml")) as f:
        cfg = yaml.safe_load(f)
    assert set(cfg["route"]["group_by"]) == {"robot", "alertname"}
    hooks = [h for r in cfg["receivers"] for h in r.get("webhook_configs", [])]
    assert hooks and all(h["send_resolved"] for h in hooks)
    down = [r for r in cfg["inhibit_rules"] if r["source_matchers"] == ['alertname="ReachyMiniDown"']]
    assert down and down[0]["equal"] == ["robot"]


def test_alertmanager_routes_by_robot():
    """amtool's own routing: every robot's alerts go to the webhook, grouped
    by robot and alert name."""
    amtool = _tool("amtool")
    out = _run([amtool, "config", "routes", "test", "--config.file", os.path.join(MON, "alertmanager.yml"),
                "--verify.receivers=reachy_mini_webhook", "robot=robot2", "alertname=ReachyMiniMotorOverheating",
                "severity=critical"])
    assert "reachy_mini_webhook" in out, out


# --- Grafana -----------------------------------------------------------------------

def test_dashboard_structure():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    assert 36 <= dash["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    robot = variables["robot"]
    assert robot["definition"] == "label_values(reachy_mini_up, robot)"
    assert robot["multi"] and robot["includeAll"]
    targets = dashboard_targets(dash)
    assert len(targets) >= 20
    for title, t in targets:
        assert t["datasource"]["uid"] == "${datasource}", title
        assert t["expr"].strip(), title
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    # the fleet overview: a table whose rows are robots
    fleet = next(p for p in dash["panels"] if p["type"] == "table" and "Fleet" in p["title"])
    assert all(re.match(r"^(max|sum) by \(robot\)", t["expr"]) for t in fleet["targets"])
    # the per-robot part: panels filtered by the variable, under a row repeated per robot
    assert any(p["type"] == "row" and p.get("repeat") == "robot" for p in dash["panels"])
    per_robot = [t for title, t in targets if "robot=~\"$robot\"" in t["expr"]]
    assert len(per_robot) == len(targets), [t["expr"] for _, t in targets if t not in per_robot]


def test_dashboard_exprs_are_valid_promql(tmp_path):
    """promtool parses each expression, as the body of a recording rule."""
    exprs = dashboard_exprs()
    path = tmp_path / "dashboard_exprs.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(exprs)]}]}))
    out = _run([_tool("promtool"), "check", "rules", str(path)])
    assert f"SUCCESS: {len(exprs)} rules found" in out, out


def test_dashboard_uses_only_exposed_metrics():
    for expr in dashboard_exprs():
        used = metric_names(expr)
        assert used and used <= ALLOWED, (expr, used - ALLOWED)


def test_contract_matches_the_docs_metric_list():
    """Every name of this contract is in the docs' metric table (on whichever
    page of README.md or docs/ holds it)."""
    from docs_text import tables_with_header

    found = tables_with_header("| metric | type | labels besides `robot` | |")
    assert len(found) == 1, f"one metric table expected, found {len(found)}"
    documented = {row[0].strip("`"): row[1] for row in found[0][1]}
    wrong = {n: (k, documented.get(n)) for n, k in METRICS.items() if documented.get(n) != k}
    assert not wrong, f"contract type vs the docs' table: {wrong}"
