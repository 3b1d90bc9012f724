"""Reachy Mini ROS 2 package: driver, simulator, nodes and health monitoring."""
from pkgutil import extend_path


def __getattr__(name: str) -> str:
    """__version__: package.xml's version, installed by setup.py (pip or
    colcon), looked up on first use: importlib.metadata costs every process
    that imports the package ~4 MB (email, zipfile, ...), and the supervisor
    never needs it."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("reachy_mini")
    except PackageNotFoundError:  # pragma: no cover - a bare source tree
        v = "0+unknown"
    globals()["__version__"] = v
    return v

# `colcon test` runs pytest from the source tree, whose reachy_mini/ shadows
# the installed package and has no compiled `_driver` (colcon built it into
# install/). Extending the package path over every `reachy_mini` directory on
# sys.path lets `from reachy_mini import _driver` find the installed one; with
# an in-place build (pip -e, --symlink-install) the local one comes first.
__path__ = extend_path(__path__, __name__)
