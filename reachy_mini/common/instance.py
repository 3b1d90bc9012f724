"""One stack per robot per machine: instance locks (fcntl.flock) in the
private runtime directory.

- reachy-mini-bringup holds the robot's lock, `reachy_mini[.<ns>].lock`, and
  the lock of each node it starts, `reachy_mini[.<ns>]-<node>.lock`, for its
  whole life (across respawns); its children know (REACHY_MINI_LOCKED_BY =
  the supervisor's pid, checked against their parent) and take none: each
  inherits its own lock's descriptor instead (common/lifeline.py), so the
  lock is held while the supervisor or the node lives, and the node dies
  with the supervisor.
- Under ros2 launch (or ros2 run) each node's process takes its own node
  lock before it touches anything shared (simulated bus, heartbeat).

So a second start in the same namespace, by either starter, finds a lock
held and stops at once with EXIT_ALREADY_RUNNING and "reachy_mini is already
running in namespace '' (pid N, started ...); use --namespace or stop it",
and the first stack is untouched. The kernel drops a lock when its holder
dies: no stale lock files to clean up.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import time

from reachy_mini.common.node_table import EXIT_ALREADY_RUNNING, EXIT_UNSAFE_RUNTIME_DIR
from reachy_mini.common.paths import UnsafeRuntimeDir, check_private, lock_file, robot_key

LOCKED_BY_ENV = "REACHY_MINI_LOCKED_BY"


class AlreadyRunning(RuntimeError):
    """The lock is held by another process; the message names it."""


def _describe(info: dict) -> str:
    pid = info.get("pid", "?")
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) \
        else "at an unknown time"
    what = f", {info['what']}" if info.get("what") else ""
    return f"pid {pid}, started {when}{what}"


class InstanceLock:
    def __init__(self, namespace: str | None, node: str | None = None, what: str = "") -> None:
        self.namespace = "/" + robot_key(namespace)
        self.path = lock_file(namespace, node)
        self.what = what
        self.fd: int | None = None

    def acquire(self) -> "InstanceLock":
        """Raises AlreadyRunning, or UnsafeRuntimeDir for a lock file that is
        not ours."""
        check_private(self.path, "instance lock", False)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_uid != os.getuid():
                raise UnsafeRuntimeDir(f"instance lock {self.path} is owned by uid {os.fstat(fd).st_uid}, "
                                       "not by you: refusing to use it")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    raise
                raise AlreadyRunning(self.message(self.holder(fd))) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "started": time.time(), "what": self.what,
                                      "namespace": self.namespace}).encode() + b"\n", 0)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return self

    @staticmethod
    def holder(fd: int) -> dict:
        try:
            data = os.pread(fd, 4096, 0)
            info = json.loads(data or b"{}")
            return info if isinstance(info, dict) else {}
        except (OSError, ValueError):
            return {}

    def message(self, info: dict) -> str:
        ns = self.namespace.strip("/")
        return f"reachy_mini is already running in namespace '{ns}' ({_describe(info)}); use --namespace or stop it"

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def acquire_all(locks: list[tuple[str | None, str | None, str]]) -> tuple[list[InstanceLock], int | None, str]:
    """Acquires every lock, given as (namespace, node, what), in order, for the life of the process: (held
    locks, None, '') or, when one cannot be had, ([], exit status, reason):
    EXIT_ALREADY_RUNNING (another stack holds it) or EXIT_UNSAFE_RUNTIME_DIR
    (a runtime directory or file that is not safely ours). Those taken before
    the failure are released. One rule for the supervisor and every node."""
    held: list[InstanceLock] = []
    try:
        for namespace, node, what in locks:
            held.append(InstanceLock(namespace, node, what=what).acquire())
    except (AlreadyRunning, UnsafeRuntimeDir, OSError) as e:
        for lock in held:
            lock.release()
        return [], EXIT_ALREADY_RUNNING if isinstance(e, AlreadyRunning) else EXIT_UNSAFE_RUNTIME_DIR, str(e)
    return held, None, ""


def locked_by_parent() -> bool:
    """Started by a supervisor that holds this node's lock (its pid in
    REACHY_MINI_LOCKED_BY is our parent's)?"""
    v = os.environ.get(LOCKED_BY_ENV, "")
    return v.isdigit() and int(v) == os.getppid()
