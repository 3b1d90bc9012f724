"""motor_node's typed configuration (its ROS parameters)."""
from __future__ import annotations

from dataclasses import dataclass

from reachy_mini.core.config import NodeConfig, absolute_or_empty, setting
from reachy_mini.core.motors.health import Thresholds

THRESHOLDS = ("temperature_warn_c", "temperature_error_c", "voltage_warn_low_v", "voltage_warn_high_v",
              "voltage_error_low_v", "voltage_error_high_v", "current_warn_ma", "current_error_ma")
ALARM_TIMING = ("temperature_clear_c", "temperature_sustain_s", "voltage_clear_margin_v", "voltage_sustain_s",
                "comm_errors_warn", "comm_errors_window_s", "comm_errors_sustain_s", "not_answering_sustain_s",
                "rate_sustain_s")
LIVE_DRIVER = ("loop_rate_hz", "status_rate_hz", "command_timeout_s", "command_timeout_action")


def frame_prefix_check(v: str) -> str | None:
    """tf2 frame ids: no leading '/', no spaces."""
    return "must not start with '/' nor contain spaces" if v.startswith("/") or any(c.isspace() for c in v) \
        else None


def _port(v: str) -> str | None:
    return None if v in ("auto", "sim") or v.startswith("/") else "must be 'auto', 'sim' or an absolute path"


@dataclass
class MotorConfig(NodeConfig):
    use_sim: bool = setting(False, "use the simulated servo bus (same as serial_port:=sim)")
    serial_port: str = setting("auto", "'auto' (find 1a86:55d3), 'sim', or a device path", check=_port)
    sim_link: str = setting("", "pty link path of the simulated bus (serial_port=sim); '' = the robot's own "
                            "(<runtime dir>/reachy_mini_sim[/<namespace>]/ttyDXL)", check=absolute_or_empty)
    sim_wire_timing: bool = setting(True, "simulate 10 bits per byte at the baud rate")
    baudrate: int = setting(1_000_000, "bus baud rate", 9600, 4_500_000)
    loop_rate_hz: float = setting(100.0, "control loop and /joint_states rate", 1.0, 1000.0, runtime=True)
    status_rate_hz: float = setting(2.0, "temperature/voltage/current/error read rate", 0.1, 50.0, runtime=True)
    io_timeout_ms: float = setting(5.0, "slack added to every read deadline", 0.5, 500.0)
    realtime_priority: int = setting(0, "SCHED_FIFO priority of the control thread, when the process may "
                                     "(root, CAP_SYS_NICE or LimitRTPRIO); 0 = normal scheduler", 0, 99)
    lock_memory: bool = setting(False, "lock the process's memory (mlockall) so the loop never page-faults")
    motors_file: str = setting("", "motor map YAML (default: the package's config/motors.yaml)")
    command_timeout_s: float = setting(0.5, "after this long without a goal, apply command_timeout_action (0 = off)",
                                       0.0, 3600.0, runtime=True)
    command_timeout_action: str = setting("hold", "'hold' (goal := present position) or 'torque_off'",
                                          choices=("hold", "torque_off"), runtime=True)
    torque_on_start: bool = setting(True, "turn torque on (holding the present pose) at start")
    auto_recover: bool = setting(True, "reboot a motor whose hardware error cause has cleared", runtime=True)
    auto_recover_delay_s: float = setting(3.0, "wait this long after a fault before an automatic reboot", 0.0, 600.0,
                                          runtime=True)
    auto_recover_max: int = setting(3, "automatic reboots of one motor per auto_recover_window_s; then it gives up "
                                    "until a person calls ~/reboot or ~/set_torque", 1, 100, runtime=True)
    auto_recover_window_s: float = setting(600.0, "window of auto_recover_max (s)", 1.0, 86400.0, runtime=True)
    on_exit: str = setting("torque_off", "when motor_node stops: 'torque_off' (motors go limp, nothing stays "
                           "powered without a controller) or 'hold' (keep torque and the last goal)",
                           choices=("torque_off", "hold"))
    trajectory_interpolation: str = setting("minjerk", "motors/trajectory between waypoints: 'minjerk' (zero "
                                            "velocity and acceleration at each waypoint) or 'linear'",
                                            choices=("minjerk", "linear"), runtime=True)
    limit_policy: str = setting("clamp", "a goal beyond its joint range (config/motors.yaml): 'clamp' it (logged at "
                                "most once a second per motor, counted) or 'reject' the whole command",
                                choices=("clamp", "reject"))
    head_kinematics_file: str = setting("", "head geometry, in the form of the vendor's kinematics_data.json "
                                        "(default: the package's config/kinematics_data.json, from reachy-mini 1.13.0)",
                                        check=absolute_or_empty)
    robot_description_file: str = setting("", "URDF published on robot_description and used for /tf (default: the "
                                          "package's urdf/reachy_mini.urdf)", check=absolute_or_empty)
    frame_prefix: str = setting("", "prefix of every frame id on /tf, /tf_static and head/pose, for fleets "
                                "(e.g. 'robot1/'), as robot_state_publisher's frame_prefix", check=frame_prefix_check)
    head_auto_body_yaw: bool = setting(True, "head/target_pose: turn the body to keep the head within +/-65 deg "
                                       "of it (else the head's yaw is clamped)", runtime=True)
    temperature_warn_c: float = setting(55.0, "WARN at or above (C)", 0.0, 100.0, runtime=True)
    temperature_error_c: float = setting(65.0, "ERROR at or above (C)", 0.0, 100.0, runtime=True)
    voltage_warn_low_v: float = setting(4.5, "WARN below (V)", 0.0, 20.0, runtime=True)
    voltage_warn_high_v: float = setting(6.5, "WARN above (V)", 0.0, 20.0, runtime=True)
    voltage_error_low_v: float = setting(3.8, "ERROR below (V)", 0.0, 20.0, runtime=True)
    voltage_error_high_v: float = setting(7.0, "ERROR above (V)", 0.0, 20.0, runtime=True)
    temperature_clear_c: float = setting(50.0, "a temperature alarm clears below (C)", 0.0, 100.0, runtime=True)
    temperature_sustain_s: float = setting(3.0, "seconds at or above a temperature threshold before the alarm",
                                           0.0, 600.0, runtime=True)
    voltage_clear_margin_v: float = setting(0.2, "a voltage alarm clears once back inside the WARN range by this "
                                            "much (V)", 0.0, 5.0, runtime=True)
    voltage_sustain_s: float = setting(2.0, "seconds out of a voltage range before the alarm (a dip under load "
                                       "is not one)", 0.0, 600.0, runtime=True)
    comm_errors_warn: int = setting(5, "WARN once a motor had this many communication errors (timeouts, bad "
                                    "CRC) within comm_errors_window_s, for comm_errors_sustain_s", 1, 1_000_000,
                                    runtime=True)
    comm_errors_window_s: float = setting(10.0, "window of comm_errors_warn (s)", 1.0, 3600.0, runtime=True)
    comm_errors_sustain_s: float = setting(30.0, "the communication-error WARN once comm_errors_warn held this long "
                                           "(s); it clears once the window holds none", 0.0, 3600.0, runtime=True)
    not_answering_sustain_s: float = setting(2.0, "a motor that has not answered for this long is ERROR (a "
                                             "missed reply before that counts as a communication error)",
                                             0.0, 60.0, runtime=True)
    rate_sustain_s: float = setting(30.0, "the control loop below 90 % of loop_rate_hz this long is WARN (s)",
                                    0.0, 3600.0, runtime=True)
    current_warn_ma: float = setting(800.0, "WARN at or above |current| (mA)", 0.0, 10000.0, runtime=True)
    current_error_ma: float = setting(1200.0, "ERROR at or above |current| (mA)", 0.0, 10000.0, runtime=True)

    @property
    def simulated(self) -> bool:
        return self.use_sim or self.serial_port == "sim"

    def thresholds(self) -> Thresholds:
        """A position older than 5 loop periods (at least 0.5 s) is stale."""
        return Thresholds(*(getattr(self, k) for k in THRESHOLDS), stale_after_s=max(0.5, 5.0 / self.loop_rate_hz),
                          **{k: getattr(self, k) for k in ALARM_TIMING})

    def validate(self) -> list[str]:
        return [f"thresholds: {e}" for e in self.thresholds().validate()]
