"""The flight recorder's rules (plain Python, no rclpy): what is recorded,
the rolling buffer, the snapshot windows, the file names, the disk quota and
retention, and the MCAP file itself.

- ``RingBuffer``: the last ``max_age_s`` seconds of serialized messages (CDR
  bytes as they came off the wire), never more than ``max_bytes``.
- ``SnapshotPlanner``: a trigger (an ERROR incident, a request) opens a
  snapshot covering ``before_s`` before and ``after_s`` after it; triggers
  while one is open join it (the same file; its end moves to the new
  trigger + ``after_s``, at most ``max_span_s`` after its start), so an
  incident storm is one file, not a flood.
- ``cleanup()``: which files to delete for the retention age and the quota.
- ``write_mcap()``: writes a snapshot with the ``mcap`` library in the
  ``ros2`` profile (``cdr`` messages, ``ros2msg`` schemas), as rosbag2 does,
  so that ``ros2 bag info``, Foxglove and ``rosbags`` read it.
"""
from __future__ import annotations

import collections
import os
import re
import time
from dataclasses import dataclass, field

# What is recorded: (topic, type). The diagnostics topics are absolute (as
# health_node publishes them); the others are relative to the namespace.
# The recorder's reader node (ros/recorder.py), never spun; motor_node
# publishes in bursts while it is the only subscriber (core/motors/sampling.py).
RECORDER_NODE = "health_node_recorder"
TOPICS: tuple[tuple[str, str], ...] = (
    ("/diagnostics_agg", "diagnostic_msgs/msg/DiagnosticArray"),
    ("/diagnostics_toplevel_state", "diagnostic_msgs/msg/DiagnosticStatus"),
    ("joint_states", "sensor_msgs/msg/JointState"),
    ("head/pose", "geometry_msgs/msg/PoseStamped"),
    ("motors/goal", "sensor_msgs/msg/JointState"),
    ("motors/trajectory", "trajectory_msgs/msg/JointTrajectory"),
    ("head/target_pose", "geometry_msgs/msg/PoseStamped"),
)
# The reliability a recorded topic is expected to have while it has no
# publisher yet (ros/qos.py: goals, joint states and diagnostics are
# RELIABLE); the recorder adapts to the real publishers (adapt_reliability).
EXPECTED_RELIABLE = True

SUFFIX = ".mcap"
SNAPSHOT_DIR = "snapshots"   # under the robot's data directory, beside the incident database
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,150}\.mcap$")


def adapt_reliability(publishers: list[bool], current: bool | None = None) -> bool:
    """Whether a recorder's subscription is RELIABLE, given the reliability
    each publisher of the topic offers (True = RELIABLE), as rosbag2's
    adaptive QoS: RELIABLE only when every publisher offers it (a RELIABLE
    reader does not match a BEST_EFFORT writer), BEST_EFFORT as soon as one
    does not. With no publisher: keep the current choice (nothing to adapt
    to), or the expected one at the start."""
    if not publishers:
        return EXPECTED_RELIABLE if current is None else current
    return all(publishers)


class RingBuffer:
    """(topic, log time ns, publish time ns, bytes) in arrival order, bounded
    by age and by bytes (the oldest go first)."""

    def __init__(self, max_bytes: int, max_age_s: float) -> None:
        self.max_bytes = int(max_bytes)
        self.max_age_ns = int(max_age_s * 1e9)
        self.items: collections.deque = collections.deque()
        self.bytes = 0
        self.added = self.evicted = 0

    def add(self, topic: str, log_ns: int, publish_ns: int, data: bytes) -> None:
        self.items.append((topic, log_ns, publish_ns, data))
        self.bytes += len(data)
        self.added += 1
        self.trim(log_ns)

    def trim(self, now_ns: int) -> None:
        cut = now_ns - self.max_age_ns
        items = self.items
        while items and (self.bytes > self.max_bytes or items[0][1] < cut):
            self.bytes -= len(items.popleft()[3])
            self.evicted += 1

    def window(self, t0_ns: int, t1_ns: int) -> list[tuple[str, int, int, bytes]]:
        return [m for m in self.items if t0_ns <= m[1] <= t1_ns]

    def covered_s(self) -> float:
        return (self.items[-1][1] - self.items[0][1]) / 1e9 if len(self.items) > 1 else 0.0


def snapshot_dir(data_dir: str) -> str:
    return os.path.join(data_dir, SNAPSHOT_DIR)


def snapshot_name(t_ns: int, reason: str) -> str:
    """snapshot_20261202T031502.250Z_<reason>.mcap (UTC; the reason reduced
    to a safe slug, e.g. the incident's item)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(t_ns / 1e9)) + f".{(t_ns // 1_000_000) % 1000:03d}Z"
    slug = re.sub(r"[^A-Za-z0-9]+", "_", reason).strip("_")[:60] or "request"
    return f"snapshot_{stamp}_{slug}{SUFFIX}"


@dataclass
class Snapshot:
    name: str
    reason: str
    start_ns: int
    end_ns: int
    triggers: int = 1


@dataclass
class SnapshotPlanner:
    before_s: float = 30.0
    after_s: float = 10.0
    max_span_s: float = 60.0
    pending: Snapshot | None = None
    done: list = field(default_factory=list)

    def trigger(self, now_ns: int, reason: str) -> str:
        """The file that will cover `now_ns`: the open snapshot's, or a new one."""
        p = self.pending
        if p is not None and now_ns <= p.end_ns:
            p.end_ns = min(max(p.end_ns, now_ns + int(self.after_s * 1e9)), p.start_ns + int(self.max_span_s * 1e9))
            p.triggers += 1
            return p.name
        if p is not None:   # overdue and not yet taken: it stays, this one waits its turn
            self.done.append(p)
        self.pending = Snapshot(snapshot_name(now_ns, reason), reason, now_ns - int(self.before_s * 1e9),
                                now_ns + int(self.after_s * 1e9))
        return self.pending.name

    def due(self, now_ns: int) -> list[Snapshot]:
        """Snapshots whose window has closed (to be written now), oldest first."""
        out, self.done = self.done, []
        if self.pending is not None and now_ns > self.pending.end_ns:
            out.append(self.pending)
            self.pending = None
        return out

    def buffer_s(self) -> float:
        """How much history the ring must hold for a full window (a joined one
        spans up to max_span_s), with a margin for the writer's tick."""
        return max(self.before_s + self.after_s, self.max_span_s) + 5.0


def cleanup(files: list[tuple[str, int, float]], quota_bytes: int, retention_s: float, now: float,
            incoming_bytes: int = 0) -> list[str]:
    """files: (name, size, mtime). The names to delete, oldest first: those
    older than the retention, then the oldest until the rest plus the
    incoming file fit in the quota."""
    old = sorted(files, key=lambda f: f[2])
    gone = [f[0] for f in old if now - f[2] > retention_s]
    keep = [f for f in old if f[0] not in gone]
    total = sum(f[1] for f in keep) + incoming_bytes
    while keep and total > quota_bytes:
        f = keep.pop(0)
        gone.append(f[0])
        total -= f[1]
    return gone


def list_snapshots(directory: str) -> list[tuple[str, int, float]]:
    """(name, size, mtime) of the finished snapshot files in `directory`."""
    out = []
    try:
        with os.scandir(directory) as it:
            for e in it:
                if NAME_RE.match(e.name) and e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    out.append((e.name, st.st_size, st.st_mtime))
    except OSError:   # no directory (yet), not a directory, unreadable: no snapshots to count
        pass
    return out


# ------------------------------------------------------------- definitions
PRIMITIVES = {"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
              "uint32", "int64", "uint64", "string", "wstring"}
SEPARATOR = "=" * 80


def _base(field_type: str, pkg: str) -> str | None:
    t = re.sub(r"\[.*\]$", "", field_type)
    t = re.sub(r"<=\d+$", "", t)   # bounded strings
    if t in PRIMITIVES:
        return None
    if t == "Header":
        return "std_msgs/msg/Header"
    if "/" not in t:
        return f"{pkg}/msg/{t}"
    p, name = t.split("/")[0], t.split("/")[-1]
    return f"{p}/msg/{name}"


def message_definition(typename: str, read) -> str:
    """The ros2msg text of `typename` (e.g. "sensor_msgs/msg/JointState") as
    rosbag2 stores it: its .msg, then each type it uses, once, after a line
    of '=' and "MSG: pkg/Type". `read(typename)` returns a .msg file's text."""
    main = read(typename)
    seen: list[str] = []

    def deps(tn: str, text: str) -> None:
        pkg = tn.split("/")[0]
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            b = _base(line.split()[0], pkg)   # constants are of primitive types
            if b and b not in seen:
                seen.append(b)
                deps(b, read(b))

    deps(typename, main)
    parts = [main.rstrip("\n")]
    for tn in seen:
        p, _, n = tn.split("/")
        parts.append(f"{SEPARATOR}\nMSG: {p}/{n}\n{read(tn).rstrip(chr(10))}")
    return "\n".join(parts) + "\n"


def msg_file_reader(share_dirs: list[str]):
    """read(typename) over the share/<pkg>/msg/<Type>.msg files of the
    installed message packages (the ROS wheels ship them)."""
    def read(typename: str) -> str:
        pkg, _, name = typename.split("/")
        for d in share_dirs:
            path = os.path.join(d, pkg, "msg", name + ".msg")
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    return f.read()
        raise FileNotFoundError(f"no definition of {typename} in {share_dirs}")
    return read


# ------------------------------------------------------------------ writing
def write_mcap(path: str, messages, topics: dict[str, str], definitions: dict[str, str]) -> int:
    """Writes `messages` [(topic, log ns, publish ns, cdr bytes)] to `path`
    (via a .part file renamed at the end: a reader never sees half a file).
    topics: topic -> type; definitions: type -> ros2msg text. Returns the
    file size. Raises OSError (disk full, unwritable), leaving no file."""
    from mcap.writer import CompressionType, Writer

    part = path + ".part"
    try:
        with open(part, "wb") as f:
            w = Writer(f, compression=CompressionType.ZSTD if _has_zstd() else CompressionType.NONE)
            w.start(profile="ros2", library="reachy_mini flight recorder")
            schemas, channels, seq = {}, {}, collections.Counter()
            for topic, typ in topics.items():
                if typ not in schemas:
                    schemas[typ] = w.register_schema(name=typ, encoding="ros2msg",
                                                      data=definitions[typ].encode())
                channels[topic] = w.register_channel(topic=topic, message_encoding="cdr", schema_id=schemas[typ])
            for topic, log_ns, pub_ns, data in messages:
                seq[topic] += 1
                w.add_message(channel_id=channels[topic], log_time=log_ns, publish_time=pub_ns or log_ns,
                              data=data, sequence=seq[topic])
            w.finish()
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, path)
        return os.path.getsize(path)
    except BaseException:
        try:
            os.unlink(part)
        except OSError:
            pass
        raise


def _has_zstd() -> bool:
    try:
        import zstandard  # noqa: F401
        return True
    except ImportError:
        return False


# ------------------------------------------------------------------ reading
# Which value of an item explains its alarm: a word of the message -> a word
# of the value's key (the first numeric key that contains it).
HINTS = (("overheat", "temperature"), ("temperature", "temperature"), ("hot", "temperature"),
         ("voltage", "voltage"), ("current", "current"), ("overload", "current"), ("cpu", "cpu"),
         ("memory", "memory"), ("disk", "disk"), ("rate", "rate"), ("fps", "fps"), ("stale", "age"))


def _num(v) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if x == x and abs(x) != float("inf") else None


def pick_key(samples: list[dict[str, str]], message: str) -> str | None:
    """The value that explains an alarm: the numeric key named by a hint of
    the message, else the first numeric key that varies, else the first."""
    keys = [k for k in (samples[-1] if samples else {}) if any(_num(s.get(k)) is not None for s in samples)]
    low = message.lower()
    for word, key_word in HINTS:
        if word in low:
            for k in keys:
                if key_word in k.lower():
                    return k
    for k in keys:
        if len({s.get(k) for s in samples}) > 1:
            return k
    return keys[0] if keys else None


def cause_of(item: str, series: dict[str, list]) -> str:
    """The leaf item that explains an incident of `item`: itself for a leaf;
    for a group (or the top level, "toplevel_state") the descendant leaf that
    reached the highest level, the first to reach it on a tie. `series`:
    name -> [(t, level, values, message)] in time order."""
    names = list(series)
    below = names if item == "toplevel_state" else [n for n in names if n.startswith(item + "/")]
    leaves = [n for n in below if not any(o.startswith(n + "/") for o in below)]
    if not leaves:
        return item

    def rank(n):
        worst = max(lv for _, lv, _, _ in series[n])
        first = next(t for t, lv, _, _ in series[n] if lv == worst)
        return (-worst, first)
    return min(leaves, key=rank)


def read_plot(path: str, item: str, message: str = "") -> dict:
    """The series of a snapshot for the incident page: the triggering value
    and level of the leaf item that explains the incident (cause_of: a group's
    or the top level's incident is plotted through its cause), and the top
    level, one point per /diagnostics_agg and /diagnostics_toplevel_state
    message. Times are epoch seconds."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    series: dict[str, list] = {}
    top_pts = []
    start = end = None
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        summ = reader.get_summary()
        if summ is not None and summ.statistics is not None:
            start, end = summ.statistics.message_start_time / 1e9, summ.statistics.message_end_time / 1e9
        for _schema, channel, msg, ros in reader.iter_decoded_messages(
                topics=["/diagnostics_agg", "/diagnostics_toplevel_state"]):
            t = msg.log_time / 1e9
            if channel.topic == "/diagnostics_toplevel_state":
                top_pts.append([t, _level(ros.level)])
                continue
            for st in ros.status:
                series.setdefault(st.name, []).append([t, _level(st.level), {kv.key: kv.value for kv in st.values},
                                                       st.message])
    cause = cause_of(item, series)
    item_pts = series.get(cause, [])
    samples = [v for _, _, v, _ in item_pts]
    if cause != item:   # the cause's own words name its value, not the group's summary
        message = next((m for _, lv, _, m in reversed(item_pts) if lv == max(x[1] for x in item_pts)), "")
    key = pick_key(samples, message or (item_pts[-1][3] if item_pts else ""))
    return {"item": cause, "incident_item": item, "key": key, "start": start, "end": end,
            "value": [[t, _num(v.get(key))] for t, _, v, _ in item_pts if key and _num(v.get(key)) is not None],
            "level": [[t, lv] for t, lv, _, _ in item_pts], "top_level": top_pts}


def _level(b) -> int:
    return b[0] if isinstance(b, (bytes, bytearray)) else int(b)
