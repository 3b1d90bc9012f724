"""The QoS of every topic of the stack, in one place (docs/ros-interface.md: "Topics and QoS").

A RELIABLE publisher serves both RELIABLE and BEST_EFFORT subscribers; a
BEST_EFFORT publisher serves only BEST_EFFORT subscribers. So only streams
where a late sample is worth less than a fresh one are BEST_EFFORT.
"""
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data


def _qos(depth: int, reliable: bool) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, durability=DurabilityPolicy.VOLATILE,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)


# Camera frames (30 fps, ~1 MB) and their camera_info: the system default
# (RELIABLE, KEEP_LAST 10), as REP-2003 asks of sensor drivers: a RELIABLE
# publisher serves both RELIABLE subscribers (RViz's Image display,
# image_view) and sensor-data (BEST_EFFORT) ones such as image_proc.
IMAGE = _qos(10, True)
CAMERA_INFO = _qos(10, True)
# The 5 Hz JPEG preview: RELIABLE so any subscriber matches (rqt_image_view,
# the web page), depth 1 because only the newest frame matters.
PREVIEW = _qos(1, True)
# Audio chunks (10 Hz) and level (5 Hz): sensor data; depth 10 = 1 s of audio
# buffered for a subscriber that is briefly late.
AUDIO = _qos(10, False)
AUDIO_LEVEL = qos_profile_sensor_data
# Joint states and goals: RELIABLE, depth 10 (robot_state_publisher, the
# ros2_control convention); a lost goal is a command that never happened.
JOINT_STATES = _qos(10, True)
GOALS = _qos(10, True)
# motors/safety_events: each refusal or clamp of a motion command, RELIABLE
# depth 10 (a client such as the SDK bridge answers its command with it).
SAFETY_EVENTS = _qos(10, True)
# Diagnostics: RELIABLE like diagnostic_updater (depth 1) and
# diagnostic_aggregator; the health node buffers input from 5 nodes.
DIAGNOSTICS_IN = _qos(100, True)
DIAGNOSTICS_AGG = _qos(1, True)
# The robot model: robot_description and /tf_static are published once and
# kept for late joiners (TRANSIENT_LOCAL, depth 1), as robot_state_publisher
# and tf2's StaticTransformBroadcaster do; /tf as tf2's TransformBroadcaster
# (RELIABLE, depth 100).
LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                     reliability=ReliabilityPolicy.RELIABLE)
TF = _qos(100, True)
# Subscribers that only show the newest value (web page): BEST_EFFORT, depth 1,
# which matches both kinds of publisher and never queues stale samples.
LATEST = _qos(1, False)
