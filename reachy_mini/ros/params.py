"""Declare a node's typed config (core/config.py) as ROS parameters, with
descriptors; fail fast with a message naming the parameter when a value is
invalid; accept `ros2 param set` for the fields marked `runtime`, checked by
the same rules as at start-up, and apply it to the same config object."""
from __future__ import annotations

from typing import Callable, TypeVar

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

from reachy_mini.core.config import NodeConfig, Param, check_value


class ParameterError(ValueError):
    """An invalid parameter value; the message names the parameter."""


UPDATER_PREFIX = "diagnostic_updater."


C = TypeVar("C", bound=NodeConfig)


def _descriptor(s: Param) -> ParameterDescriptor:
    d = ParameterDescriptor(description=s.description + ("" if s.runtime else " (read-only: restart to change)"),
                            read_only=not s.runtime)
    if s.lo is not None and s.hi is not None and not isinstance(s.default, bool):
        if isinstance(s.default, int):
            d.integer_range = [IntegerRange(from_value=int(s.lo), to_value=int(s.hi), step=0)]
        elif isinstance(s.default, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(s.lo), to_value=float(s.hi), step=0.0)]
    if s.choices:
        d.additional_constraints = "one of: " + ", ".join(map(str, s.choices))
    return d


def declare(node, config: type[C], on_change: Callable[[dict], None] | None = None) -> C:
    """Declares one parameter per field of `config` and returns the config.
    Raises ParameterError.

    `config.validate()` checks rules across parameters (e.g. warn < error); it
    runs at start-up and on every runtime set, against the values the set
    would produce. An accepted set updates the returned object in place, then
    `on_change(changed)` applies it to the running node; if that raises, the
    set is refused with its message and the old values are restored.
    """
    specs = config.specs()
    values = {}
    for s in specs:
        try:
            v = node.declare_parameter(s.name, s.default, _descriptor(s)).value
        except InvalidParameterTypeException as e:
            raise ParameterError(f"parameter '{s.name}': wrong type ({e}); expected "
                                 f"{type(s.default).__name__}") from None
        except InvalidParameterValueException as e:
            raise ParameterError(f"parameter '{s.name}': {e}") from None
        err = check_value(s, v)
        if err:
            raise ParameterError(err)
        values[s.name] = list(v) if isinstance(v, (list, tuple)) else v
    cfg = config(**values)
    for err in cfg.validate():
        raise ParameterError(err)
    by_name = {s.name: s for s in specs}

    def on_set(params) -> SetParametersResult:
        # rclpy has already refused read-only parameters, wrong types and
        # values outside the descriptor's range.
        fixed = [p.name for p in params if p.name.startswith(UPDATER_PREFIX) and node.has_parameter(p.name)]
        if fixed:   # declared by diagnostic_updater, which reads them once
            return SetParametersResult(successful=False, reason=f"{', '.join(fixed)}: read at start-up only "
                                       "(diagnostic_updater); set it in the parameter file and restart")
        changed = {p.name: p.value for p in params if p.name in by_name}
        if not changed:
            return SetParametersResult(successful=True)
        errs = [e for n, v in changed.items() if (e := check_value(by_name[n], v))]
        if not errs:
            errs = cfg.replaced(changed).validate()
        if errs:
            return SetParametersResult(successful=False, reason="; ".join(errs))
        old = {n: getattr(cfg, n) for n in changed}
        cfg.update(changed)
        try:
            if on_change:
                on_change(changed)
        except Exception as e:  # noqa: BLE001 - refuse the set, keep the old values
            cfg.update(old)
            return SetParametersResult(successful=False, reason=f"could not apply: {type(e).__name__}: {e}")
        node.get_logger().info("parameters set: " + ", ".join(f"{n}={v!r}" for n, v in changed.items()))
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return cfg
