"""The two hot messages' wire form, without rclpy: sensor_msgs/JointState and
geometry_msgs/PoseStamped as the serialized CDR bytes (little endian, the
encapsulation rmw_fastrtps writes) that rclpy's `Publisher.publish(bytes)`
sends and `take_message(..., raw=True)` returns.

motor_node publishes every driver sample (100 a second, to the flight
recorder at least), and web_bridge reads and sends the SDK's 50 Hz stream and
goals: building rclpy message objects and converting them to and from C
costs three times the write itself (docs/benchmarks.md). rclpy reads these
bytes back as the message, and these readers read rclpy's
(test/unit/test_cdr.py, with `rclpy.serialization` as the oracle; padding
bytes are zeros here, unspecified there). Bad bytes raise ValueError.
"""
from __future__ import annotations

import struct

ENCAPSULATION = b"\x00\x01\x00\x00"   # CDR_LE, no options
_U32 = struct.Struct("<I")
_STAMP = struct.Struct("<iI")


class _Writer:
    """Alignment is relative to the payload's start (after the encapsulation)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = [ENCAPSULATION]
        self.n = 0

    def put(self, b: bytes) -> None:
        self.parts.append(b)
        self.n += len(b)

    def align(self, k: int) -> None:
        pad = -self.n % k
        if pad:
            self.put(b"\x00" * pad)

    def u32(self, v: int) -> None:
        self.align(4)
        self.put(_U32.pack(v))

    def string(self, s: str) -> None:
        b = s.encode()
        if b"\x00" in b:
            raise ValueError(f"string {s!r} holds a NUL character")
        self.u32(len(b) + 1)
        self.put(b + b"\x00")

    def header(self, sec: int, nanosec: int, frame_id: str) -> None:
        self.put(_STAMP.pack(sec, nanosec))   # at offset 0: aligned
        self.string(frame_id)

    def doubles(self, values) -> None:
        self.u32(len(values))
        if values:
            self.align(8)
            self.put(struct.pack(f"<{len(values)}d", *values))

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def stamp_of(t: float) -> tuple[int, int]:
    """(sec, nanosec) of a time in seconds, as motor_node stamps its samples."""
    sec = int(t)
    return sec, int((t - sec) * 1e9)


class JointStateEncoder:
    """JointState bytes for one robot's joints: the names' block is encoded
    once per list of names (they rarely change), each sample packs its stamp
    and its arrays."""

    def __init__(self, frame_id: str = "") -> None:
        self.frame_id = frame_id
        self._names: tuple | None = None
        self._head = b""

    def encode(self, sec: int, nanosec: int, names, position, velocity=(), effort=()) -> bytes:
        names = tuple(names)
        if not (len(position) == len(names) and len(velocity) in (0, len(names)) and len(effort) in (0, len(names))):
            raise ValueError(f"{len(names)} names, {len(position)} positions, {len(velocity)} velocities, "
                             f"{len(effort)} efforts")
        if names != self._names:
            w = _Writer()
            w.header(0, 0, self.frame_id)
            w.u32(len(names))
            for n in names:
                w.string(n)
            self._names, self._head = names, w.bytes()
        w = _Writer()
        w.parts = [self._head[:4], _STAMP.pack(sec, nanosec), self._head[12:]]
        w.n = len(self._head) - 4
        w.doubles(position)
        w.doubles(velocity)
        w.doubles(effort)
        return w.bytes()


def joint_state(sec: int, nanosec: int, frame_id: str, names, position, velocity=(), effort=()) -> bytes:
    return JointStateEncoder(frame_id).encode(sec, nanosec, names, position, velocity, effort)


def pose_stamped(sec: int, nanosec: int, frame_id: str, x: float, y: float, z: float,
                 qx: float, qy: float, qz: float, qw: float) -> bytes:
    w = _Writer()
    w.header(sec, nanosec, frame_id)
    w.align(8)
    w.put(struct.pack("<7d", x, y, z, qx, qy, qz, qw))
    return w.bytes()


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        if len(data) < 4 or data[:2] != ENCAPSULATION[:2]:
            raise ValueError(f"{what}: not little-endian CDR ({bytes(data[:4])!r})")
        self.b, self.i, self.what = memoryview(data)[4:], 0, what

    def _need(self, n: int) -> None:
        if self.i + n > len(self.b):
            raise ValueError(f"{self.what}: truncated at byte {self.i + 4} of {len(self.b) + 4}")

    def align(self, k: int) -> None:
        self.i += -self.i % k

    def u32(self) -> int:
        self.align(4)
        self._need(4)
        v = _U32.unpack_from(self.b, self.i)[0]
        self.i += 4
        return v

    def string(self) -> str:
        n = self.u32()
        self._need(n)
        if n == 0 or self.b[self.i + n - 1] != 0:
            raise ValueError(f"{self.what}: string at byte {self.i + 4} is not NUL-terminated")
        s = bytes(self.b[self.i:self.i + n - 1]).decode()
        self.i += n
        return s

    def header(self) -> tuple[int, int, str]:
        self._need(8)
        sec, nsec = _STAMP.unpack_from(self.b, 0)
        self.i = 8
        return sec, nsec, self.string()

    def doubles(self, n: int | None = None) -> tuple:
        if n is None:
            n = self.u32()
        if n == 0:
            return ()
        self.align(8)
        self._need(8 * n)
        v = struct.unpack_from(f"<{n}d", self.b, self.i)
        self.i += 8 * n
        return v


def read_joint_state(data: bytes) -> tuple[tuple[int, int, str], list[str], tuple, tuple, tuple]:
    """((sec, nanosec, frame_id), names, position, velocity, effort)."""
    r = _Reader(data, "JointState")
    header = r.header()
    count = r.u32()
    if count > len(r.b):
        raise ValueError(f"JointState: {count} names in {len(r.b)} bytes")
    names = [r.string() for _ in range(count)]
    return header, names, r.doubles(), r.doubles(), r.doubles()


def read_pose_stamped(data: bytes) -> tuple[tuple[int, int, str], tuple]:
    """((sec, nanosec, frame_id), (x, y, z, qx, qy, qz, qw))."""
    r = _Reader(data, "PoseStamped")
    header = r.header()
    return header, r.doubles(7)
