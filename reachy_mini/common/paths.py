"""Where the package's data files live, installed or in a source tree."""
import os

_PACKAGE = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))   # .../reachy_mini


def share_dir() -> str:
    """The package share directory (config/, launch/).

    Uses ament_index when the package is installed in a ROS workspace, else
    the source tree (editable installs, tests), else <prefix>/share.
    """
    src = os.path.dirname(_PACKAGE)
    if os.path.isfile(os.path.join(src, "package.xml")) and os.path.isdir(os.path.join(src, "config")):
        return src
    try:
        from ament_index_python.packages import get_package_share_directory

        return get_package_share_directory("reachy_mini")
    except Exception:  # noqa: BLE001 - ament_index missing or package not indexed
        import sys

        return os.path.join(sys.prefix, "share", "reachy_mini")


def config_path(name: str) -> str:
    return os.path.join(share_dir(), "config", name)


def urdf_path() -> str:
    """The robot's URDF (robot_description)."""
    return os.path.join(share_dir(), "urdf", "reachy_mini.urdf")


# ---- per-robot paths: a namespace contains a whole robot, so two robots on
# one machine never share a simulated bus, a state file or an incident
# database. Without a namespace the paths are the historical ones.

def robot_key(namespace: str | None) -> str:
    """'' for the root namespace, else 'robot1' or 'lab/robot1'."""
    key = (namespace or "").strip("/")
    if any(part in ("", ".", "..") for part in key.split("/")) and key:
        raise ValueError(f"namespace {namespace!r} is not a valid ROS namespace")
    return key


TMP_BASE = "/tmp"    # parent of the per-user runtime directory when $XDG_RUNTIME_DIR is unset


class UnsafeRuntimeDir(RuntimeError):
    """The runtime directory (or a file in it) could be written by someone
    else: refused, with a message saying what and how to fix it."""


def check_private(path: str, what: str, is_dir: bool) -> None:
    """Refuses `path` unless it is ours: owned by this user, not a symbolic
    link, and (a directory) not writable by group or others."""
    import stat

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    uid = os.getuid()
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeRuntimeDir(f"{what} {path} is a symbolic link: refusing to use it")
    if is_dir and not stat.S_ISDIR(st.st_mode):
        raise UnsafeRuntimeDir(f"{what} {path} is not a directory: refusing to use it")
    if st.st_uid != uid:
        raise UnsafeRuntimeDir(f"{what} {path} is owned by uid {st.st_uid}, not by you (uid {uid}): refusing to use "
                               "it; remove it or set XDG_RUNTIME_DIR to a directory of yours")
    if is_dir and st.st_mode & 0o022:
        raise UnsafeRuntimeDir(f"{what} {path} is writable by other users (mode {stat.S_IMODE(st.st_mode):o}): "
                               f"refusing to use it; chmod 700 {path} or set XDG_RUNTIME_DIR")


def runtime_dir() -> str:
    """The private directory of the stack's runtime files (simulated bus,
    state file, heartbeats, instance locks): $XDG_RUNTIME_DIR, else
    /tmp/reachy_mini-<uid> created 0700. Raises UnsafeRuntimeDir when it is
    owned by another user or writable by others."""
    path = os.environ.get("XDG_RUNTIME_DIR") or os.path.join(TMP_BASE, f"reachy_mini-{os.getuid()}")
    what = "runtime directory" + (" ($XDG_RUNTIME_DIR)" if os.environ.get("XDG_RUNTIME_DIR") else "")
    check_private(path, what, True)
    if not os.path.isdir(path):
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as e:
            raise UnsafeRuntimeDir(f"{what} {path}: cannot create it: {e.strerror}") from None
        check_private(path, what, True)   # someone else's in between?
    return path


def sim_link(namespace: str | None = None) -> str:
    """Stable path of the simulated bus's pty (its control socket: + '.ctl')."""
    key = robot_key(namespace)
    return os.path.join(runtime_dir(), "reachy_mini_sim", *([key] if key else []), "ttyDXL")


def state_file(namespace: str | None = None) -> str:
    """reachy-mini-bringup's state file (pids, restarts), read by health_node."""
    key = robot_key(namespace)
    return os.path.join(runtime_dir(), "reachy_mini_bringup" + (f".{key.replace('/', '.')}" if key else "") + ".json")


def data_dir(namespace: str | None = None) -> str:
    """Incident database directory (health_node writes, web_bridge reads)."""
    key = robot_key(namespace)
    base = os.path.join(os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "reachy_mini")
    return os.path.join(base, key) if key else base


def heartbeat_file(namespace: str | None, node: str) -> str:
    """A node's spin-loop heartbeat under ros2 launch (reachy-mini-bringup
    gives each child its own path in REACHY_MINI_HEARTBEAT instead)."""
    key = robot_key(namespace)
    return os.path.join(runtime_dir(), "reachy_mini_run", *([key] if key else []), f"{node}.alive")


def lock_file(namespace: str | None, node: str | None = None) -> str:
    """The instance lock of a robot (reachy-mini-bringup holds it) or of one
    of its nodes (held by the node's process under ros2 launch, by the
    supervisor for its children): <runtime dir>/reachy_mini[.<ns>][-<node>].lock
    ('-' cannot occur in a ROS name, '.' stands for '/')."""
    key = robot_key(namespace)
    return os.path.join(runtime_dir(), "reachy_mini" + (f".{key.replace('/', '.')}" if key else "")
                        + (f"-{node}" if node else "") + ".lock")
