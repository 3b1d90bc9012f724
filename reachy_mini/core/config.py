"""Typed node configuration: each node's parameters are the fields of one
dataclass, with their ROS descriptor data (description, range, choices,
check, whether `ros2 param set` may change them) in the field's metadata.

    @dataclass
    class CameraConfig(NodeConfig):
        fps: float = setting(30.0, "target frame rate", 0.5, 120.0)

The ROS layer (ros/params.py) declares one parameter per field, checks every
value with `check_value`, builds the instance and runs `validate()` (rules
across fields); a runtime set goes through the same checks and updates the
same instance. Plain Python, no ROS.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from reachy_mini.core.identity import check_robot_name


@dataclass(frozen=True)
class Param:
    """One parameter's rules."""
    name: str
    default: Any
    description: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple | None = None
    check: Callable[[Any], str | None] | None = None   # returns an error text or None
    runtime: bool = False    # True: `ros2 param set` changes it on the running node
    secret: bool = False     # True: messages never repeat the value (it may hold a password)


def check_value(s: Param, v) -> str | None:
    """The one rule set for a single value, at start-up and at `ros2 param set`."""
    if s.lo is not None and isinstance(v, (int, float)) and not isinstance(v, bool):
        if not (s.lo <= v <= s.hi):
            return f"parameter '{s.name}' = {v} is outside [{s.lo}, {s.hi}]"
    if s.choices and v not in s.choices:
        return f"parameter '{s.name}' = {v!r} must be one of {list(s.choices)}"
    if s.check:
        err = s.check(v)
        if err:
            return f"parameter '{s.name}'{'' if s.secret else f' = {v!r}'}: {err}"
    return None


def setting(default, description: str, lo: float | None = None, hi: float | None = None, *,
            choices: tuple | None = None, check: Callable[[Any], str | None] | None = None,
            runtime: bool = False, secret: bool = False):
    """A config field that is also a ROS parameter (the field's name)."""
    meta = {"param": dict(default=default, description=description, lo=lo, hi=hi, choices=choices, check=check,
                          runtime=runtime, secret=secret)}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def read_yaml(path: str, what: str):
    """A YAML file's content; ValueError "<what>: ..." when it cannot be read or parsed."""
    import yaml

    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except OSError as e:
        raise ValueError(f"{what}: cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{what}: {path} is not valid YAML: {e}") from None


def absolute_or_empty(v: str) -> str | None:
    return None if v == "" or v.startswith("/") else "must be '' or an absolute path"


C = TypeVar("C", bound="NodeConfig")


@dataclass
class NodeConfig:
    """Base of the per-node configs. Every node takes the robot's name."""

    robot_name: str = setting("", "the robot's name: page title, hardware ids, incidents, metric label "
                              "(default '': the namespace, else the host name)", check=check_robot_name)

    @classmethod
    def specs(cls) -> list[Param]:
        return [Param(f.name, **f.metadata["param"]) for f in dataclasses.fields(cls) if "param" in f.metadata]

    def validate(self) -> list[str]:
        """Rules across parameters (e.g. warn < error); [] when consistent."""
        return []

    def replaced(self: C, changes: dict) -> C:
        return dataclasses.replace(self, **changes)

    def update(self, changes: dict) -> None:
        """Applies accepted changes in place (the object the node holds)."""
        for k, v in changes.items():
            setattr(self, k, v)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_params_file(cls: type[C], path: str | list[str], node: str) -> C:
        """The config a node started with `--params-file path` (or with one
        `--params-file` per path, in order) would get for the parameters it
        sets (`/**`, `<node>` and `/**/<node>` sections, in file order, a
        later file overriding an earlier one as rcl applies them; unknown
        keys ignored), defaults for the rest. For readers outside the node
        (the supervisor); the node itself declares them."""
        names = {"/**", "**", node, f"/{node}", f"/**/{node}"}
        known = {p.name for p in cls.specs()}
        found = {}
        for one in ([path] if isinstance(path, str) else path):
            doc = read_yaml(one, "--params-file") or {}
            for key, section in (doc.items() if isinstance(doc, dict) else ()):
                if key in names and isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict):
                    found |= {k: v for k, v in section["ros__parameters"].items() if k in known}
        return cls(**found)
