"""The per-sample messages of motor_node (sensor_msgs/JointState,
geometry_msgs/PoseStamped, tf2_msgs/TFMessage) and the SDK bridge's goals
(JointState, PoseStamped) as serialized CDR bytes, ready for rclpy's
`Publisher.publish(bytes)`.

Why: building a rosidl Python message costs 50-170 us per JointState (every
field setter checks its values), more than the rest of the sample's work;
at 100 Hz it was most of motor_node's Python time. These encoders write the
same bytes with `struct` in a few microseconds.

Format: the classic (XCDR1) little-endian CDR that rmw_fastrtps and
rmw_cyclonedds write: a 4-byte encapsulation header (0x00 0x01 0 0), then
the fields, each primitive aligned to its own size (doubles to 8) counted
from the end of the header; strings as uint32 length (with the NUL) + bytes
+ NUL; sequences as uint32 count + elements. motor_node and web_bridge check once at start
that these bytes equal rclpy's serialize_message of the same message with
the running RMW (ros/fastmsg.py) and publishes message objects otherwise.
No rclpy here: test/unit/test_cdr.py compares with rclpy directly.
"""
from __future__ import annotations

import struct

HEADER = b"\x00\x01\x00\x00"
_U32 = struct.Struct("<I")
_STAMP = struct.Struct("<iI")
_POSE = struct.Struct("<7d")


class Writer:
    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray(HEADER)

    def align(self, n: int) -> None:
        pad = -(len(self.buf) - 4) % n
        if pad:
            self.buf += b"\0" * pad

    def u32(self, v: int) -> None:
        self.align(4)
        self.buf += _U32.pack(v)

    def stamp(self, sec: int, nanosec: int) -> None:
        self.align(4)
        self.buf += _STAMP.pack(sec, nanosec)

    def string(self, s: str | bytes) -> None:
        b = s.encode() if isinstance(s, str) else s
        self.align(4)
        self.buf += _U32.pack(len(b) + 1)
        self.buf += b
        self.buf += b"\0"

    def strings(self, seq) -> None:
        self.u32(len(seq))
        for s in seq:
            self.string(s)

    def doubles(self, values, count: bool = True) -> None:
        """A sequence<double> (count=True) or a fixed group of doubles."""
        n = len(values)
        if count:
            self.u32(n)
        if n:
            self.align(8)
            self.buf += struct.pack(f"<{n}d", *values)

    def bytes(self) -> bytes:
        return bytes(self.buf)


def stamp_of(t: float) -> tuple[int, int]:
    """Seconds (float) -> (sec, nanosec), as motor_node stamps a sample."""
    sec = int(t)
    return sec, int((t - sec) * 1e9)


def joint_state(sec: int, nanosec: int, frame_id: str, names, position, velocity=(), effort=()) -> bytes:
    w = Writer()
    w.stamp(sec, nanosec)
    w.string(frame_id)
    w.strings(names)
    w.doubles(position)
    w.doubles(velocity)
    w.doubles(effort)
    return w.bytes()


def pose_stamped(sec: int, nanosec: int, frame_id: str, xyz, quat) -> bytes:
    """geometry_msgs/PoseStamped: position (x, y, z), orientation (x, y, z, w)."""
    w = Writer()
    w.stamp(sec, nanosec)
    w.string(frame_id)
    w.doubles(tuple(xyz) + tuple(quat), count=False)
    return w.bytes()


class JointStateEncoder:
    """joint_state() for a stream whose names and frame stay the same from
    one sample to the next: the bytes of the constant part are laid out once
    (again when the names change) and each sample only packs its stamp,
    positions and efforts into a copy. No velocity; efforts: one per name,
    or none (a goal)."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.template = b""
        self.at_position = self.at_effort = 0
        self.doubles: struct.Struct | None = None

    def encode(self, sec: int, nanosec: int, frame_id: str, names, position, effort=()) -> bytes:
        n, ne = len(names), len(effort)
        key = (frame_id, tuple(names), ne)
        if key != self.key or len(position) != n:
            if len(position) != n or ne not in (0, n):
                raise ValueError(f"{n} names, {len(position)} positions, {ne} efforts")
            zeros = [0.0] * n
            w = Writer()
            w.stamp(0, 0)
            w.string(frame_id)
            w.strings(names)
            w.doubles(zeros)
            self.at_position = len(w.buf) - 8 * n
            w.doubles(())
            w.doubles(zeros[:ne])
            self.at_effort = len(w.buf) - 8 * ne
            self.template, self.key, self.doubles = bytes(w.buf), key, struct.Struct(f"<{n}d")
        buf = bytearray(self.template)
        _STAMP.pack_into(buf, 4, sec, nanosec)
        if n:
            self.doubles.pack_into(buf, self.at_position, *position)
            if ne:
                self.doubles.pack_into(buf, self.at_effort, *effort)
        return bytes(buf)


class PoseStampedEncoder:
    """pose_stamped() with the frame laid out once."""

    def __init__(self) -> None:
        self.frame: str | None = None
        self.template, self.at = b"", 0

    def encode(self, sec: int, nanosec: int, frame_id: str, xyz, quat) -> bytes:
        if frame_id != self.frame:
            self.template = pose_stamped(0, 0, frame_id, (0.0,) * 3, (0.0,) * 4)
            self.frame, self.at = frame_id, len(self.template) - 56
        buf = bytearray(self.template)
        _STAMP.pack_into(buf, 4, sec, nanosec)
        _POSE.pack_into(buf, self.at, *xyz, *quat)
        return bytes(buf)


def tf_message(sec: int, nanosec: int, transforms) -> bytes:
    """tf2_msgs/TFMessage of (parent, child, (x, y, z), (qx, qy, qz, qw)), one stamp."""
    w = Writer()
    w.u32(len(transforms))
    for parent, child, xyz, quat in transforms:
        w.stamp(sec, nanosec)
        w.string(parent)
        w.string(child)
        w.doubles(tuple(xyz) + tuple(quat), count=False)
    return w.bytes()
