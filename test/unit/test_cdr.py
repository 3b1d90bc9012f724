"""core/cdr.py: motor_node's per-sample messages as CDR bytes must be read
by the RMW (rclpy's deserialize_message) as exactly the message they stand
for, for every string length (alignment) and sample; and ros/fastmsg.py's
start-up check must accept them and refuse bytes that are wrong."""
from __future__ import annotations

import math
import random

import pytest

from reachy_mini.core import cdr

rclpy_serialization = pytest.importorskip("rclpy.serialization")
from geometry_msgs.msg import PoseStamped  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from reachy_mini.ros import fastmsg  # noqa: E402

deserialize, serialize = rclpy_serialization.deserialize_message, rclpy_serialization.serialize_message


@pytest.mark.parametrize("frame", ["", "a", "ab", "abc", "base_link", "robot1/base_link"])
@pytest.mark.parametrize("n", [0, 1, 2, 9])
def test_joint_state_reads_back_as_the_message(frame, n):
    rng = random.Random(n * 31 + len(frame))
    names = ["x" * rng.randint(1, 14) for _ in range(n)]
    pos = [rng.uniform(-math.pi, math.pi) for _ in range(n)]
    eff = [rng.uniform(-1.2, 1.2) for _ in range(n)]
    sec, nsec = rng.randint(0, 2**31 - 1), rng.randint(0, 999_999_999)
    want = fastmsg.joint_state_msg(sec, nsec, names, pos, eff)
    want.header.frame_id = frame
    enc = cdr.JointStateEncoder()
    for _ in range(2):   # the template is laid out once, then reused
        got = deserialize(enc.encode(sec, nsec, frame, names, pos, eff), JointState)
        assert got == want
    assert deserialize(cdr.joint_state(sec, nsec, frame, names, pos, (), eff), JointState) == want
    # and what the RMW itself writes decodes to the same message
    assert deserialize(serialize(want), JointState) == got


def test_joint_state_encoder_follows_changing_names_and_values():
    enc = cdr.JointStateEncoder()
    for k, names in enumerate((["a", "b"], ["a", "b"], ["a", "b", "ccc"], ["a"], [])):
        pos = [0.1 * k + i for i in range(len(names))]
        eff = [-x for x in pos]
        got = deserialize(enc.encode(k, k, "", names, pos, eff), JointState)
        assert got == fastmsg.joint_state_msg(k, k, names, pos, eff)
    goal = deserialize(enc.encode(1, 2, "", ["a", "bb"], [0.5, -0.5]), JointState)   # a goal: no effort
    assert goal == fastmsg.joint_state_msg(1, 2, ["a", "bb"], [0.5, -0.5], [])
    with pytest.raises(ValueError, match="2 names, 1 positions"):
        enc.encode(0, 0, "", ["a", "b"], [0.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="1 efforts"):
        enc.encode(0, 0, "", ["a", "b"], [0.0, 1.0], [0.0])


@pytest.mark.parametrize("frame", ["", "base_link", "r1/base_link", "abcd"])
def test_pose_stamped_reads_back_as_the_message(frame):
    enc = cdr.PoseStampedEncoder()
    for k in range(3):
        xyz, q = (0.01 * k, -0.02, 0.3 + k), (0.1, 0.2 * k, 0.3, 0.9)
        got = deserialize(enc.encode(7 + k, 123 * k, frame, xyz, q), PoseStamped)
        assert got == fastmsg.pose_stamped_msg(7 + k, 123 * k, frame, xyz, q)


def test_tf_message_reads_back_as_the_message():
    tfs = [("base_link", "body_link", (0.0, 0.0, 0.1), (0.0, 0.0, 0.38, 0.92)),
           ("p", "cc", (1.0, 2.0, 3.0), (0.0, 0.0, 0.0, 1.0)), ("xyz", "head", (0.5, -0.5, 0.25), (1.0, 0, 0, 0))]
    for n in range(len(tfs) + 1):
        got = deserialize(cdr.tf_message(3, 44, tfs[:n]), TFMessage)
        assert got == fastmsg.tf_message_msg(3, 44, tfs[:n])


def test_stamp_of_matches_the_old_conversion():
    for t in (0.0, 1.5, 1765000000.123456789, 12.999999999):
        sec, nsec = cdr.stamp_of(t)
        assert sec == int(t) and nsec == int((t - int(t)) * 1e9) and 0 <= nsec < 1_000_000_000


def test_the_start_up_check_accepts_these_bytes_and_refuses_wrong_ones(monkeypatch):
    assert fastmsg.raw_publishing_ok()
    warnings = []

    class Log:
        def warning(self, msg):
            warnings.append(msg)

    real = cdr.JointStateEncoder.encode
    # a wrong layout (e.g. an RMW without classic CDR): the doubles one byte off
    monkeypatch.setattr(cdr.JointStateEncoder, "encode",
                        lambda self, *a: real(self, *a)[:-9] + b"\x01" + real(self, *a)[-9:-1])
    assert not fastmsg.raw_publishing_ok(Log())
    assert warnings and "JointState" in warnings[0] and "publishing rosidl messages" in warnings[0]
