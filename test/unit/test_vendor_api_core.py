"""core/vendor_api.py, the vendor daemon's HTTP API as plain Python: request
checks, the full-state answer, loop figures, wake/sleep gotos, 501 reasons
and the access rules (the vendor's 1.13 Host / Origin guard)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from reachy_mini.core import sdk
from reachy_mini.core import vendor_api as va

JOINTS = {n: 0.01 * i for i, n in enumerate(sdk.HEAD_ORDER + sdk.ANTENNAS)}


def test_pose_formats_round_trip_with_the_vendors_euler_convention():
    m = va.pose_matrix({"x": 0.01, "z": -0.005, "roll": 0.1, "pitch": -0.2, "yaw": 0.3})
    p = va.any_pose(m, False)
    assert np.allclose([p[k] for k in ("x", "y", "z", "roll", "pitch", "yaw")], [0.01, 0, -0.005, 0.1, -0.2, 0.3])
    assert np.allclose(va.pose_matrix(va.any_pose(m, True)), m)
    # extrinsic xyz (scipy "xyz"): R = Rz(yaw) Ry(pitch) Rx(roll)
    r = va.pose_matrix({"roll": 0.1})[:3, :3]
    assert np.allclose(r, [[1, 0, 0], [0, math.cos(0.1), -math.sin(0.1)], [0, math.sin(0.1), math.cos(0.1)]])


@pytest.mark.parametrize("pose,why", [({"pitch": float("nan")}, "finite"), ({"x": 2.0}, "beyond"),
                                      ({"yaw": 7.0}, "beyond"), ({"pitch": "up"}, "number"),
                                      ({"tilt": 1}, "unknown"), ({"m": [1.0] * 16}, "rigid"), ("x", "object")])
def test_bad_poses_name_the_reason(pose, why):
    with pytest.raises(ValueError, match=why):
        va.pose_matrix(pose)


def test_goto_command_is_the_sdk_task_and_checks_every_field():
    c = va.goto_command({"pitch": 0.1}, [0.2, -0.2], 0.3, 1.5, "cartoon")
    assert (c.kind, c.duration, c.method, c.antennas, c.body_yaw) == ("task", 1.5, "cartoon", [0.2, -0.2], 0.3)
    for kw, why in (({"duration": None}, "required"), ({"duration": 0}, r"\(0, 60\]"), ({"duration": 61}, "60"),
                    ({"duration": 1, "interpolation": "warp"}, "interpolation"),
                    ({"duration": 1, "antennas_": [1]}, "antennas"), ({"duration": 1, "body_yaw": True}, "body_yaw")):
        with pytest.raises(ValueError, match=why):
            va.goto_command(**kw)
    with pytest.raises(ValueError, match="none of"):
        va.target_command()


def test_modes():
    assert va.check_mode("enabled") is True and va.check_mode("disabled") is False
    with pytest.raises(NotImplementedError, match="position control"):
        va.check_mode("gravity_compensation")
    with pytest.raises(ValueError, match="enabled"):
        va.check_mode("turbo")


def test_full_state_follows_the_flags_and_the_vendors_orders():
    head = sdk.pose_to_matrix(0, 0, 0, 0, 0.2, 0)
    s = va.full_state({}, JOINTS, head, "enabled")
    assert set(s) == {"control_mode", "head_pose", "body_yaw", "antennas_position", "timestamp"}
    assert s["antennas_position"] == [JOINTS["right_antenna"], JOINTS["left_antenna"]]
    s = va.full_state({f: True for f in va.FULL_FLAGS}, JOINTS, head, None,
                      {"head": np.eye(4), "joints": {"right_antenna": 1.0}}, {"angle": 1.0, "speech_detected": False})
    assert s["head_joints"] == [JOINTS[n] for n in sdk.HEAD_ORDER] and len(s["head_pose"]["m"]) == 16
    assert s["target_head_pose"]["m"] == np.eye(4).flatten().tolist()
    assert s["target_antennas_position"] == [1.0, JOINTS["left_antenna"]]
    assert s["doa"] == {"angle": 1.0, "speech_detected": False} and s["imu"] is None and s["passive_joints"] is None


def test_loop_stats_and_daemon_status_carry_our_figures():
    bus = {"achieved rate (Hz)": "98.5", "cycle max (us)": "12000", "timeouts": "2", "crc errors": "1",
           "write errors": "4", "last error": "timeout on id 13"}
    st = va.loop_stats(bus)
    assert st["mean_control_loop_frequency"] == 98.5 and st["max_control_loop_interval"] == 0.012
    assert st["nb_error"] == 7 and st["last_error"] == "timeout on id 13"
    status = sdk.daemon_status("rm", {"level": 2, "level_name": "ERROR", "message": "stewart_3 not answering"},
                               "enabled", "0.9.0")
    out = va.with_backend(status, bus)
    assert out["version"] == sdk.SDK_VERSION and out["state"] == "error" and "stewart_3" in out["error"]
    assert out["backend_status"]["control_loop_stats"]["nb_error"] == 7
    assert va.loop_stats({}) == {}


def test_wake_up_and_sleep_are_the_vendors_gotos():
    w = va.wake_up_steps()
    assert [c.duration for c in w] == [1.0, 0.2, 0.2] and w[0].antennas == [-0.1745, 0.1745]
    assert abs(sdk.matrix_to_pose(w[1].head)[1][0] - math.radians(20)) < 1e-9
    s = va.goto_sleep_steps(np.eye(4))
    assert len(s) == 1 and s[0].antennas == [-3.05, 3.05] and s[0].duration == 2.0
    assert len(va.goto_sleep_steps(sdk.pose_to_matrix(0, 0, 0, 0, 0.5, 0))) == 2   # via the initial pose


def test_unserved_reasons():
    assert "Hugging Face" in va.unserved_reason("/api/hf-auth/status")
    assert va.unserved_reason("/wifi/scan") == va.unserved_reason("/api/wifi/scan")
    assert "audio" in va.unserved_reason("/api/media/release")
    assert "camera" in va.unserved_reason("/api/camera/specs")
    assert va.unserved_reason("/api/state/full") is None and va.unserved_reason("/api/motors") is None
    assert va.is_vendor_path("/api/motors/status") and not va.is_vendor_path("/api/motors/torque")
    assert not va.is_vendor_path("/api/health") and not va.is_vendor_path("/api/statusx")


def _loop(h):
    return h in ("127.0.0.1", "::1")


@pytest.mark.parametrize("client,hosts,origins,write,open_,want", [
    ("127.0.0.1", ["127.0.0.1:8000"], [], True, False, None),
    ("192.168.1.9", ["192.168.1.20:8000"], [], False, False, 403),           # remote: closed by default
    ("192.168.1.9", ["192.168.1.20:8000"], [], True, True, None),            # opened by the owner
    ("127.0.0.1", ["evil.com"], [], False, False, 400),                      # DNS rebinding
    ("127.0.0.1", ["reachy-mini.local."], [], False, False, None),
    ("127.0.0.1", [], [], False, False, 400),
    ("127.0.0.1", ["127.0.0.1", "evil.com"], [], False, False, 400),         # duplicate Host
    ("127.0.0.1", ["localhost"], ["https://evil.com"], True, False, 403),    # cross-site write
    ("127.0.0.1", ["localhost"], ["https://evil.com"], False, False, None),  # a read: CORS protects it
    ("127.0.0.1", ["localhost"], ["http://10.0.0.5:5173"], True, False, None),
    ("127.0.0.1", ["localhost"], ["tauri://localhost"], True, False, None),
    ("127.0.0.1", ["localhost"], ["capacitor://evil"], True, False, 403),
    ("127.0.0.1", ["localhost"], ["null"], True, False, 403),
])
def test_access_rules(client, hosts, origins, write, open_, want):
    got = va.access(client, hosts, origins, write, open_, _loop)
    assert (got and got[0]) == want, got
    if got:
        assert len(got[1]) > 20
