"""core/cdr.py against rclpy's own serializer (the oracle) over the paddings
that strings of every length produce: rclpy reads our bytes back as the
message, and our readers read rclpy's bytes (which are not ours byte for
byte: rclpy leaves whatever was in its buffer in the padding, and may end
with a few spare bytes); bad bytes."""
from __future__ import annotations

import random

import pytest

from reachy_mini.core import cdr

rclpy_ser = pytest.importorskip("rclpy.serialization")
JointState = pytest.importorskip("sensor_msgs.msg").JointState
PoseStamped = pytest.importorskip("geometry_msgs.msg").PoseStamped

NAMES = ["body_rotation"] + [f"stewart_{i}" for i in range(1, 7)] + ["right_antenna", "left_antenna"]


class _js:
    """A JointState compared with CDR bytes as rclpy reads them."""

    def __init__(self, sec, nsec, frame, names, pos, vel, eff) -> None:
        m = self.msg = JointState(name=list(names), position=list(pos), velocity=list(vel), effort=list(eff))
        m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id = sec, nsec, frame

    def __eq__(self, raw) -> bool:
        if rclpy_ser.deserialize_message(raw, JointState) != self.msg:
            return False
        m, (sec, nsec, frame), names, pos, vel, eff = self.msg, *cdr.read_joint_state(self.raw())
        return ((sec, nsec, frame) == (m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id)
                and names == m.name and list(pos) == list(m.position) and list(vel) == list(m.velocity)
                and list(eff) == list(m.effort))

    def raw(self) -> bytes:
        return rclpy_ser.serialize_message(self.msg)


def test_joint_state_bytes_are_rclpys_for_every_padding():
    rng = random.Random(7)
    enc = cdr.JointStateEncoder()
    for frame in ["", "a", "ab", "abc", "base_link", "robot1/base_link"]:
        enc = cdr.JointStateEncoder(frame)
        for k in range(12):   # names of every length mod 8, counts 0..9
            names = [("j" * (1 + (k + i) % 9)) for i in range(k % 10)]
            pos = [rng.uniform(-3, 3) for _ in names]
            vel = [] if k % 3 else [rng.uniform(-1, 1) for _ in names]
            eff = [] if k % 2 else [rng.uniform(-1, 1) for _ in names]
            sec, nsec = rng.randrange(-2**31, 2**31), rng.randrange(2**32)
            assert enc.encode(sec, nsec, names, pos, vel, eff) == _js(sec, nsec, frame, names, pos, vel, eff)
            assert cdr.joint_state(sec, nsec, frame, names, pos, vel, eff) == _js(sec, nsec, frame, names, pos,
                                                                                 vel, eff)


def test_the_encoder_follows_a_change_of_names():
    enc = cdr.JointStateEncoder()
    assert enc.encode(1, 2, NAMES, [0.5] * 9, (), [0.1] * 9) == _js(1, 2, "", NAMES, [0.5] * 9, [], [0.1] * 9)
    assert enc.encode(3, 4, NAMES[:2], [0.5, 0.2]) == _js(3, 4, "", NAMES[:2], [0.5, 0.2], [], [])
    assert enc.encode(5, 6, NAMES, [0.0] * 9) == _js(5, 6, "", NAMES, [0.0] * 9, [], [])


@pytest.mark.parametrize("frame", ["", "base_link", "r/base_link", "abcdefg"])
def test_pose_stamped_bytes_are_rclpys(frame):
    m = PoseStamped()
    m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id = 17, 999_999_999, frame
    p, q = m.pose.position, m.pose.orientation
    p.x, p.y, p.z, q.x, q.y, q.z, q.w = 0.01, -0.02, 0.177, 0.1, 0.2, 0.3, 0.927
    got = cdr.pose_stamped(17, 999_999_999, frame, 0.01, -0.02, 0.177, 0.1, 0.2, 0.3, 0.927)
    assert rclpy_ser.deserialize_message(got, PoseStamped) == m
    assert cdr.read_pose_stamped(rclpy_ser.serialize_message(m)) == cdr.read_pose_stamped(got)
    assert cdr.read_pose_stamped(got) == ((17, 999_999_999, frame), (0.01, -0.02, 0.177, 0.1, 0.2, 0.3, 0.927))


def test_reading_rclpys_joint_state():
    raw = _js(5, 6, "base_link", NAMES, [0.1 * i for i in range(9)], [], [0.2] * 9).raw()
    header, names, pos, vel, eff = cdr.read_joint_state(raw)
    assert header == (5, 6, "base_link") and names == NAMES
    assert pos == pytest.approx([0.1 * i for i in range(9)]) and vel == () and eff == (0.2,) * 9


def test_bad_bytes_raise_value_error_naming_the_message():
    good = cdr.joint_state(1, 2, "", NAMES, [0.0] * 9)
    for bad in (b"", b"\x01\x01\x00\x00" + good[4:], good[:30], good[:-8], b"\x00\x01\x00\x00" + b"\xff" * 20):
        with pytest.raises(ValueError, match="JointState"):
            cdr.read_joint_state(bad)
    with pytest.raises(ValueError, match="PoseStamped"):
        cdr.read_pose_stamped(cdr.pose_stamped(1, 2, "", *[0.0] * 7)[:-1])
    with pytest.raises(ValueError, match="3 names, 2 positions"):
        cdr.joint_state(1, 2, "", ["a", "b", "c"], [0.0, 1.0])
    with pytest.raises(ValueError, match="NUL"):
        cdr.joint_state(1, 2, "", ["a\x00b"], [0.0])


def test_stamp_of_matches_motor_nodes_stamps():
    assert cdr.stamp_of(12.25) == (12, 250_000_000)
    assert cdr.stamp_of(0.0) == (0, 0)


def test_web_bridge_reads_a_big_endian_publishers_bytes_through_rclpy():
    """core/cdr reads little-endian CDR only; ros/sdk.py's reader falls back
    to rclpy for the rest (a big-endian host's publisher)."""
    import struct

    from reachy_mini.ros.sdk import _decoded

    def be_joint_state(names, pos) -> bytes:
        out = bytearray(struct.pack(">iI", 3, 4) + struct.pack(">I", 1) + b"\x00")   # stamp, frame_id ""
        pad = lambda k: out.extend(b"\x00" * (-len(out) % k))   # noqa: E731
        pad(4)
        out += struct.pack(">I", len(names))
        for n in names:
            pad(4)
            out += struct.pack(">I", len(n) + 1) + n.encode() + b"\x00"
        pad(4)
        out += struct.pack(">I", len(pos))
        pad(8)
        out += struct.pack(f">{len(pos)}d", *pos)
        pad(4)
        out += struct.pack(">II", 0, 0)   # velocity, effort: empty
        return b"\x00\x00\x00\x00" + bytes(out)   # CDR_BE

    raw = be_joint_state(NAMES[:3], [0.25, -0.5, 1.0])
    with pytest.raises(ValueError, match="not little-endian"):
        cdr.read_joint_state(raw)
    _, names, pos, _, _ = _decoded(raw, JointState, cdr.read_joint_state)
    assert names == NAMES[:3] and list(pos) == [0.25, -0.5, 1.0]
    _, pose = _decoded(cdr.pose_stamped(1, 2, "", 0.1, 0.2, 0.3, 0.0, 0.0, 0.0, 1.0), PoseStamped,
                       cdr.read_pose_stamped)
    assert pose == (0.1, 0.2, 0.3, 0.0, 0.0, 0.0, 1.0)
