"""Safe on the LAN: a server bound to 0.0.0.0 (clients over 127.0.0.1 only)
asks for the token on every read but /api/health and the page shell,
whatever the client's address; the scrape token opens /metrics only; the
session cookie opens GET reads and never a write; reads are rate-limited
per client; TLS with a self-signed certificate made here; a bad TLS or
token set-up stops web_bridge at start naming the parameter. On 127.0.0.1
the reads stay open."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

import httpx
import pytest

from conftest import wait_for
from test_web import TOKEN, Server, fill

SCRAPE = "prometheus-scrape-token-0123456789"
OPEN = ["/api/health", "/", "/static/app.js", "/static/style.css", "/docs", "/docs/assets/swagger-ui.css",
        "/openapi.json"]
PROTECTED = ["/api/status", "/api/motors", "/api/incidents", "/api/history", "/api/camera.jpg", "/api/system/info",
             "/metrics"]
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def lan_server(tmp_path, **cfg):
    s = Server(tmp_path, host="0.0.0.0", protect_reads=True, scrape_token=SCRAPE, **cfg)
    fill(s.store)
    s.store.stale_after_s = 3600.0
    s.store.set_camera(b"\xff\xd8fakejpeg\xff\xd9")
    return s


@pytest.fixture
def lan(tmp_path):
    s = lan_server(tmp_path)
    yield s
    s.close()


def stream_status(client: httpx.Client, **kw) -> int:
    with client.stream("GET", "/api/stream", timeout=5, **kw) as r:
        return r.status_code


def test_exposed_server_reads_need_the_token(lan):
    c = httpx.Client(base_url=lan.url, timeout=5)
    for path in OPEN:
        assert c.get(path).status_code == 200, path
    for path in PROTECTED:
        r = c.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
        assert "reads need the token" in r.json()["detail"], path
        r = c.get(path, headers={"Authorization": "Bearer not-the-token-at-all"})
        assert r.status_code == 401 and r.json()["detail"] == "wrong bearer token", path
        assert c.get(path, headers=BEARER).status_code == 200, path
    assert stream_status(c) == 401 and stream_status(c, headers=BEARER) == 200
    assert len(c.get("/api/motors", headers=BEARER).json()) == 9
    # writes: the owner's token, as before
    assert c.post("/api/motors/torque", json={"enabled": False}).status_code == 401
    assert c.post("/api/motors/torque", json={"enabled": False}, headers=BEARER).status_code == 200
    # Swagger UI's "Authorize" covers the reads
    ops = c.get("/openapi.json").json()["paths"]
    assert ops["/api/status"]["get"]["security"] == [{"bearer": []}] and "security" not in ops["/api/health"]["get"]


def test_scrape_token_opens_metrics_only(lan):
    c = httpx.Client(base_url=lan.url, timeout=5, headers={"Authorization": f"Bearer {SCRAPE}"})
    r = c.get("/metrics")
    assert r.status_code == 200 and "reachy_mini_motor_temperature_celsius" in r.text
    for path in PROTECTED:
        if path != "/metrics":
            assert c.get(path).status_code == 401, path
    assert stream_status(c) == 401
    assert c.post("/api/session").status_code == 401                 # no cookie for it either
    assert c.post("/api/motors/torque", json={"enabled": True}).status_code == 401 and not lan.calls


def test_session_cookie_opens_reads_not_writes(lan):
    c = httpx.Client(base_url=lan.url, timeout=5)
    r = c.post("/api/session")
    assert r.status_code == 401 and "set-cookie" not in r.headers
    assert c.post("/api/session", headers={"Authorization": "Bearer nope-nope-nope-nope"}).status_code == 401
    r = c.post("/api/session", headers=BEARER)
    assert r.status_code == 200 and r.json()["success"]
    cookie = r.headers["set-cookie"]
    for attr in ("HttpOnly", "SameSite=strict", "Path=/", "Max-Age="):
        assert attr.lower() in cookie.lower(), cookie
    assert "secure" not in cookie.lower() and TOKEN not in cookie       # plain http; the token is not in it
    for path in PROTECTED:                                              # the client now sends the cookie only
        assert c.get(path).status_code == 200, path
    assert stream_status(c) == 200
    # a cookie is not a write credential (CSRF): writes need the header
    r = c.post("/api/motors/torque", json={"enabled": False})
    assert r.status_code == 401 and not lan.calls
    assert c.post("/api/motors/reboot", json={}).status_code == 401 and not lan.calls
    # a forged, tampered or expired cookie opens nothing, and says why
    from reachy_mini.web.security import Sessions

    name = "reachy_mini_session"
    value = c.cookies[name]
    expired = Sessions(TOKEN, name, 60, False).issue(now=time.time() - 3600)   # signed right, but too old
    forged = httpx.Client(base_url=lan.url, timeout=5)
    for bad in (value[:-1] + ("0" if value[-1] != "0" else "1"), "9999999999.deadbeef", "garbage", expired):
        forged.cookies.set(name, bad)
        r = forged.get("/api/status")
        assert r.status_code == 401 and "session expired or not valid" in r.json()["detail"], bad
    forged.cookies.set(name, Sessions(TOKEN, name, 60, False).issue())     # a fresh one: accepted
    assert forged.get("/api/status").status_code == 200


def test_changed_token_ends_sessions(tmp_path):
    from reachy_mini.web.security import Sessions

    old = Sessions(TOKEN, "x", 60, False).issue()
    s = lan_server(tmp_path, token="a-new-owner-token-0123456789")
    try:
        c = httpx.Client(base_url=s.url, timeout=5)
        c.cookies.set("reachy_mini_session", old)
        assert c.get("/api/status").status_code == 401
    finally:
        s.close()


def test_reads_are_rate_limited_per_client_and_recover(tmp_path):
    s = lan_server(tmp_path, read_rate=5, read_window_s=2.0)
    try:
        c = httpx.Client(base_url=s.url, timeout=5, headers=BEARER)
        codes = [c.get("/api/status").status_code for _ in range(5)]
        assert codes == [200] * 5
        r = c.get("/api/motors")
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 3
        assert "too many reads: at most 5 per 2 s" in r.json()["detail"]
        assert stream_status(c) == 429                                     # a stream connection is a read
        anon = httpx.Client(base_url=s.url, timeout=5)
        assert anon.get("/api/status").status_code == 429                  # guessing the token is limited too
        assert anon.post("/api/session", headers={"Authorization": "Bearer guess-guess-guess"}).status_code == 429
        assert c.get("/api/health").status_code == 200 and c.get("/").status_code == 200   # open, unlimited
        assert c.post("/api/motors/torque", json={"enabled": True}).status_code == 200     # writes: own limit
        wait_for(lambda: c.get("/api/status").status_code == 200, timeout=10, period=0.5)  # the window passes
        s.app.state.read_limiter.configure(1000, 2.0)                     # what `ros2 param set` calls
        assert all(c.get("/api/status").status_code == 200 for _ in range(20))
    finally:
        s.close()


def test_loopback_reads_stay_open_and_unlimited(tmp_path):
    s = Server(tmp_path, read_rate=3)       # host 127.0.0.1: protect_reads False, as web_bridge decides
    try:
        fill(s.store)
        c = httpx.Client(base_url=s.url, timeout=5)
        assert all(c.get("/api/status").status_code == 200 for _ in range(10))
        assert c.get("/metrics").status_code == 200 and stream_status(c) == 200
        assert c.post("/api/motors/torque", json={"enabled": True}).status_code == 401   # writes still need it
    finally:
        s.close()


def test_is_loopback():
    from reachy_mini.web.security import is_loopback

    for h in ("127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(h), h
    for h in ("0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "reachy.local", "", "fe80::1"):
        assert not is_loopback(h), h


# ---------------------------------------------------------------- TLS
OPENSSL = shutil.which("openssl")
need_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl CLI missing (apt install openssl)")


def self_signed(d, name="cert") -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (what a LAN owner makes for the robot's address)."""
    cert, key = os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=reachy-mini-test",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
    os.chmod(key, 0o600)
    return cert, key


@need_openssl
def test_tls_server_answers_over_https(tmp_path):
    cert, key = self_signed(str(tmp_path))
    s = lan_server(tmp_path, tls=True, ssl={"ssl_certfile": cert, "ssl_keyfile": key})
    try:
        assert s.url.startswith("https://127.0.0.1:")
        with pytest.raises(httpx.ConnectError):                              # not trusted by default
            httpx.get(s.url + "/api/health", timeout=5)
        c = httpx.Client(base_url=s.url, timeout=5, verify=ssl.create_default_context(cafile=cert))
        assert c.get("/api/health").status_code == 200
        assert c.get("/api/status").status_code == 401 and c.get("/api/status", headers=BEARER).status_code == 200
        r = c.post("/api/session", headers=BEARER)
        assert r.status_code == 200 and "secure" in r.headers["set-cookie"].lower()
        assert c.get("/api/motors").status_code == 200                       # the Secure cookie over https
        with pytest.raises(httpx.HTTPError):                                 # plain http on the TLS port
            httpx.get(f"http://127.0.0.1:{s.port}/api/health", timeout=5).raise_for_status()
    finally:
        s.close()


@need_openssl
def test_bad_tls_files_are_named(tmp_path):
    from reachy_mini.web.config import WebBridgeConfig as C

    cert, key = self_signed(str(tmp_path))
    cert2, key2 = self_signed(str(tmp_path), "other")
    assert C(certfile=cert, keyfile=key).tls() == {"ssl_certfile": cert, "ssl_keyfile": key}
    assert C().tls() == {}
    assert "'certfile' and 'keyfile'" in C(certfile=cert).validate()[0]
    assert "'certfile' and 'keyfile'" in C(keyfile=key).validate()[0]
    cases = [(C(certfile=str(tmp_path / "none.pem"), keyfile=key), "parameter 'certfile'", "No such file"),
             (C(certfile=cert, keyfile=str(tmp_path / "none.key")), "parameter 'keyfile'", "No such file"),
             (C(certfile=key, keyfile=key), "parameter 'certfile'", "certificate"),
             (C(certfile=cert, keyfile=cert), "parameter 'keyfile'", "private key"),
             (C(certfile=cert, keyfile=key2), "'certfile'", "cannot be used together")]
    for cfg, named, why in cases:
        with pytest.raises(ValueError) as e:
            cfg.tls()
        assert named in str(e.value) and why in str(e.value), str(e.value)


def test_token_rules_at_start():
    from reachy_mini.web.config import WebBridgeConfig as C

    env = {"REACHY_MINI_WEB_TOKEN": TOKEN, "REACHY_MINI_METRICS_TOKEN": SCRAPE}
    assert C(host="0.0.0.0").secrets(env) == (TOKEN, SCRAPE) and C(host="0.0.0.0").exposed()
    assert C().secrets({}) == (None, None) and not C().exposed()           # loopback: no token needed
    with pytest.raises(ValueError, match="parameter 'host' = '0.0.0.0' is not a loopback.*'token_file'"):
        C(host="0.0.0.0").secrets({"REACHY_MINI_METRICS_TOKEN": SCRAPE})
    with pytest.raises(ValueError, match="'metrics_token_file': the scrape token must differ"):
        C().secrets({"REACHY_MINI_WEB_TOKEN": TOKEN, "REACHY_MINI_METRICS_TOKEN": TOKEN})
    with pytest.raises(ValueError, match="REACHY_MINI_METRICS_TOKEN must be at least 16"):
        C().secrets({"REACHY_MINI_METRICS_TOKEN": "short"})
    public = C(metrics_token_file="/x/scrape", certfile="/x/c", keyfile="/x/k").public()
    assert "/x/scrape" not in str(public) and "/x/k" not in str(public) and public["tls"]


# ---------------------------------------------------------------- the real node
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def _node(ros_env, tmp_path, *params, env=None):
    argv = [sys.executable, "-m", "reachy_mini.nodes.web_bridge", "--ros-args", "-p", f"data_dir:={tmp_path}"]
    for p in params:
        argv += ["-p", p]
    env = {k: v for k, v in ros_env.items() if k not in ("REACHY_MINI_WEB_TOKEN", "REACHY_MINI_METRICS_TOKEN")} \
        | (env or {})
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@need_openssl
def test_web_bridge_on_the_lan_with_tls(ros_env, tmp_path):
    """The real node bound to 0.0.0.0 with TLS, token files and a runtime read limit."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    from ros_probe import RosProbe

    cert, key = self_signed(str(tmp_path))
    tok, scrape = tmp_path / "token", tmp_path / "scrape"
    for f, v in ((tok, TOKEN), (scrape, SCRAPE)):
        f.write_text(v + "\n")
        f.chmod(0o600)
    port = _free_port()
    proc = _node(ros_env, tmp_path, "host:=0.0.0.0", f"port:={port}", f"token_file:={tok}",
                 f"metrics_token_file:={scrape}", f"certfile:={cert}", f"keyfile:={key}")
    c = httpx.Client(base_url=f"https://127.0.0.1:{port}", timeout=5, verify=ssl.create_default_context(cafile=cert))
    probe = RosProbe("web_lan_test")

    def up():
        try:
            return c.get("/api/health").status_code in (200, 503)
        except httpx.HTTPError:
            return False
    try:
        wait_for(up, timeout=30, period=0.3)
        for path in ("/api/status", "/api/motors", "/api/incidents", "/api/history", "/api/system/info", "/metrics"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers=BEARER).status_code == 200, path
        assert c.get("/").status_code == 200
        assert c.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE}"}).status_code == 200
        assert c.get("/api/status", headers={"Authorization": f"Bearer {SCRAPE}"}).status_code == 401
        info = c.get("/api/system/info", headers=BEARER).json()
        assert info["config"]["tls"] and str(tok) not in str(info) and str(key) not in str(info)
        r = c.post("/api/session", headers=BEARER)
        assert r.status_code == 200 and f"reachy_mini_session_{port}=" in r.headers["set-cookie"]
        assert "secure" in r.headers["set-cookie"].lower()
        assert c.get("/api/status").status_code == 200                        # the cookie, over https
        req = SetParameters.Request(parameters=[Parameter("read_rate", value=2).to_parameter_msg(),
                                                Parameter("read_window_s", value=60.0).to_parameter_msg()])
        assert probe.call(SetParameters, "/web_bridge/set_parameters", req).results[0].successful
        codes = [c.get("/api/status", headers=BEARER).status_code for _ in range(3)]
        assert codes[-1] == 429 and codes.count(200) <= 2, codes
        assert c.get("/api/health").status_code in (200, 503)                # never limited
        req = SetParameters.Request(parameters=[Parameter("read_rate", value=1000).to_parameter_msg()])
        assert probe.call(SetParameters, "/web_bridge/set_parameters", req).results[0].successful
        assert c.get("/api/status", headers=BEARER).status_code == 200
    finally:
        probe.close()
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=15)[0]
    assert f"web status page on https://{socket.gethostname()}:{port}, listening on 0.0.0.0:{port}" in out, out
    assert "reads need the token" in out, out


@pytest.mark.parametrize("params,env,named", [
    (["host:=0.0.0.0"], {}, "parameter 'host' = '0.0.0.0' is not a loopback address"),
    (["certfile:=/nonexistent/cert.pem"], {}, "parameters 'certfile' and 'keyfile': set both"),
    (["certfile:=/nonexistent/cert.pem", "keyfile:=/nonexistent/key.pem"], {},
     "parameter 'certfile' = '/nonexistent/cert.pem': No such file"),
    (["metrics_token_file:=/nonexistent/scrape"], {}, "parameter 'metrics_token_file'"),
])
def test_web_bridge_refuses_a_bad_set_up(ros_env, tmp_path, params, env, named):
    """Exit 2 (invalid parameter, not restarted) with the parameter named; no port opened."""
    proc = _node(ros_env, tmp_path, f"port:={_free_port()}", *params, env=env)
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 2, out
    assert "invalid parameter" in out and named in out, out
