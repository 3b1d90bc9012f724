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


def runtime_dir() -> str:
    return os.environ.get("XDG_RUNTIME_DIR") or "/tmp"


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
