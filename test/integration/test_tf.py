"""motor_node's robot model on the simulated bus, observed with real rclpy:
robot_description and /tf_static latched, /tf once per sample from the same
forward kinematics as head/pose, every frame of the URDF published, the
camera frame moving with the head, frame_prefix for fleets."""
from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from std_msgs.msg import String

from reachy_mini.common.paths import urdf_path
from reachy_mini.core.frames import RobotFrames, compose, pose_of
from reachy_mini.core.head import quaternion_to_rpy, rpy_to_quaternion

from conftest import wait_for
from ros_probe import RosProbe
from test_motor_node import start_node, stop

tf2_msgs = pytest.importorskip("tf2_msgs.msg")
ROS_TFMESSAGE_HASH = "e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"


class TfListener:
    """/tf, /tf_static and robot_description as tf2 and RViz subscribe to them."""

    def __init__(self, probe: RosProbe, ns: str = "") -> None:
        from reachy_mini.ros import qos

        self.lock = threading.Lock()
        self.tf: list = []
        self.static: list = []
        self.description: list = []
        n = probe.node
        n.create_subscription(tf2_msgs.TFMessage, ns + "/tf", lambda m: self._add(self.tf, m), qos.TF)
        n.create_subscription(tf2_msgs.TFMessage, ns + "/tf_static", lambda m: self._add(self.static, m),
                              qos.LATCHED)
        n.create_subscription(String, ns + "/robot_description", lambda m: self._add(self.description, m),
                              qos.LATCHED)

    def _add(self, where, m) -> None:
        with self.lock:
            where.append(m)

    def transforms(self):
        """(parent, child, xyz, q) of the latest /tf message and every static one."""
        with self.lock:
            msgs = self.static + self.tf[-1:]
        return [(t.header.frame_id, t.child_frame_id, (t.transform.translation.x, t.transform.translation.y,
                 t.transform.translation.z), (t.transform.rotation.x, t.transform.rotation.y,
                                              t.transform.rotation.z, t.transform.rotation.w))
                for m in msgs for t in m.transforms]


def _pitch(pose: PoseStamped) -> float:
    o = pose.pose.orientation
    return quaternion_to_rpy(o.x, o.y, o.z, o.w)[1]


def test_tf_equals_head_pose_every_frame_published_camera_moves(tmp_path, ros_env):
    probe = RosProbe()
    probe.listen(PoseStamped, "/head/pose", 1000)
    tf = TfListener(probe)
    proc, _ = start_node(tmp_path, ros_env)
    try:
        wait_for(lambda: probe.get("/head/pose") and tf.tf and tf.static and tf.description, timeout=15)
        with open(urdf_path()) as f:
            assert tf.description[0].data == f.read()
        frames = RobotFrames(tf.description[0].data)
        # every frame of the URDF is published (the root is every chain's parent); a motor not read
        # yet (the first samples on a loaded machine) has no transform until it answers
        want = set(frames.links) - {"base_link"}
        wait_for(lambda: {t[1] for t in tf.transforms()} == want, timeout=10, period=0.1)
        # type hash from discovery: the same as ROS's own tf2_msgs
        info = probe.node.get_publishers_info_by_topic("/tf")
        assert info and info[0].topic_type_hash.value.hex() == ROS_TFMESSAGE_HASH
        # /tf_static and robot_description are latched: a late joiner gets them
        late = TfListener(probe)
        wait_for(lambda: late.static and late.description, timeout=5)
        home_cam = compose(tf.transforms(), "base_link")["camera_optical_frame"]

        # tilt the head 15 deg down: base_link -> head from /tf equals head/pose, same stamp
        pub = probe.node.create_publisher(PoseStamped, "/head/target_pose", 10)
        wait_for(lambda: pub.get_subscription_count() > 0, timeout=5)
        target = PoseStamped()
        target.header.frame_id = "base_link"
        o = target.pose.orientation
        o.x, o.y, o.z, o.w = rpy_to_quaternion(0.0, math.radians(15), 0.0)

        def tilted():
            pub.publish(target)
            poses = probe.get("/head/pose")
            return poses and abs(math.degrees(_pitch(poses[-1][1])) - 15) < 2
        wait_for(tilted, timeout=15, period=0.05)

        def paired():   # the latest /tf's head, once the head/pose of the same sample has arrived too
            with tf.lock:
                last = tf.tf[-1]
            head = [t for t in last.transforms if t.child_frame_id == "head"]
            same = head and [m for _, m in probe.get("/head/pose") if m.header.stamp == head[0].header.stamp]
            return same and (head, same)
        head, same = wait_for(paired, timeout=10, period=0.05)   # (fails: no head/pose with the stamp of a /tf)
        assert len(head) == 1 and head[0].header.frame_id == "base_link"
        p, t = same[-1].pose, head[0].transform
        assert (t.translation.x, t.translation.y, t.translation.z) == pytest.approx(
            (p.position.x, p.position.y, p.position.z), abs=1e-12)
        assert (t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w) == pytest.approx(
            (p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w), abs=1e-12)
        # the composed chain too (what a tf2 lookup base_link -> head gives)
        tree = compose(tf.transforms(), "base_link")
        chain = pose_of(*tree["head"])
        assert chain.pitch == pytest.approx(_pitch(same[-1]), abs=1e-9)
        assert chain.z == pytest.approx(p.position.z, abs=1e-12)
        # the camera moved with the head: it looks down by the head's pitch
        cam_p, cam_r = tree["camera_optical_frame"]
        assert np.linalg.norm(cam_p - home_cam[0]) > 0.005
        view = cam_r[:, 2]   # optical z
        assert math.degrees(math.asin(-view[2])) == pytest.approx(math.degrees(_pitch(same[-1])), abs=0.5)
        assert home_cam[1][:, 2] == pytest.approx([1.0, 0.0, 0.0], abs=0.02)   # near level at start
    finally:
        stop(proc)
        probe.close()


def test_frame_prefix_for_fleets(tmp_path, ros_env):
    probe = RosProbe()
    probe.listen(PoseStamped, "/head/pose", 100)
    tf = TfListener(probe)
    proc, _ = start_node(tmp_path, ros_env, "frame_prefix:=robot1/")
    try:
        wait_for(lambda: probe.get("/head/pose") and tf.tf and tf.static, timeout=15)
        frames = {f for t in tf.transforms() for f in t[:2]}
        assert frames and all(f.startswith("robot1/") for f in frames), frames
        assert "robot1/camera_optical_frame" in frames
        assert probe.get("/head/pose")[-1][1].header.frame_id == "robot1/base_link"
        # head targets in the prefixed frame are taken; another robot's frame is refused with the reason
        pub = probe.node.create_publisher(PoseStamped, "/head/target_pose", 10)
        wait_for(lambda: pub.get_subscription_count() > 0, timeout=5)
        good, bad = PoseStamped(), PoseStamped()
        good.header.frame_id, bad.header.frame_id = "robot1/base_link", "robot2/base_link"
        o = good.pose.orientation
        o.x, o.y, o.z, o.w = rpy_to_quaternion(0.0, math.radians(10), 0.0)

        def tilted():
            pub.publish(good)
            return abs(math.degrees(_pitch(probe.get("/head/pose")[-1][1])) - 10) < 2
        wait_for(tilted, timeout=15, period=0.05)
        # the refusal is published on motors/safety_events (and logged): wait for it, not for a fixed time
        from diagnostic_msgs.msg import DiagnosticStatus

        probe.listen(DiagnosticStatus, "/motors/safety_events", 10)
        wait_for(lambda: (pub.publish(bad), any("robot2/base_link" in m.message
                                                for _, m in probe.get("/motors/safety_events")))[1],
                 timeout=30, period=0.3)
    finally:
        out = stop(proc)
        probe.close()
    assert "head target in frame 'robot2/base_link'; expected 'robot1/base_link'" in out, out[-2000:]


def test_bad_frame_prefix_or_description_fails_fast(tmp_path, ros_env):
    proc, _ = start_node(tmp_path, ros_env, "frame_prefix:=/robot1")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "frame_prefix" in out, out[-1500:]
    bad = tmp_path / "bad.urdf"
    bad.write_text("<robot name='x'><link name='a'/><link name='b'/></robot>")
    proc, _ = start_node(tmp_path, ros_env, f"robot_description_file:={bad}")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "robot_description_file" in out and "one tree" in out, out[-1500:]
