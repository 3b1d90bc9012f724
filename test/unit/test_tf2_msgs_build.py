"""tools/build_tf2_msgs.sh: tf2_msgs (our TFMessage definition) built into the
venv on a machine without ROS, with the same type hash as ROS's own."""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
SCRIPT = os.path.join(REPO, "tools", "build_tf2_msgs.sh")
# `ros2 topic info -v /tf` on ROS 2 Jazzy / Kilted (the hash of the definition
# geometry_msgs/TransformStamped[] transforms and its dependencies)
ROS_TFMESSAGE_HASH = "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"


def test_tfmessage_importable_with_ros_type_hash():
    from tf2_msgs.msg import TFMessage

    assert [f for f in TFMessage.get_fields_and_field_types()] == ["transforms"]
    # the generated type description next to the package (ours in the venv, or a ROS install's)
    import tf2_msgs

    prefix = os.path.dirname(tf2_msgs.__file__)
    for _ in range(6):
        found = glob.glob(os.path.join(prefix, "share", "tf2_msgs", "msg", "TFMessage.json"))
        if found:
            break
        prefix = os.path.dirname(prefix)
    else:
        pytest.skip("no TFMessage.json type description found beside tf2_msgs")
    with open(found[0]) as f:
        hashes = {h["type_name"]: h["hash_string"] for h in json.load(f)["type_hashes"]}
    assert hashes["tf2_msgs/msg/TFMessage"] == ROS_TFMESSAGE_HASH


def test_missing_cmake_is_a_clear_error(tmp_path):
    """A Python that cannot import tf2_msgs (-S: no site-packages) and no cmake
    on PATH: the script stops at once naming what to install."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    shim = venv / "bin" / "python"
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    shim.chmod(0o755)
    env = dict(os.environ, PATH="/nonexistent")
    out = subprocess.run(["/bin/bash", SCRIPT, str(venv)], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 1
    assert "tf2_msgs build failed: cmake not found" in out.stderr and "apt-get install cmake" in out.stderr


def test_nothing_to_do_when_importable():
    venv = os.path.dirname(os.path.dirname(sys.executable))
    out = subprocess.run(["bash", SCRIPT, venv], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout == "" and out.stderr == "", out
