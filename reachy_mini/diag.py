"""diagnostic_updater when installed, else our compatible fallback."""
try:  # pragma: no cover - depends on the ROS install
    from diagnostic_updater import (  # type: ignore[import-not-found]
        DiagnosticStatusWrapper, FrequencyStatus, FrequencyStatusParam, Updater)
    USING_FALLBACK = False
except ImportError:
    from .diagnostics_compat import (  # noqa: F401
        DiagnosticStatusWrapper, FrequencyStatus, FrequencyStatusParam, Updater)
    USING_FALLBACK = True

OK, WARN, ERROR, STALE = 0, 1, 2, 3
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}


def level_byte(level: int) -> bytes:
    return bytes([level])


def level_int(level) -> int:
    """DiagnosticStatus.level arrives as bytes (b'\\x00') from rclpy."""
    if isinstance(level, (bytes, bytearray)):
        return level[0] if level else 0
    return int(level)
