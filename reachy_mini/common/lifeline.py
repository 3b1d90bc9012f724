"""Every node dies with the supervisor that started it, whatever killed the
supervisor (SIGKILL, the OOM killer, a crash), and holds its instance lock
like a node started by launch.

- ``spawn()`` (the supervisor's way to start a node) asks the kernel, in the
  child between fork and exec, to send it SIGTERM when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``, kept across exec); a parent that died in the
  meantime is caught by checking the parent pid right after. SIGTERM is the
  node's clean stop (run_node): torque off, devices released.
- The node's instance lock (common/instance.py; each node's, for a process
  running several), held by the supervisor for its whole life, is also
  handed to the child (an inherited descriptor of
  the same open file: a flock belongs to it, not to a process). So the lock
  stays held while either lives: an orphan, if one ever survived, still
  holds it and a new stack in the namespace refuses to start beside it
  (EXIT_ALREADY_RUNNING, naming the orphan's pid, which ``adopt_lock()``
  writes into the lock file).

Linux only for the death signal (elsewhere the node keeps running as
before); no ROS imports.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import subprocess
import time

PR_SET_PDEATHSIG = 1
LOCK_FD_ENV = "REACHY_MINI_LOCK_FD"

try:
    _prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    _prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
except (OSError, AttributeError):   # not Linux
    _prctl = None


def _die_with(parent: int, sig: int):
    def preexec() -> None:   # in the child, between fork and exec: no allocation-heavy work here
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:   # the parent died before the request: go now
            os._exit(128 + sig)
    return preexec


def spawn(argv: list[str], env: dict, lock_fds: list[int] = (), sig: int = signal.SIGTERM,
          **popen) -> subprocess.Popen:
    """subprocess.Popen for a process of the stack: it gets `sig` when this
    process dies, and inherits `lock_fds` (the instance locks of its nodes)
    as $REACHY_MINI_LOCK_FD (comma-separated). Call it from a thread that
    lives as long as the process (the supervisor's main loop): the kernel
    sends the signal when the thread that forked the child exits."""
    env = dict(env)
    fds = tuple(lock_fds)
    if fds:
        env[LOCK_FD_ENV] = ",".join(str(fd) for fd in fds)
    return subprocess.Popen(argv, env=env, pass_fds=fds, preexec_fn=_die_with(os.getpid(), sig), **popen)


def inherited_lock_fds() -> list[int]:
    """The instance-lock descriptors handed down by the supervisor (those
    that are open files)."""
    out = []
    for v in os.environ.get(LOCK_FD_ENV, "").split(","):
        if not v.isdigit():
            continue
        try:
            os.fstat(int(v))
        except OSError:
            continue
        out.append(int(v))
    return out


def adopt_lock(fd: int, what: str) -> None:
    """Writes this process as the lock's holder (the supervisor's record is
    replaced by the node's: the one an orphan would be)."""
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    data.update({"pid": os.getpid(), "started": time.time(), "what": what})
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(data).encode() + b"\n", 0)
    except OSError:
        pass
