"""Fast DDS shared-memory segments that killed processes left behind (plain Python).

Fast DDS (rmw_fastrtps_cpp, ROS 2's default RMW) gives every participant a
segment in /dev/shm (0.5 MB by default, 8 MB for camera_node's profile) and
holds an flock on its `<segment>_el` file while the process lives. A process
that exits cleanly removes both; a process that is killed (a hung node
restarted, a crash, an out-of-memory kill) leaves them behind, and /dev/shm is
RAM that nothing gives back before a reboot (eProsima/Fast-DDS#2790): a camera
node that a robot restarts once a day loses 8 MB a day. eProsima's
`fastdds shm clean` removes such segments by hand with the same rule as
here: a segment whose lock file no live process holds is a zombie.
health_node sweeps on a timer (`shm_sweep_s`) and reports what it removed.

Only the segments of this user are considered, and segments younger than
`min_age_s` are left alone: a participant being created has made its files
but may not hold the lock yet.
"""
from __future__ import annotations

import fcntl
import os
import re
import time
from dataclasses import dataclass, field

SHM_DIR = "/dev/shm"
MIN_AGE_S = 10.0
_LOCK = re.compile(r"^(fastdds|fastrtps)_[0-9a-f]{16}_el$")


@dataclass
class Sweep:
    in_use: int = 0               # segments a live process holds
    in_use_bytes: int = 0
    removed: int = 0              # zombie segments removed by this sweep
    freed_bytes: int = 0
    errors: list[str] = field(default_factory=list)   # what could not be checked or removed, and why


def _held(path: str) -> bool:
    """Whether a live process holds the flock on `path` (a lock file)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)   # closing drops our lock, if we got it
    return False


def _size(path: str) -> int:
    try:
        return os.stat(path).st_blocks * 512   # what the segment holds in RAM, not its nominal size
    except OSError:
        return 0


def sweep(directory: str = SHM_DIR, min_age_s: float = MIN_AGE_S, remove: bool = True,
          now: float | None = None) -> Sweep:
    """Count the Fast DDS segments in `directory` and remove the zombies
    (their lock file free, older than min_age_s). Never raises: what could
    not be done is listed in Sweep.errors."""
    out = Sweep()
    now = time.time() if now is None else now
    try:
        names = os.listdir(directory)
    except OSError as e:
        out.errors.append(f"{directory}: {e.strerror or e}")
        return out
    for name in names:
        if not _LOCK.match(name):
            continue
        lock = os.path.join(directory, name)
        segment = lock[:-3]
        try:
            st = os.lstat(lock)
            if st.st_uid != os.getuid():   # another user's processes: not ours to judge
                continue
            if now - st.st_mtime < min_age_s or _held(lock):
                out.in_use += 1
                out.in_use_bytes += _size(segment)
                continue
        except FileNotFoundError:      # its process removed it meanwhile
            continue
        except OSError as e:
            out.errors.append(f"{name}: {e.strerror or e}")
            continue
        size = _size(segment)
        try:
            for path in (segment, lock) if remove else ():
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        except OSError as e:
            out.errors.append(f"{name[:-3]}: cannot remove: {e.strerror or e}")
            continue
        out.removed += 1
        out.freed_bytes += size
    return out
