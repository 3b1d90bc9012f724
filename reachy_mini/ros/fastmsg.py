"""motor_node's per-sample messages: the check that core/cdr.py's bytes are
what the running RMW reads (once, at start), and the rosidl message
builders used when they are not (an RMW that does not speak classic CDR)."""
from __future__ import annotations

from geometry_msgs.msg import PoseStamped, TransformStamped
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState
from tf2_msgs.msg import TFMessage

from reachy_mini.core import cdr


def joint_state_msg(sec: int, nanosec: int, names, positions, efforts) -> JointState:
    m = JointState(name=list(names), position=list(positions), effort=list(efforts))
    m.header.stamp.sec, m.header.stamp.nanosec = sec, nanosec
    return m


def pose_stamped_msg(sec: int, nanosec: int, frame_id: str, xyz, quat) -> PoseStamped:
    m = PoseStamped()
    m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id = sec, nanosec, frame_id
    m.pose.position.x, m.pose.position.y, m.pose.position.z = (float(v) for v in xyz)
    o = m.pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in quat)
    return m


def tf_message_msg(sec: int, nanosec: int, transforms) -> TFMessage:
    out = []
    for parent, child, xyz, quat in transforms:
        t = TransformStamped()
        t.header.stamp.sec, t.header.stamp.nanosec, t.header.frame_id, t.child_frame_id = sec, nanosec, parent, child
        v, q = t.transform.translation, t.transform.rotation
        v.x, v.y, v.z = (float(a) for a in xyz)
        q.x, q.y, q.z, q.w = (float(a) for a in quat)
        out.append(t)
    return TFMessage(transforms=out)


def raw_publishing_ok(log=None) -> bool:
    """True when the RMW deserializes core/cdr.py's bytes into the messages
    they stand for (JointState, PoseStamped, TFMessage, odd string lengths
    for the alignment); otherwise logs why and the caller publishes messages."""
    names, pos, eff = ["body_rotation", "stewart_1", "ab"], [0.25, -1.5, 3.0], [0.0, 0.125, -2.0]
    xyz, quat = (0.01, -0.02, 0.3), (0.1, 0.2, 0.3, 0.9)
    tfs = [("base_link", "head", xyz, quat), ("a", "bc", (1.0, 2.0, 3.0), (0.0, 0.0, 0.0, 1.0))]
    cases = [
        (cdr.JointStateEncoder().encode(12, 345, "", names, pos, eff), JointState,
         joint_state_msg(12, 345, names, pos, eff)),
        (cdr.PoseStampedEncoder().encode(12, 345, "base_link", xyz, quat), PoseStamped,
         pose_stamped_msg(12, 345, "base_link", xyz, quat)),
        (cdr.tf_message(12, 345, tfs), TFMessage, tf_message_msg(12, 345, tfs)),
    ]
    for data, typ, want in cases:
        try:
            got = deserialize_message(data, typ)
        except Exception as e:  # noqa: BLE001 - any failure means: publish messages
            got = e
        if got != want:
            if log is not None:
                log.warning(f"the RMW does not read core/cdr.py's {typ.__name__} as written ({got!r}); "
                            "publishing rosidl messages (more CPU per sample)")
            return False
    return True
