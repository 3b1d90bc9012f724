"""diagnostic_updater when installed, else our strict twin of it
(diagnostics_compat), with the same API and the same checks."""
try:  # pragma: no cover - depends on the ROS install
    from diagnostic_updater import (  # type: ignore[import-not-found]
        DiagnosticStatusWrapper, DiagnosticTask, FrequencyStatus, FrequencyStatusParam, Updater)
    USING_FALLBACK = False
except ImportError:
    from reachy_mini.ros.diagnostics_compat import (  # noqa: F401
        DiagnosticStatusWrapper, DiagnosticTask, FrequencyStatus, FrequencyStatusParam, Updater)
    USING_FALLBACK = True
