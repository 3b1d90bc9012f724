"""The safety envelope's rules that need more than one joint (plain Python).

Each motor's range and maximum velocity are enforced by the driver on every
path (rust_driver/src/control/limits.rs, data in config/motors.yaml). What
the driver cannot judge alone lives here and is applied to raw joint goals
(`motors/goal`, `motors/trajectory`) before they reach it:

* the command is well formed: known names, each once, as many positions as
  names, finite values that fit the servos' raw range;
* the head's mechanism: the Stewart joints' forward kinematics must have a
  solution, with roll and pitch within the head limits (core/head.py
  Limits), the head's yaw within +/-65 deg of the body's, and the body's
  yaw within its own range. A goal naming some of these joints is judged
  with the others at their present goal (or position).

`head/target_pose` goes through core/head.limit() and inverse kinematics
instead, which apply the same limits to the pose itself.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

from reachy_mini.core.head import BODY_JOINT, HEAD_JOINTS, HeadKinematics, Limits, Target
from reachy_mini.core.motors.map import MotorMap

RAW_MIN, RAW_MAX = -(2 ** 31), 2 ** 31 - 1   # the servos' goal position register (int32)
FK_TOLERANCE_RAD = 0.01     # inverse kinematics of the pose found must give back the joints
LIMIT_SLACK_DEG = 0.5       # goals computed from a pose exactly on a limit pass
NEAR_RAD = 0.15             # goals this close to the last ones start FK from the last pose
FK_SEEDS = (0.0, 0.45, -0.45, 0.9, -0.9, 1.3, -1.3)   # relative yaw starts (rad) for a far goal


def check_command(names: Sequence[str], positions: Sequence[float], motor_map: MotorMap,
                  where: str = "") -> str | None:
    """Why a goal (names, positions in rad) is malformed, or None. An empty
    goal is well formed: it moves nothing and feeds the command watchdog."""
    at = f"{where}: " if where else ""
    if len(positions) != len(names):
        return f"{at}{len(names)} names but {len(positions)} positions"
    bad = check_names(names, motor_map) if names else None   # an empty goal feeds the command watchdog
    if bad:
        return at + bad
    for n, v in zip(names, positions):
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            return f"{at}position of {n} is not a finite number: {v!r}"
        raw = motor_map.by_name[n].rad_to_raw(v)
        if not RAW_MIN <= raw <= RAW_MAX:
            return f"{at}position of {n} ({v:g} rad) is out of any servo's range"
    return None


def check_names(names: Sequence[str], motor_map: MotorMap) -> str | None:
    """Why a trajectory's joint names are malformed, or None."""
    if not names:
        return "no joint named"
    dup = sorted({n for n in names if list(names).count(n) > 1})
    if dup:
        return f"joint names given more than once: {dup}"
    unknown = [n for n in names if n not in motor_map.by_name]
    if unknown:
        return f"unknown joint names {unknown}; known: {motor_map.names}"
    return None


class MechanismRules:
    """The head's limits applied to raw joint goals, through forward
    kinematics. `present(name)` gives a joint's present goal (or position),
    in rad, or None when unknown."""

    def __init__(self, kinematics: HeadKinematics, motor_map: MotorMap, limits: Limits = Limits()) -> None:
        self.kin, self.map, self.limits = kinematics, motor_map, limits
        self.last: tuple[dict[str, float], Target] | None = None   # last joints solved, and their pose

    def applies(self, names: Sequence[str]) -> bool:
        return any(n in HEAD_JOINTS or n == BODY_JOINT for n in names)

    def _solved(self, joints: dict[str, float], iterations: int) -> Target | None:
        """One Newton FK from the solver's present start; the pose if the
        inverse kinematics of it gives the joints back."""
        p = self.kin.fk(joints, iterations=iterations)
        if not all(math.isfinite(v) for v in (p.x, p.y, p.z, p.roll, p.pitch, p.yaw)):
            return None
        back = self.kin.kin.inverse_kinematics(self.kin._world(
            Target(p.x, p.y, p.z, p.roll, p.pitch, p.yaw)).tolist(), 0.0)
        ok = len(back) == 6 and all(math.isfinite(b) and abs(b - joints[n]) <= FK_TOLERANCE_RAD
                                    for b, n in zip(back, HEAD_JOINTS))
        return p if ok else None

    def _fk(self, joints: dict[str, float]) -> Target | None:
        """The head pose of the Stewart `joints` relative to the body (body
        yaw 0: the body's yaw turns the whole head, so roll, pitch and the
        yaw relative to the body depend on these joints alone), or None
        without a solution.

        A Stewart platform's forward kinematics has several solutions. Goals
        streamed close to the last ones start from the last pose (the one
        the head is in); a far goal tries several starting yaws and keeps
        the solution nearest the neutral pose (~0.9 ms). Measured on 547
        random poses within the joint ranges (`make bench BENCH=envelope`,
        the vendor's 1.13 geometry): 546 judged right; one beyond the limits (relative yaw
        -118 deg) has joints that also fit a pose within them, and passes.
        """
        last = self.last
        if last is not None and all(abs(joints[n] - last[0][n]) <= NEAR_RAD for n in joints):
            self.kin.kin.reset_forward_kinematics(self.kin._world(last[1]).tolist())
            p = self._solved(joints, 6)
            if p is not None:
                self.last = (dict(joints), p)
                return p
        best = None
        for s in FK_SEEDS:
            self.kin.kin.reset_forward_kinematics(self.kin._world(Target(yaw=s)).tolist())
            p = self._solved(joints, 15)
            if p is None:
                continue
            cost = abs(p.roll) + abs(p.pitch) + abs(math.remainder(p.yaw, 2 * math.pi)) + \
                20 * math.sqrt(p.x * p.x + p.y * p.y + p.z * p.z)
            if best is None or cost < best[0]:
                best = (cost, p)
        if best is None:
            return None
        self.last = (dict(joints), best[1])
        return best[1]

    def check(self, goals: dict[str, float], present: Callable[[str], float | None]) -> str | None:
        """Why the head and body joints of `goals` (the others at `present`)
        break the mechanism's limits, or None. Each goal is taken within its
        joint range, as the driver will write it."""
        if not self.applies(goals):
            return None
        joints: dict[str, float] = {}
        for n in HEAD_JOINTS + [BODY_JOINT]:
            v = goals[n] if n in goals else present(n)
            if v is None:
                return f"{n}: present position unknown; head goals are refused until it is read"
            joints[n] = self.map.by_name[n].clip(v) if n in self.map.by_name else v
        lim, slack = self.limits, LIMIT_SLACK_DEG
        body = joints[BODY_JOINT]
        if abs(math.degrees(body)) > lim.body_yaw_deg + slack:
            return f"{BODY_JOINT} {math.degrees(body):.1f} deg beyond the body yaw limit +/-{lim.body_yaw_deg:g} deg"
        head = [n for n in goals if n in HEAD_JOINTS]
        p = self._fk({n: joints[n] for n in HEAD_JOINTS} | {BODY_JOINT: 0.0})
        if p is None:
            return f"{', '.join(head or HEAD_JOINTS)}: these joint goals have no forward kinematics solution " \
                   "(no head pose reaches them)"
        for what, v in (("roll", p.roll), ("pitch", p.pitch)):
            if abs(math.degrees(v)) > lim.roll_pitch_deg + slack:
                return f"head {what} would be {math.degrees(v):.1f} deg, beyond the limit +/-{lim.roll_pitch_deg:g} deg"
        rel = math.degrees(math.remainder(p.yaw, 2 * math.pi))
        if abs(rel) > lim.relative_yaw_deg + slack:
            return f"head yaw minus body yaw would be {rel:.1f} deg, beyond the limit +/-{lim.relative_yaw_deg:g} deg"
        return None


class PerMotorThrottle:
    """At most one report per motor per `period_s`: `due(motors, now)` gives
    the motors whose last report is older, and marks them reported."""

    def __init__(self, period_s: float = 1.0) -> None:
        self.period_s, self.last = period_s, {}

    def due(self, motors: Sequence[str], now: float) -> list[str]:
        out = [m for m in motors if now - self.last.get(m, -math.inf) >= self.period_s]
        for m in out:
            self.last[m] = now
        return out


def eeprom_wider(readings, motor_map: MotorMap) -> list[str]:
    """Motors whose own EEPROM position limits (read at connect) let them go
    beyond the configured joint range: "name [min, max]" (raw)."""
    out = []
    for r in readings:
        m = motor_map.by_name.get(r.name)
        lim = m.raw_limits() if m else None
        if lim and r.eeprom_limits_raw and (r.eeprom_limits_raw[0] < lim[0] or r.eeprom_limits_raw[1] > lim[1]):
            out.append(f"{r.name} [{r.eeprom_limits_raw[0]}, {r.eeprom_limits_raw[1]}]")
    return out


def stamp_text(sec: int, nanosec: int) -> str:
    """A header stamp as safety events carry it."""
    return f"{sec}.{nanosec:09d}"
