"""core/media/camera_specs (the vendor's camera specs and calibration, scaled for
camera_info), core/sdk.media_status (no_media / camera_specs_name) and the
vendor route GET /api/camera/specs. The vendor's own numbers are read from the
vendor SDK (.venv-sdk, PyPI reachy-mini 1.13.0) when it is there."""
from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from reachy_mini.core import sdk
from reachy_mini.core.media import camera_specs as cs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
SDK_PY = os.path.join(REPO, ".venv-sdk", "bin", "python")


def vendor(code: str):
    if not os.path.exists(os.path.join(REPO, ".venv-sdk", ".installed")):
        pytest.skip("vendor SDK venv .venv-sdk not made (make sdk-venv)")
    out = subprocess.run([SDK_PY, "-c", code], capture_output=True, text=True, timeout=120, cwd="/tmp")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_specs_json_is_the_vendors():
    names = ["lite", "wireless", "arducam", "older_rpi", "generic", "mujoco"]
    theirs = vendor(f"""
import json
from reachy_mini.media.camera_constants import get_camera_specs_by_name
def res(r):
    w, h, fps, crop = r.value
    return dict(name=r.name, width=w, height=h, fps=fps, crop_factor=crop)
out = {{}}
for n in {names!r}:
    s = get_camera_specs_by_name(n)
    out[n] = dict(name=s.name, available_resolutions=[res(r) for r in s.available_resolutions],
                  default_resolution=res(s.default_resolution), K=s.K.tolist(), D=s.D.tolist())
print(json.dumps(out))
""")
    for n in names:
        assert cs.specs_json(n) == theirs[n], n
    assert cs.specs_json("") == theirs["lite"] and cs.specs_json("nonsense") == theirs["lite"]


def test_intrinsics_at_the_served_size_are_the_vendors():
    theirs = vendor("""
import json
from reachy_mini.media.camera_constants import get_camera_specs_by_name, CameraResolution
from reachy_mini.media.camera_utils import scale_intrinsics
s = get_camera_specs_by_name("lite")
r = s.default_resolution
print(json.dumps(scale_intrinsics(s.K, (3840, 2592), r.value[:2], r.value[3]).tolist()))
""")
    assert np.allclose(cs.intrinsics(cs.get_spec("lite")), theirs)


def test_camera_info_scaled_to_the_published_size():
    full = cs.intrinsics(cs.get_spec("lite"))                     # at 1920x1080
    i = cs.camera_info("lite", (640, 360))
    k = np.array(i["k"]).reshape(3, 3)
    assert np.isclose(k[0, 0], full[0][0] / 3) and np.isclose(k[1, 1], full[1][1] / 3)
    assert np.isclose(k[0, 2], (full[0][2] + 0.5) / 3 - 0.5) and np.isclose(k[1, 2], (full[1][2] + 0.5) / 3 - 0.5)
    assert i["distortion_model"] == "rational_polynomial" and len(i["d"]) == 12
    assert i["p"][:3] == i["k"][:3] and i["p"][3] == 0.0 and i["r"] == [1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert "camera_constants.py lite" in i["source"] and "640x360" in i["source"]
    assert cs.camera_info("arducam", (1280, 720))["distortion_model"] == "plumb_bob"
    # same size: unchanged
    assert np.allclose(np.array(cs.camera_info("lite", (1920, 1080))["k"]).reshape(3, 3), full)


def test_a_calibration_file_is_scaled_too():
    info = {"width": 640, "height": 480, "distortion_model": "plumb_bob", "d": [0.1, 0, 0, 0, 0],
            "k": [500.0, 0, 319.5, 0, 500.0, 239.5, 0, 0, 1], "r": [1, 0, 0, 0, 1, 0, 0, 0, 1],
            "p": [500.0, 0, 319.5, 0, 0, 500.0, 239.5, 0, 0, 0, 1, 0]}
    out = cs.scale_info(info, (320, 240), "mine.yaml")
    assert out["k"][0] == 250.0 and out["k"][2] == 159.5 and out["k"][5] == 119.5 and out["d"] == info["d"]
    assert out["p"][0] == 250.0 and out["p"][6] == 119.5 and out["source"] == "mine.yaml (scaled from 640x480)"
    assert cs.scale_info(info, (640, 480), "mine.yaml")["source"] == "mine.yaml"


@pytest.mark.parametrize("camera,audio,no_media,name", [
    (True, True, False, "lite"), (True, False, True, "lite"), (False, True, True, ""), (False, False, True, "")])
def test_media_status(camera, audio, no_media, name):
    assert sdk.media_status(camera, audio, "lite") == {"no_media": no_media, "camera_specs_name": name}


def test_media_from_diagnostics_and_daemon_status():
    cam = {"sdk_socket": "serving", "camera_specs_name": "wireless"}
    assert sdk.media_from_diagnostics(cam, {"shared_pcm": "true"}) == {"no_media": False,
                                                                       "camera_specs_name": "wireless"}
    assert sdk.media_from_diagnostics({"sdk_socket": "off"}, {"shared_pcm": "true"})["no_media"] is True
    assert sdk.media_from_diagnostics({}, {})["camera_specs_name"] == ""
    s = sdk.daemon_status("rm", None, None, "1.13.0")
    assert s["no_media"] is True and s["camera_specs_name"] == ""
    s = sdk.daemon_status("rm", None, None, "1.13.0", media=sdk.media_status(True, True))
    assert s["no_media"] is False and s["camera_specs_name"] == "lite"


def test_api_camera_specs_route():
    from fastapi.testclient import TestClient

    from reachy_mini.web.app import Actions, create_app
    from reachy_mini.web.state import StateStore, status_dict

    store = StateStore()
    app = create_app(store, Actions(set_torque=lambda on: (True, ""), reboot=lambda: (True, ""),
                                    incidents=lambda **kw: []))
    with TestClient(app) as c:
        r = c.get("/api/camera/specs")            # nothing heard from camera_node: the vendor's fallback, lite
        assert r.status_code == 200 and r.json() == cs.specs_json("lite")
        store.set_diagnostics(status_dict("toplevel_state", 0, "OK"), [
            status_dict("/Reachy Mini/Camera/camera", 0, "OK", [("camera_specs_name", "arducam")])])
        assert c.get("/api/camera/specs").json() == cs.specs_json("arducam")
