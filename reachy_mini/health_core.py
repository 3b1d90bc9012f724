"""Diagnostics aggregation without ROS: items keyed by status name, grouped
per node of the node table into a hierarchy rqt_robot_monitor can draw
("/Reachy Mini/Motors/stewart_1"), with stale detection.

Level rule for a group (and the top level): STALE if every child is STALE;
otherwise the highest non-stale child level, raised to ERROR when any child
is STALE (a silent component is a failure, not a warning).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .diag import ERROR, OK, STALE

GROUP_LABELS = {"motor_node": "Motors", "camera_node": "Camera", "audio_node": "Audio",
                "health_node": "System", "web_bridge": "Web"}


@dataclass
class Item:
    name: str
    level: int
    message: str
    hardware_id: str
    values: list[tuple[str, str]]
    stamp: float


@dataclass
class Out:
    name: str
    level: int
    message: str
    hardware_id: str = ""
    values: list[tuple[str, str]] = field(default_factory=list)


def combine(levels: list[int]) -> int:
    if not levels:
        return STALE
    fresh = [lv for lv in levels if lv != STALE]
    if not fresh:
        return STALE
    lv = max(fresh)
    return max(lv, ERROR) if len(fresh) < len(levels) else lv


class Aggregator:
    def __init__(self, expected: dict[str, float], root: str = "Reachy Mini") -> None:
        self.expected = dict(expected)        # node name -> stale timeout (s)
        self.root = root
        self.items: dict[str, Item] = {}       # full status name -> item
        self.last_seen: dict[str, float] = {}  # node -> last stamp
        self.started = None

    @staticmethod
    def split(name: str) -> tuple[str, str]:
        node, sep, task = name.partition(": ")
        return (node.strip("/").split("/")[-1], task) if sep else ("other", name)

    def update(self, name: str, level: int, message: str, hardware_id: str, values, now: float) -> int | None:
        """Stores one status; returns the previous level (None if new)."""
        prev = self.items.get(name)
        self.items[name] = Item(name, level, message, hardware_id, list(values), now)
        node, _ = self.split(name)
        self.last_seen[node] = now
        return prev.level if prev else None

    def report(self, now: float) -> tuple[list[Out], Out]:
        if self.started is None:
            self.started = now
        groups: dict[str, list[Out]] = {}
        for it in self.items.values():
            node, task = self.split(it.name)
            timeout = self.expected.get(node, 5.0)
            stale = now - it.stamp > timeout
            lv = STALE if stale else it.level
            msg = f"stale: no update for {now - it.stamp:.1f} s ({it.message})" if stale else it.message
            label = GROUP_LABELS.get(node, node)
            groups.setdefault(node, []).append(Out(f"/{self.root}/{label}/{task}", lv, msg, it.hardware_id, it.values))
        out: list[Out] = []
        for node, timeout in self.expected.items():
            seen = self.last_seen.get(node)
            label = GROUP_LABELS.get(node, node)
            silent_for = now - (seen if seen is not None else self.started)
            children = groups.get(node, [])
            if seen is None or silent_for > timeout:
                lv, msg = STALE, f"no diagnostics from {node} for {max(silent_for, timeout):.1f} s"
            else:
                lv = combine([c.level for c in children])
                bad = [c for c in children if c.level != OK]
                msg = "OK" if not bad else "; ".join(f"{c.name.rsplit('/', 1)[-1]}: {c.message}" for c in bad[:3])
            out.append(Out(f"/{self.root}/{label}", lv, msg, values=[("node", node)]))
            out.extend(children)
        for node, children in groups.items():
            if node not in self.expected:
                label = GROUP_LABELS.get(node, node)
                out.append(Out(f"/{self.root}/{label}", combine([c.level for c in children]), "unexpected component"))
                out.extend(children)
        tops = [o for o in out if o.name.count("/") == 2]
        top_lv = combine([o.level for o in tops]) if tops else STALE
        bad = [o for o in tops if o.level != OK]
        top_msg = "all components OK" if not bad else "; ".join(f"{o.name.rsplit('/', 1)[-1]}: {o.message}" for o in bad)
        top = Out(f"/{self.root}", top_lv, top_msg)
        return [top] + out, top

    def prune(self, now: float, forget_after_s: float = 3600.0) -> None:
        for k in [k for k, it in self.items.items() if now - it.stamp > forget_after_s]:
            del self.items[k]
