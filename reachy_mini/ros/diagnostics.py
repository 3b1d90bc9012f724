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

from reachy_mini.core.identity import hardware_id  # noqa: E402


class RobotUpdater(Updater):
    """An Updater whose hardware ids carry the robot's name ("<robot>/<id>"):
    the one it is given and those of its Check tasks."""

    def __init__(self, node, robot: str, *args, **kwargs) -> None:
        super().__init__(node, *args, **kwargs)
        self.robot = robot

    def setHardwareID(self, hwid) -> None:  # noqa: N802 - diagnostic_updater's name
        super().setHardwareID(hardware_id(self.robot, hwid))

    def add(self, *args):
        if len(args) == 1 and hasattr(args[0], "robot"):
            args[0].robot = self.robot
        return super().add(*args)
