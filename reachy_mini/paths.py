"""Where the package's data files live, installed or in a source tree."""
import os

_HERE = os.path.dirname(os.path.realpath(__file__))


def share_dir() -> str:
    """The package share directory (config/, launch/).

    Uses ament_index when the package is installed in a ROS workspace, else
    the source tree (editable installs, tests), else <prefix>/share.
    """
    src = os.path.dirname(_HERE)
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
