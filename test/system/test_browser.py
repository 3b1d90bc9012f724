"""The status page in a real headless Chromium (Debian's chromium +
chromedriver, driven by selenium) against the full stack on the simulated
robot: motor table and tree render, a fault injected in the simulator shows
within 2 s, a killed web bridge shows "connection lost" and the page
reconnects by itself. Saves a screenshot to test-artifacts/."""
from __future__ import annotations

import json
import os
import shutil
import signal
import time

import pytest

from tools.bench.stack import Stack
from reachy_mini.sim.bus import send_command

from conftest import REPO, wait_for

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="Debian chromium/chromium-driver missing")
ARTIFACTS = os.path.join(REPO, "test-artifacts")


@pytest.fixture
def stack(tmp_path, ros_env):
    st = Stack(str(tmp_path), domain=ros_env["ROS_DOMAIN_ID"])
    try:
        st.pids()
        yield st
    finally:
        st.stop()


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
              "--window-size=1400,1500"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})   # console: CSP violations
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield drv
    drv.quit()


def js(drv, code):
    return drv.execute_script(code)


def test_page_renders_and_updates_live(stack, browser, tmp_path):
    url = f"http://127.0.0.1:{stack.port}/"
    wait_for(lambda: _up(url), timeout=20, period=0.2)
    browser.get(url)
    wait_for(lambda: js(browser, "return document.querySelectorAll('#motors tbody tr').length") == 9, timeout=20,
             period=0.2)
    wait_for(lambda: js(browser, "return document.getElementById('conn').textContent") == "live", timeout=5)
    # the health node's per-node items can arrive one push after the motors: wait for the next pushes
    names = "return [...document.querySelectorAll('#tree li')].map(li => li.dataset.name)"
    tree = wait_for(lambda: (t := js(browser, names)) and "/Reachy Mini/System/Nodes/camera_node" in t and t,
                    timeout=5, period=0.1)
    assert "/Reachy Mini/Motors/stewart_2" in tree
    # everything green first (nodes publishing, motors OK)
    wait_for(lambda: js(browser, "return document.querySelector('tr[data-motor=stewart_2]').className") == "s0",
             timeout=15)
    # a fault in the simulator shows on the page within 0.5 s, pushed over SSE
    ctl = os.path.join(stack.tmp, "reachy_mini_sim", "ttyDXL.ctl")
    t0 = time.monotonic()
    send_command(ctl, {"cmd": "overheat", "id": 12})
    # (the fault itself, not a reply lost to a starved simulator under make test-stress, which also turns it ERROR)
    row = "const r = document.querySelector('tr[data-motor=stewart_2]'); return [r.className, r.textContent]"
    wait_for(lambda: (r := js(browser, row))[0] == "s2" and "overheat" in r[1].lower(), timeout=5, period=0.02)
    latency = time.monotonic() - t0
    print(f"fault injected -> page shows ERROR in {latency:.2f} s")
    assert latency <= 0.5, "an ERROR reaches the open page within 0.5 s"
    assert "ERROR" in js(browser, "return document.getElementById('state').textContent")
    assert js(browser, "return document.getElementById('banner').className") == "l2"
    # camera frame, audio level, plots and the incident log
    wait_for(lambda: js(browser, "return document.getElementById('camera').naturalWidth") > 0, timeout=10)
    wait_for(lambda: "dBFS" in js(browser, "return document.getElementById('audiotext').textContent"), timeout=5)
    wait_for(lambda: js(browser, "return document.querySelectorAll('#temps polyline').length") >= 9, timeout=10)
    wait_for(lambda: js(browser, "return document.querySelectorAll('#incidents tbody tr').length") > 0, timeout=10)
    os.makedirs(ARTIFACTS, exist_ok=True)
    shot = os.path.join(ARTIFACTS, "web_status_page.png")
    browser.save_screenshot(shot)
    assert os.path.getsize(shot) > 10_000
    send_command(ctl, {"cmd": "clear", "id": 12})
    # killing the web bridge: the page says so, reconnects, and no other node is touched
    with open(stack.state) as f:
        before = {k: n["pid"] for k, n in json.load(f)["nodes"].items()}
    os.kill(before["web_bridge"], signal.SIGKILL)
    wait_for(lambda: "connection lost" in js(browser, "return document.getElementById('conn').textContent"),
             timeout=5, period=0.05)
    wait_for(lambda: js(browser, "return document.getElementById('conn').textContent") == "live", timeout=20,
             period=0.1)
    with open(stack.state) as f:
        after = {k: n["pid"] for k, n in json.load(f)["nodes"].items()}
    assert after["web_bridge"] != before["web_bridge"]
    assert {k: v for k, v in after.items() if k != "web_bridge"} == \
        {k: v for k, v in before.items() if k != "web_bridge"}


def test_docs_render_offline_under_csp(browser, tmp_path):
    """/docs: Swagger UI from our own server (fastapi-offline's assets), no
    CDN, no inline script, so it renders under our CSP with no network."""
    from test_web import Server

    srv = Server(tmp_path)
    try:
        browser.get(srv.url + "/docs")
        text = "return document.body.innerText"
        wait_for(lambda: "/api/motors/torque" in js(browser, text), timeout=15, period=0.2)
        body = js(browser, text)
        for op in ("/api/health", "/api/status", "/api/motors", "/api/incidents", "/metrics"):
            assert op in body
        srcs = js(browser, "return [...document.scripts].map(s => s.src)")
        assert srcs and all(src.startswith(srv.url + "/") for src in srcs), srcs
        csp = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
        assert csp == [], csp
        os.makedirs(ARTIFACTS, exist_ok=True)
        browser.save_screenshot(os.path.join(ARTIFACTS, "api_docs.png"))
    finally:
        srv.close()


def test_page_on_the_lan_asks_for_the_token(browser, tmp_path):
    """A server bound to 0.0.0.0 (reached over 127.0.0.1): the page asks for
    the token (a form, no prompt()), says why a wrong one is refused, and
    with the right one shows the motors, the live stream and the camera
    frame (the HttpOnly session cookie: EventSource and <img> send no
    header, and the token is in no URL)."""
    import cv2
    import numpy as np

    from test_web import TOKEN, Server, fill

    srv = Server(tmp_path, host="0.0.0.0", protect_reads=True)
    try:
        fill(srv.store)
        srv.store.stale_after_s = 3600.0
        srv.store.set_camera(cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))[1].tobytes())
        browser.get(srv.url + "/")
        wait_for(lambda: js(browser, "return !document.getElementById('login').hidden"), timeout=10, period=0.1)
        assert js(browser, "return document.getElementById('conn').textContent") == "token needed"
        assert js(browser, "return document.querySelectorAll('#motors tbody tr').length") == 0

        def enter(tok):
            from selenium.webdriver.common.by import By

            browser.find_element(By.ID, "token").send_keys(tok)
            browser.find_element(By.CSS_SELECTOR, "#login button").click()
        enter("a-wrong-token-of-some-length")
        wait_for(lambda: "wrong bearer token" in js(browser, "return document.getElementById('loginerr').textContent"),
                 timeout=10, period=0.1)
        assert not js(browser, "return document.getElementById('login').hidden")
        enter(TOKEN)
        wait_for(lambda: js(browser, "return document.querySelectorAll('#motors tbody tr').length") == 9, timeout=10,
                 period=0.1)
        wait_for(lambda: js(browser, "return document.getElementById('conn').textContent") == "live", timeout=5)
        assert js(browser, "return document.getElementById('login').hidden")
        fill(srv.store, bad="stewart_2")                                      # pushed over the stream
        wait_for(lambda: js(browser, "return document.querySelector('tr[data-motor=stewart_2]').className") == "s2",
                 timeout=5, period=0.05)
        srv.store.set_camera(cv2.imencode(".jpg", np.full((48, 64, 3), 30, np.uint8))[1].tobytes())
        wait_for(lambda: js(browser, "return document.getElementById('camera').naturalWidth") == 64, timeout=10)
        assert TOKEN not in js(browser, "return document.getElementById('camera').src")
        assert js(browser, "return document.cookie") == ""                    # HttpOnly: no script reads it
        assert js(browser, "return sessionStorage.getItem('reachy_mini_token')") == TOKEN
        csp = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
        assert csp == [], csp
        os.makedirs(ARTIFACTS, exist_ok=True)
        browser.save_screenshot(os.path.join(ARTIFACTS, "web_status_page_lan.png"))
        # a reload in the same tab asks nothing (the token is kept for the session)
        browser.refresh()
        wait_for(lambda: js(browser, "return document.getElementById('conn').textContent") == "live", timeout=10)
        assert js(browser, "return document.getElementById('login').hidden")
    finally:
        srv.close()


def _up(url):
    import httpx

    try:
        return httpx.get(url + "api/health", timeout=1).status_code in (200, 503)
    except httpx.HTTPError:
        return False


def test_robot_view_follows_the_head(stack, browser, ros_env):
    """The page's robot view: the URDF's shapes placed by /tf and /tf_static
    (web_bridge -> SSE), in a front and a side view; a head target pitched
    15 deg down shows as the head's pitch and a tilted head outline. Saves
    test-artifacts/robot_view.png."""
    import math

    from geometry_msgs.msg import PoseStamped

    from reachy_mini.core.head import rpy_to_quaternion
    from ros_probe import RosProbe

    url = f"http://127.0.0.1:{stack.port}/"
    wait_for(lambda: _up(url), timeout=20, period=0.2)
    browser.get(url)
    heads = "return document.querySelectorAll('#robot polyline[data-link=head]').length"
    wait_for(lambda: js(browser, heads) >= 2 * 6, timeout=20, period=0.2)   # a box: 6 polylines, in two views
    links = set(js(browser, "return [...document.querySelectorAll('#robot polyline')].map(p => p.dataset.link)"))
    assert {"base", "body", "head", "camera_link", "left_antenna", "right_antenna", "mic_array"} <= links
    pose = "return document.getElementById('robotpose').textContent"
    probe = RosProbe()
    try:
        pub = probe.node.create_publisher(PoseStamped, "/head/target_pose", 10)
        target = PoseStamped()
        target.header.frame_id = "base_link"
        o = target.pose.orientation
        o.x, o.y, o.z, o.w = rpy_to_quaternion(0.0, math.radians(15), math.radians(10))

        def pitch():
            pub.publish(target)   # streamed (command watchdog)
            text = js(browser, pose)
            return text and abs(float(text.split("pitch ")[1].split("°")[0]) - 15) < 2
        wait_for(pitch, timeout=20, period=0.1)
        time.sleep(0.5)
        pub.publish(target)
        os.makedirs(ARTIFACTS, exist_ok=True)
        el = browser.find_element("css selector", "section:has(#robot)")   # with its heading (the pose)
        browser.execute_script("arguments[0].scrollIntoView()", el)
        el.screenshot(os.path.join(ARTIFACTS, "robot_view.png"))
        browser.save_screenshot(os.path.join(ARTIFACTS, "robot_view_page.png"))
    finally:
        probe.close()
    print("robot view:", js(browser, pose))
    csp = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert csp == [], csp
def test_incident_list_links_and_plots_its_recording(tmp_path, ros_env, browser):
    """An overheat: its incident row gets the flight recorder's MCAP link (a
    download of the real file) and the page plots the recorded minute: the
    motor's temperature and the item's and robot's levels around it."""
    import httpx

    st = Stack(str(tmp_path), domain=ros_env["ROS_DOMAIN_ID"])
    try:
        st.pids()
        url = f"http://127.0.0.1:{st.port}/"
        wait_for(lambda: _up(url), timeout=30, period=0.2)
        browser.get(url)
        wait_for(lambda: js(browser, "return document.getElementById('conn').textContent") == "live", timeout=20)
        wait_for(lambda: js(browser, "return document.querySelector('tr[data-motor=stewart_2]')?.className") == "s0",
                 timeout=30, period=0.2)
        time.sleep(30.0)   # a full half-minute of history before the fault
        send_command(os.path.join(st.tmp, "reachy_mini_sim", "ttyDXL.ctl"), {"cmd": "overheat", "id": 12})
        time.sleep(6.0)    # the temperature climbs on: the plot shows the after part too
        send_command(os.path.join(st.tmp, "reachy_mini_sim", "ttyDXL.ctl"), {"cmd": "clear", "id": 12})
        link = "const a = [...document.querySelectorAll('#incidents tr')].find(tr => tr.textContent.includes(" \
               "'Motors/stewart_2') && tr.querySelector('a.dl')); return a ? a.querySelector('a.dl').href : null"
        href = wait_for(lambda: js(browser, link), timeout=15, period=0.3)
        # the plot appears once the file is written (10 s after the incident): a value line and level bands
        wait_for(lambda: js(browser, "return document.querySelectorAll('#incplot polyline.value').length") == 1,
                 timeout=25, period=0.3)
        title = js(browser, "return document.getElementById('plottitle').textContent")
        assert "ERROR" in title, title
        assert js(browser, "return document.querySelectorAll('#incplot rect.band').length") >= 10
        assert "temperature" in js(browser, "return document.getElementById('plotlegend').textContent")
        r = httpx.get(href, timeout=10)
        assert r.status_code == 200 and r.content[:8] == b"\x89MCAP0\r\n"
        csp = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
        assert csp == [], csp
        browser.execute_script("document.getElementById('recording').scrollIntoView()")
        os.makedirs(ARTIFACTS, exist_ok=True)
        shot = os.path.join(ARTIFACTS, "incident_plot.png")
        browser.save_screenshot(shot)
        assert os.path.getsize(shot) > 10_000
    finally:
        st.stop()
