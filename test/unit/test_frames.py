"""The URDF (urdf/reachy_mini.urdf) and core/frames: the robot's frame tree,
validated by a URDF parser from PyPI, and the transforms built from it."""
from __future__ import annotations

import math

import numpy as np
import pytest

from reachy_mini.common.paths import urdf_path
from reachy_mini.core.frames import RobotFrames, compose, pose_of
from reachy_mini.core.head import Target, rpy_to_matrix

FRAMES = {"base_link", "base", "body", "head", "camera_link", "camera_optical_frame", "mic_array", "left_antenna",
          "right_antenna"}


def _urdf() -> str:
    with open(urdf_path()) as f:
        return f.read()


def test_urdf_validates_and_weighs_what_the_vendor_says():
    urdf = pytest.importorskip("urdf_parser_py.urdf")
    robot = urdf.URDF.from_xml_string(_urdf())
    assert {l.name for l in robot.links} == FRAMES
    assert robot.get_root() == "base_link"
    # the motors that move frames are joints of the same names
    assert {j.name for j in robot.joints if j.type == "revolute"} == {"body_rotation", "left_antenna", "right_antenna"}
    assert sum(l.inertial.mass for l in robot.links if l.inertial) == pytest.approx(1.475, abs=1e-6)
    for l in robot.links:
        if l.inertial:
            i = l.inertial.inertia
            m = np.array([[i.ixx, i.ixy, i.ixz], [i.ixy, i.iyy, i.iyz], [i.ixz, i.iyz, i.izz]])
            ev = np.linalg.eigvalsh(m)
            assert ev.min() > 0, l.name   # positive definite, and physically possible (triangle inequality)
            assert ev[0] + ev[1] >= ev[2] * (1 - 1e-6), l.name


def test_static_and_moving_transforms_cover_every_frame():
    f = RobotFrames(_urdf())
    assert f.root == "base_link"
    static = {t[1] for t in f.static_transforms()}
    moving = {t[1] for t in f.dynamic_transforms({"body_rotation": 0.1, "left_antenna": 0.2, "right_antenna": -0.2},
                                                 Target())}
    assert static | moving == FRAMES - {"base_link"} and not static & moving
    assert moving == {"body", "head", "left_antenna", "right_antenna"}
    # a joint without a position, or no head pose, is left out (never a made-up value)
    assert {t[1] for t in f.dynamic_transforms({"body_rotation": 0.0}, None)} == {"body"}


def test_camera_moves_with_the_head_and_the_optical_frame_is_rep103():
    f = RobotFrames(_urdf())
    pitch = math.radians(20)
    tree = compose(f.static_transforms() + f.dynamic_transforms({}, Target(0.0, 0.0, 0.01, 0.0, pitch, 0.3)),
                   "base_link")
    head_p, head_r = tree["head"]
    assert pose_of(head_p, head_r).pitch == pytest.approx(pitch) and head_p[2] == pytest.approx(0.01)
    cam_p, cam_r = tree["camera_optical_frame"]
    # optical z (the view direction) is the head's x; optical x is the head's -y (right), optical y its -z (down)
    np.testing.assert_allclose(cam_r[:, 2], head_r[:, 0], atol=1e-6)
    np.testing.assert_allclose(cam_r[:, 0], -head_r[:, 1], atol=1e-6)
    np.testing.assert_allclose(cam_r[:, 1], -head_r[:, 2], atol=1e-6)
    home = compose(f.static_transforms() + f.dynamic_transforms({}, Target()), "base_link")["camera_optical_frame"]
    assert np.linalg.norm(cam_p - home[0]) > 0.01
    np.testing.assert_allclose(cam_p, head_p + head_r @ np.array([0.062, 0.0, 0.04]), atol=1e-9)


def test_body_yaw_turns_the_body():
    f = RobotFrames(_urdf())
    tree = compose(f.static_transforms() + f.dynamic_transforms({"body_rotation": 0.5}, None), "base_link")
    np.testing.assert_allclose(tree["body"][1], rpy_to_matrix(0, 0, 0.5), atol=1e-9)
    np.testing.assert_allclose(tree["body"][0], [0, 0, -0.177 + 0.03], atol=1e-9)


@pytest.mark.parametrize("xml, why", [
    ("<robot", "not XML"),
    ("<model/>", "expected <robot>"),
    ('<robot name="r"><link name="a"/><link name="b"/></robot>', "one tree"),
    ('<robot name="r"><link name="a"/><link name="b"/><joint name="j" type="prismatic"><parent link="a"/>'
     '<child link="b"/></joint></robot>', "not supported"),
    ('<robot name="r"><link name="a"/><link name="b"/><joint name="j" type="fixed"><parent link="a"/>'
     '<child link="b"/><origin xyz="0 nan 0"/></joint></robot>', "origin xyz"),
])
def test_a_bad_description_is_refused_with_the_reason(xml, why):
    with pytest.raises(ValueError, match=why):
        RobotFrames(xml)


def test_the_urdf_places_the_head_from_the_vendors_geometry():
    """base_link is the head's home; the kinematics' world (the `base` frame)
    lies head_z_offset below it, as in the vendor's kinematics_data.json; the
    body (which holds the Stewart motors) reaches from the base to just
    under the head's home, above the motors' axes."""
    from reachy_mini.core.head import HeadKinematics, load_geometry

    g = load_geometry()
    f = RobotFrames(_urdf())
    tree = compose(f.static_transforms() + f.dynamic_transforms({"body_rotation": 0.0}, Target()), "base_link")
    np.testing.assert_allclose(tree["base"][0], [0, 0, -g.head_z_offset], atol=1e-9)
    np.testing.assert_allclose(tree["head"][0], [0, 0, 0], atol=1e-9)
    motors_z = [float(np.linalg.inv(b.t_motor_world)[2, 3]) for b in g.branches]
    assert max(motors_z) - min(motors_z) < 1e-6 and 0.03 < motors_z[0] < g.head_z_offset
    # the home pose read back through the forward kinematics is base_link itself (head/pose, /tf)
    k = HeadKinematics(g)
    p = k.fk(k.ik(Target()), iterations=10)
    assert max(abs(v) for v in (p.x, p.y, p.z, p.roll, p.pitch, p.yaw)) < 1e-6


def test_the_urdf_joint_velocities_are_the_driver_limits():
    """The URDF's <limit velocity> of the motors it names is config/motors.yaml's max_velocity_rad_s."""
    urdf = pytest.importorskip("urdf_parser_py.urdf")
    from reachy_mini.core.motors.map import MotorMap

    mm = MotorMap.load()
    robot = urdf.URDF.from_xml_string(_urdf())
    for j in robot.joints:
        if j.type == "revolute":
            assert j.limit.velocity == pytest.approx(mm.by_name[j.name].max_velocity_rad_s), j.name
