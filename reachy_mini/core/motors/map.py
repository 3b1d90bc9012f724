"""The motor map (ids, names, models, raw <-> radian conversion), loaded from
config/motors.yaml. Plain Python, no ROS."""
from __future__ import annotations

import math
from dataclasses import dataclass

from reachy_mini.core.config import read_yaml
from reachy_mini.common.paths import config_path


# The servos' no-load speed (rev/min) at 3.7, 5.0 and 6.0 V, from the ROBOTIS
# e-manual (emanual.robotis.com/docs/en/dxl/x/<model>/, "Specifications").
NO_LOAD_RPM = {"XL330-M288": (76.0, 103.0, 123.0), "XC330-M288": (59.0, 81.0, 97.0),
               "XL330-M077": (278.0, 383.0, 456.0)}
NO_LOAD_VOLTS = (3.7, 5.0, 6.0)
SUPPLY_V = 7.6           # the robot's servo supply (docs/motors.md "Where the speed limits come from")
SPEED_MARGIN = 1.10      # the speed limits' margin over the no-load speed at SUPPLY_V


def no_load_rad_s(model: str, volts: float = SUPPLY_V) -> float:
    """A servo's no-load speed at `volts` (rad/s): the least-squares line
    through the e-manual's three figures (a DC motor's no-load speed is
    linear in its voltage), beyond 6 V too. KeyError for an unknown model."""
    ys, xs = NO_LOAD_RPM[model], NO_LOAD_VOLTS
    mx, my = sum(xs) / 3, sum(ys) / 3
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return (my + slope * (volts - mx)) * 2.0 * math.pi / 60.0


@dataclass(frozen=True)
class Motor:
    id: int
    name: str
    model: str
    direction: int
    offset_rad: float
    ticks_per_turn: int
    min_rad: float = -math.inf      # joint range (the driver enforces it)
    max_rad: float = math.inf
    max_velocity_rad_s: float = 0.0   # 0 = the servo's own speed

    def clip(self, rad: float) -> float:
        return min(max(rad, self.min_rad), self.max_rad)

    def raw_limits(self) -> tuple[int, int, float] | None:
        """(min, max) raw ticks within the range, and the maximum velocity in
        ticks per second; None when the motor has no range."""
        if not (math.isfinite(self.min_rad) and math.isfinite(self.max_rad)):
            return None
        k = self.direction * self.ticks_per_turn / (2.0 * math.pi)
        a, b = (self.min_rad - self.offset_rad) * k, (self.max_rad - self.offset_rad) * k
        return math.ceil(min(a, b) - 1e-9), math.floor(max(a, b) + 1e-9), self.max_velocity_rad_s * abs(k)

    def raw_to_rad(self, raw: int) -> float:
        return self.direction * (2.0 * math.pi * raw / self.ticks_per_turn) + self.offset_rad

    def rad_to_raw(self, rad: float) -> int:
        return int(round((rad - self.offset_rad) * self.direction * self.ticks_per_turn / (2.0 * math.pi)))


def _limits(e: dict, i: int, name: str, default_vmax) -> tuple[float, float, float]:
    """An entry's joint range (min_rad, max_rad: both or neither) and maximum
    velocity (max_velocity_rad_s, else the file's default)."""
    where = f"motor map: entry {i} ({name})"
    if ("min_rad" in e) != ("max_rad" in e):
        raise ValueError(f"{where}: give both min_rad and max_rad, or neither")
    try:
        lo, hi = float(e.get("min_rad", -math.inf)), float(e.get("max_rad", math.inf))
        vmax = float(e.get("max_velocity_rad_s", default_vmax))
    except (TypeError, ValueError):
        raise ValueError(f"{where}: min_rad, max_rad and max_velocity_rad_s must be numbers") from None
    if "min_rad" in e and not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{where}: min_rad {lo} must be < max_rad {hi}, both finite")
    if not (math.isfinite(vmax) and vmax >= 0):
        raise ValueError(f"{where}: max_velocity_rad_s must be >= 0 (0 = unbounded), got {vmax}")
    return lo, hi, vmax


class MotorMap:
    """Ordered motor table. Raises ValueError naming the bad entry."""

    def __init__(self, motors: list[Motor], current_unit_ma: float = 1.0, voltage_unit_v: float = 0.1) -> None:
        if not motors:
            raise ValueError("motor map is empty")
        ids = [m.id for m in motors]
        names = [m.name for m in motors]
        for label, vals in (("id", ids), ("name", names)):
            dup = {v for v in vals if vals.count(v) > 1}
            if dup:
                raise ValueError(f"motor map: duplicate {label} {sorted(dup)}")
        self.motors = motors
        self.current_unit_ma = current_unit_ma
        self.voltage_unit_v = voltage_unit_v
        self.by_id = {m.id: m for m in motors}
        self.by_name = {m.name: m for m in motors}

    @property
    def ids(self) -> list[int]:
        return [m.id for m in self.motors]

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.motors]

    @classmethod
    def from_dict(cls, data: dict) -> "MotorMap":
        if not isinstance(data, dict) or not isinstance(data.get("motors"), list):
            raise ValueError("motor map: expected a mapping with a 'motors' list")
        tpt = int(data.get("ticks_per_turn", 4096))
        off = float(data.get("offset_rad", -math.pi))
        if tpt <= 0:
            raise ValueError("motor map: ticks_per_turn must be > 0")
        motors = []
        for i, e in enumerate(data["motors"]):
            try:
                mid = int(e["id"])
                name = str(e["name"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"motor map: entry {i} needs an integer 'id' and a 'name': {e!r}") from None
            if not 0 <= mid <= 252:
                raise ValueError(f"motor map: entry {i} ({name}): id {mid} out of range 0..252")
            direction = int(e.get("direction", 1))
            if direction not in (1, -1):
                raise ValueError(f"motor map: entry {i} ({name}): direction must be 1 or -1")
            lo, hi, vmax = _limits(e, i, name, data.get("max_velocity_rad_s", 0.0))
            motors.append(Motor(mid, name, str(e.get("model", "")), direction,
                                float(e.get("offset_rad", off)), int(e.get("ticks_per_turn", tpt)), lo, hi, vmax))
        return cls(motors, float(data.get("current_unit_ma", 1.0)), float(data.get("voltage_unit_v", 0.1)))

    @classmethod
    def load(cls, path: str | None = None) -> "MotorMap":
        return cls.from_dict(read_yaml(path or config_path("motors.yaml"), "motor map"))
