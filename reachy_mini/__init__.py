"""Reachy Mini ROS 2 package: driver, simulator, nodes and health monitoring."""
from importlib.metadata import PackageNotFoundError, version
from pkgutil import extend_path

try:   # package.xml's version, installed by setup.py (pip or colcon)
    __version__ = version("reachy_mini")
except PackageNotFoundError:  # pragma: no cover - a bare source tree
    __version__ = "0+unknown"

# `colcon test` runs pytest from the source tree, whose reachy_mini/ shadows
# the installed package and has no compiled `_driver` (colcon built it into
# install/). Extending the package path over every `reachy_mini` directory on
# sys.path lets `from reachy_mini import _driver` find the installed one; with
# an in-place build (pip -e, --symlink-install) the local one comes first.
__path__ = extend_path(__path__, __name__)
