"""The one definition of a health level (REP-107 / diagnostic_msgs):
OK < WARN < ERROR < STALE, with their names, the group rule and the
conversions to and from the 1-byte `bytes` of `DiagnosticStatus.level`.

Every layer uses it: the nodes' checks, the aggregator, incidents, the web
API and the metrics. Plain Python, no ROS.
"""
from __future__ import annotations

from enum import IntEnum
from typing import Iterable


class Level(IntEnum):
    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3

    @property
    def text(self) -> str:
        """diagnostic_aggregator's spelling in summaries: 'OK', 'Warning', 'Error', 'Stale'."""
        return _TEXT[self]

    @property
    def healthy(self) -> bool:
        """OK and WARN: the robot works (/api/health answers 200)."""
        return self <= Level.WARN

    def to_bytes(self) -> bytes:
        """DiagnosticStatus.level: b'\\x00' .. b'\\x03'."""
        return _BYTES[self]

    @classmethod
    def of(cls, value) -> "Level":
        """From a DiagnosticStatus.level (1-byte bytes), an int, a Level or a
        name ('ERROR', 'error'). Raises ValueError for anything else."""
        if isinstance(value, cls):
            return value
        if isinstance(value, (bytes, bytearray)):
            if len(value) != 1:
                raise ValueError(f"a diagnostic level is one byte, got {bytes(value)!r}")
            value = value[0]
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                raise ValueError(f"unknown level name {value!r}; known: {', '.join(NAMES.values())}") from None
        try:
            return cls(int(value))
        except (TypeError, ValueError):
            raise ValueError(f"unknown level {value!r}; levels are 0 OK, 1 WARN, 2 ERROR, 3 STALE") from None

    @classmethod
    def name_of(cls, value) -> str:
        """'OK' .. 'STALE', or str(value) for a value that is not a level."""
        try:
            return cls.of(value).name
        except ValueError:
            return str(value)


OK, WARN, ERROR, STALE = Level.OK, Level.WARN, Level.ERROR, Level.STALE
NAMES: dict[int, str] = {lv.value: lv.name for lv in Level}
_TEXT = {OK: "OK", WARN: "Warning", ERROR: "Error", STALE: "Stale"}
_BYTES = {lv: bytes([lv.value]) for lv in Level}
DESCRIPTION = "0 OK, 1 WARN, 2 ERROR, 3 STALE"


def worst(levels: Iterable[int]) -> Level:
    """The highest of the levels of one item's checks (OK if none)."""
    return Level(max(levels, default=OK))


def combine(levels: Iterable[int]) -> Level:
    """A group's level from its children's (diagnostic_aggregator's rule):
    the highest; STALE only when *every* child is STALE; a mix of STALE and
    fresh children is ERROR (a part that went silent is a fault). No
    children: OK."""
    levels = list(levels)
    if not levels:
        return OK
    top = max(levels)
    if top == STALE and min(levels) < STALE:
        return ERROR
    return Level(top)
