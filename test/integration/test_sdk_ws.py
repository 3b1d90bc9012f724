"""web/sdk_ws.py, the /ws/sdk shell, in the real FastAPI app (real uvicorn and
websockets client; Starlette's test client for the non-loopback address),
with a backend that records what the node would publish:
the loopback rule and its explicit opening (log + diagnostic WARN), the
state stream to every client, latest-wins commands, once-per-client notes,
task answers. The real stack with the vendor's SDK: test/system/test_vendor_sdk.py."""
from __future__ import annotations

import json
import threading
import time
import uuid

import numpy as np
import pytest
from fastapi.testclient import TestClient
from fastapi import WebSocketDisconnect

from reachy_mini.core import sdk
from reachy_mini.core.levels import OK, WARN
from reachy_mini.ros.tasks import SdkCheck
from reachy_mini.web.app import Actions, create_app
from reachy_mini.web.sdk_ws import SdkBackend, SdkHub
from reachy_mini.web.state import StateStore

from conftest import wait_for

JOINTS = {n: 0.01 * i for i, n in enumerate(sdk.HEAD_ORDER + sdk.ANTENNAS)}


class Recorder:
    def __init__(self) -> None:
        self.motions: list[sdk.Command] = []
        self.logs: list[tuple[str, str]] = []
        self.torques: list[bool] = []
        self.media: list[tuple[str, object]] = []

    def backend(self) -> SdkBackend:
        def goto(cmd):
            raise ValueError("torque off: call enable_motors() first")
        return SdkBackend(self.motions.append, lambda on: (self.torques.append(on), (True, ""))[1],
                          lambda: (JOINTS, np.eye(4)), lambda: sdk.daemon_status("rm", None, "enabled", "0.1"),
                          goto, lambda h, final: None, tuple(JOINTS), lambda lv, m: self.logs.append((lv, m)),
                          lambda cmd: (self.media.append((cmd.type, cmd.value)),
                                       (cmd.value != "/no/such.wav", "/no/such.wav: no such file"))[1])


def client(open_to_network: bool):
    rec = Recorder()
    hub = SdkHub(rec.backend(), open_to_network=open_to_network, max_commands_per_s=1000)
    app = create_app(StateStore(), Actions(lambda on: (True, ""), lambda: (True, ""), lambda **k: []), sdk=hub)
    return TestClient(app), hub, rec


def until(ws, typ: str, n: int = 200) -> dict:
    for _ in range(n):
        m = json.loads(ws.receive_text() if hasattr(ws, "receive_text") else ws.recv(timeout=5))
        if m["type"] == typ:
            return m
    raise AssertionError(f"no {typ}")


def test_non_loopback_client_is_refused_by_default():
    tc, hub, rec = client(open_to_network=False)    # the test client's address is "testclient": not loopback
    with pytest.raises(WebSocketDisconnect) as e:
        with tc.websocket_connect("/ws/sdk") as ws:
            ws.receive_text()
    assert e.value.code == 1008
    assert hub.counts["refused_remote"] == 1 and "loopback clients only" in rec.logs[-1][1]
    lv, msg, _ = SdkCheck(hub, exposed=False).evaluate()
    assert lv == OK
    assert tc.get("/api/health").status_code in (200, 503)   # the rest keeps serving


@pytest.fixture
def served():
    import uvicorn

    from tools.bench.stack import free_port

    tc, hub, rec = client(open_to_network=True)
    port = free_port()   # other suites run beside this one: no fixed port
    server = uvicorn.Server(uvicorn.Config(tc.app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    end = time.monotonic() + 30
    while not server.started and time.monotonic() < end:
        time.sleep(0.02)
    assert server.started, f"uvicorn did not start on port {port}"
    yield hub, rec, port
    server.should_exit = True
    t.join(5)


def test_opened_to_the_network_it_serves_and_warns(served):
    from websockets.sync.client import connect

    hub, rec, port = served
    lv, msg, values = SdkCheck(hub, exposed=True).evaluate()
    assert lv == WARN and "SDK endpoint open to the network without authentication" in msg
    url = f"ws://127.0.0.1:{port}/ws/sdk"
    with connect(url, additional_headers={"X-Reachy-Client": "python_sdk/1.13.0 (linux)"}) as a, \
            connect(url) as b:
        for ws in (a, b):                              # each client gets the state stream
            jp = until(ws, "joint_positions")
            assert jp["head_joint_positions"] == [JOINTS[n] for n in sdk.HEAD_ORDER]
            assert until(ws, "head_pose")["head_pose"][3] == [0, 0, 0, 1]
            assert until(ws, "daemon_status")["no_media"] is True
        a.send(json.dumps({"type": "set_body_yaw", "body_yaw": 0.1}))
        b.send(json.dumps({"type": "set_body_yaw", "body_yaw": 0.2}))
        a.send(json.dumps({"type": "set_wobbling", "enabled": True}))
        a.send(json.dumps({"type": "set_wobbling", "enabled": False}))
        a.send("{bad json")
        a.send(json.dumps({"type": "start_recording"}))
        a.send(json.dumps({"type": "append_record", "record": {"time": 1.0}}))
        a.send(json.dumps({"type": "stop_recording"}))
        assert until(a, "recorded_data")["data"] == [{"time": 1.0}]
        uid = str(uuid.uuid4())
        a.send(json.dumps({"type": "task", "uuid": uid, "req": {"head": None, "antennas": [0, 0],
                                                                     "duration": 0.5, "method": "linear",
                                                                     "body_yaw": 0.0}}))
        tp = until(a, "task_progress")
        assert tp["uuid"] == uid and tp["finished"] and "torque off" in tp["error"]
        b.send(json.dumps({"type": "set_antennas", "antennas": [0.3, 0.3]}))
        until(b, "joint_positions")
    assert [c.body_yaw for c in rec.motions[:2]] == [0.1, 0.2]     # both applied, in order: latest wins
    wobble = [m for lv, m in rec.logs if "set_wobbling" in m]
    assert len(wobble) == 1 and "not supported" in wobble[0]          # once per client, with the reason
    assert hub.counts["malformed"] == 1 and "set_wobbling" in hub.unsupported
    _, _, values = SdkCheck(hub, exposed=True).evaluate()
    assert ("unsupported: set_wobbling", sdk.UNSUPPORTED["set_wobbling"]) in values


def test_audio_commands_are_served_through_the_backend(served):
    """play_sound, set_volume, ... (issue 30): handed to audio_node, fire-and-forget as the vendor's; a
    failure is logged with the reason; a bad volume is an invalid frame."""
    from websockets.sync.client import connect

    hub, rec, port = served
    with connect(f"ws://127.0.0.1:{port}/ws/sdk") as ws:
        until(ws, "daemon_status")
        for m in ({"type": "play_sound", "file": "/tmp/beep.wav"}, {"type": "set_volume", "volume": 35},
                  {"type": "get_volume"}, {"type": "set_microphone_volume", "volume": 80},
                  {"type": "clear_incoming_audio"}, {"type": "play_sound", "file": "/no/such.wav"},
                  {"type": "set_volume", "volume": 101}, {"type": "set_volume", "volume": True}):
            ws.send(json.dumps(m))
        end = time.monotonic() + 10
        while len(rec.media) < 6 and time.monotonic() < end:
            time.sleep(0.02)
    assert rec.media == [("play_sound", "/tmp/beep.wav"), ("set_volume", 35), ("get_volume", None),
                         ("set_microphone_volume", 80), ("clear_incoming_audio", None),
                         ("play_sound", "/no/such.wav")]
    assert hub.counts["invalid"] == 2 and not {"play_sound", "set_volume"} & set(hub.unsupported)
    wait_for(lambda: any("play_sound failed: /no/such.wav: no such file" in m for _, m in rec.logs), timeout=5)
