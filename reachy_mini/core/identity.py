"""The robot's identity: its name (parameter `robot_name`, launch argument
and supervisor option of the same name) and the hardware ids that carry it.

The name appears in the page title, in each hardware_id ("<robot>/<id>",
e.g. "reachy-lab-3/dynamixel:12"), in the incident database and as the
`robot` label of every metric. Default: the robot's namespace when it has
one (several robots on one host), else the host name.
"""
from __future__ import annotations

import re
import socket

_VALID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def check_robot_name(v: str) -> str | None:
    """'' (the default) or a name of letters, digits, '_', '.', '-' (a host
    name, a namespace, a Prometheus label value and part of a hardware id)."""
    return None if v == "" or _VALID.match(v) else \
        "must be '' (namespace, else host name) or 1-63 letters, digits, '_', '.', '-' (no '/' or spaces)"


def _sanitize(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]", "-", name).strip("-.")[:63]
    return s or "reachy_mini"


def robot_name(configured: str = "", namespace: str = "") -> str:
    """The robot's name: `configured` if set, else the last part of the
    namespace, else the host name."""
    if configured:
        return configured
    ns = (namespace or "").strip("/")
    return _sanitize(ns.rsplit("/", 1)[-1] if ns else socket.gethostname().split(".")[0])


def hardware_id(robot: str, hw: str) -> str:
    """"<robot>/<hw>"; '' stays ''; an id that already carries the robot is kept."""
    if not hw or not robot or hw.startswith(robot + "/"):
        return hw
    return f"{robot}/{hw}"


def device_of(hwid: str) -> str:
    """The device part of a hardware id ("robot1/dynamixel:12" -> "dynamixel:12");
    an id without a robot part ("dynamixel:12", "/dev/video0") is returned as is."""
    head, sep, tail = hwid.partition("/")
    return tail if sep and _VALID.match(head) else hwid
