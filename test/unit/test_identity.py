"""The robot's name and the hardware ids that carry it (core/identity.py)."""
from __future__ import annotations

import socket

from reachy_mini.core.config import NodeConfig, check_value
from reachy_mini.core.identity import check_robot_name, device_of, hardware_id, robot_name


def test_robot_name_defaults_to_the_namespace_then_the_host_name():
    assert robot_name("lab-3", "/robot1") == "lab-3"
    assert robot_name("", "/robot1") == "robot1" and robot_name("", "/fleet/robot2/") == "robot2"
    host = robot_name("", "/")
    assert host == robot_name() and host and check_robot_name(host) is None
    assert host.startswith(socket.gethostname().split(".")[0][:5].replace("_", "_"))


def test_robot_name_is_checked_like_any_parameter():
    spec = next(p for p in NodeConfig.specs() if p.name == "robot_name")
    for good in ("", "robot1", "reachy-lab.3", "R_2"):
        assert check_value(spec, good) is None, good
    for bad in ("a/b", "two words", "-x", "x" * 64, "é"):
        err = check_value(spec, bad)
        assert err and err.startswith("parameter 'robot_name'"), bad


def test_hardware_ids_carry_the_robot():
    assert hardware_id("robot1", "dynamixel:12") == "robot1/dynamixel:12"
    assert hardware_id("robot1", "/dev/video0") == "robot1//dev/video0"
    assert hardware_id("robot1", "robot1/dynamixel:12") == "robot1/dynamixel:12"     # not twice
    assert hardware_id("robot1", "") == "" and hardware_id("", "x") == "x"
    for hw in ("dynamixel:12", "/dev/video0", "http://0.0.0.0:8000", "dynamixel_bus:/tmp/x/ttyDXL"):
        assert device_of(hardware_id("r2", hw)) == hw and device_of(hw) == hw
