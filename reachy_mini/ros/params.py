"""Declare ROS parameters from a compact spec, with descriptors; fail fast
with a message naming the parameter when a value is invalid; accept
`ros2 param set` for the parameters marked `runtime`, checked by the same
rules as at start-up."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException


class ParameterError(ValueError):
    """An invalid parameter value; the message names the parameter."""


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple | None = None
    check: Callable[[Any], str | None] | None = None   # returns an error text or None
    runtime: bool = False    # True: `ros2 param set` changes it on the running node


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
            return f"parameter '{s.name}' = {v!r}: {err}"
    return None


UPDATER_PREFIX = "diagnostic_updater."


class Params(dict):
    """The node's current parameter values by name; `ros2 param set` updates it."""


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


def declare(node, specs: list[Param], validate: Callable[[dict], list[str]] | None = None,
            on_change: Callable[[dict], None] | None = None) -> Params:
    """Declares every parameter and returns their values. Raises ParameterError.

    `validate(values) -> [error, ...]` checks rules across parameters (e.g.
    warn < error); it runs at start-up and on every runtime set, against the
    values the set would produce. `on_change(changed)` applies an accepted
    set to the running node; if it raises, the set is refused with its message.
    """
    out = Params()
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
        out[s.name] = v
    for err in (validate(dict(out)) if validate else []):
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
        if not errs and validate:
            errs = validate(dict(out) | changed)
        if errs:
            return SetParametersResult(successful=False, reason="; ".join(errs))
        old = {n: out[n] for n in changed}
        out.update(changed)
        try:
            if on_change:
                on_change(changed)
        except Exception as e:  # noqa: BLE001 - refuse the set, keep the old values
            out.update(old)
            return SetParametersResult(successful=False, reason=f"could not apply: {type(e).__name__}: {e}")
        node.get_logger().info("parameters set: " + ", ".join(f"{n}={v!r}" for n, v in changed.items()))
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return out


def run_node(factory, name: str, args=None) -> int:
    """Standard main(): init, build the node, spin, exit cleanly on SIGINT/
    SIGTERM; an invalid parameter exits with status 2 and a clear message."""
    import os
    import signal
    import sys
    import time

    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    try:
        node = factory()
    except ParameterError as e:
        print(f"[{name}] FATAL: invalid parameter: {e}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        return 2
    except Exception as e:  # noqa: BLE001 - report startup failures clearly
        print(f"[{name}] FATAL: startup failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    import traceback

    heartbeat = os.environ.get("REACHY_MINI_HEARTBEAT")  # set by reachy-mini-bringup (hang watchdog)
    beat_at = 0.0
    try:
        while not stop and rclpy.ok():
            if heartbeat and time.monotonic() - beat_at >= 1.0:
                beat_at = time.monotonic()
                try:
                    with open(heartbeat, "w") as f:
                        f.write(f"{os.getpid()} {time.time():.3f}\n")
                except OSError:
                    pass
            try:
                executor.spin_once(timeout_sec=0.1)
            except (KeyboardInterrupt, ExternalShutdownException):
                break
            except Exception:  # noqa: BLE001 - a failing callback must not take the node down
                node.callback_errors = getattr(node, "callback_errors", 0) + 1
                print(f"[{name}] ERROR in callback (#{node.callback_errors}):\n{traceback.format_exc()}",
                      file=sys.stderr, flush=True)
    finally:
        try:
            if hasattr(node, "shutdown"):  # nodes owning threads or devices release them here
                node.shutdown()
        except Exception as e:  # noqa: BLE001
            print(f"[{name}] error during shutdown: {e}", file=sys.stderr)
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
