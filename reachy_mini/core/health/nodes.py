"""Rules about the stack's own nodes (plain Python): are they publishing
diagnostics, are they hung, how often did they restart, and what to record.

Who does what (one owner per job):
- The hang signal is each node's spin-loop heartbeat: ros/runner.py touches
  `<runtime dir>/reachy_mini_run[/<namespace>]/<node>.alive` every second
  (common/paths.heartbeat_file). A live process whose heartbeat is older than
  the hang timeout is hung (SIGSTOP, a deadlock, a callback that never
  returns).
- Restarts are owned by the process manager that started the stack:
  reachy-mini-bringup (it also kills its hung children) or ros2 launch's
  respawn. Under ros2 launch nothing else can see a hang, so health_node
  kills a hung node *of its own launch* (a sibling process in its namespace)
  and launch respawns it. Nobody touches other processes of the user.
- health_node reports: silence on /diagnostics (STALE), hangs, restarts.
"""
from __future__ import annotations

from reachy_mini.core.levels import ERROR, OK, STALE, WARN, Level

RESTART_WINDOW_S = 600.0
STARTED_WITH_S = 5.0   # a process started at most this long before the health node restarted with it


class NodeWatch:
    """Which expected nodes publish diagnostics: last status time per node
    (the part of a status name before ': ', namespace stripped)."""

    def __init__(self, expected: dict[str, float], started: float) -> None:
        self.expected = dict(expected)   # node -> stale timeout (s)
        self.started = started
        self.last: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._node_of: dict[str, str] = {}

    def seen(self, status_name: str, now: float) -> None:
        node = self._node_of.get(status_name)
        if node is None:
            head, sep, _ = status_name.partition(": ")
            node = head.strip("/").rsplit("/", 1)[-1] if sep else ""
            if len(self._node_of) > 10000:   # bounded, whatever names arrive
                self._node_of.clear()
            self._node_of[status_name] = node
        if node:
            self.last[node] = now
            self.counts[node] = self.counts.get(node, 0) + 1

    def silent_for(self, node: str, now: float) -> float:
        return now - self.last.get(node, self.started)

    def is_silent(self, node: str, now: float) -> bool:
        return self.silent_for(node, now) > self.expected.get(node, 5.0)

    def message(self, node: str, now: float) -> str:
        s = self.silent_for(node, now)
        if node not in self.last:
            return f"no diagnostics from {node} for {s:.1f} s (none since the health node started)"
        return f"no diagnostics from {node} for {s:.1f} s"


def is_hung(beat_age: float | None, process_alive: bool, process_age: float | None, hang_timeout: float) -> bool:
    """The one hang rule: the process exists (running, sleeping or stopped),
    has lived longer than the hang timeout, and its spin loop has not beaten
    for that long (a process that never beat counts from its start)."""
    if not process_alive or (process_age is not None and process_age <= hang_timeout):
        return False
    age = beat_age if beat_age is not None else process_age
    return age is not None and age > hang_timeout


def node_status(node: str, info, watch: NodeWatch, now: float, hang_timeout: float,
                recent_restarts: int = 0) -> tuple[Level, str, bool]:
    """Level and message of one expected node, and whether it is hung.
    `info` is a system.ProcInfo (or None when unknown)."""
    alive = bool(info and info.alive)
    proc = f"process {info.pid} {info.status}" if alive else "process not running"
    beat = info.beat_age_s if info else None
    if is_hung(beat, alive, info.age_s if info else None, hang_timeout):
        return ERROR, f"hung: {proc} but its spin loop has not run for {beat if beat is not None else info.age_s:.1f} s", True
    if watch.is_silent(node, now):
        return STALE, f"{watch.message(node, now)} ({proc})", False
    if recent_restarts:
        exit_txt = f", last exit {info.last_exit}" if info and info.last_exit is not None else ""
        return WARN, f"restarted {recent_restarts}x in the last 10 min{exit_txt}", False
    return OK, "publishing" if alive else "publishing (process not found)", False


class RestartLog:
    """Restarts and hang kills per node, from the process manager's counters
    (reachy-mini-bringup's state file) or from pid changes (ros2 launch):
    what happened since the last sample, as incidents to record."""

    def __init__(self, names) -> None:
        self.times: dict[str, list[float]] = {n: [] for n in names}
        self.seen: dict[str, tuple[int, int, int | None]] = {}   # name -> (restarts, hang kills, pid)
        self.hang_kills: dict[str, int] = {n: 0 for n in names}

    def observe(self, infos: dict, wall: float) -> list[tuple[str, str, str]]:
        """[(node, kind, message)] with kind 'restart' or 'hang'."""
        out = []
        me = infos.get("health_node")
        own_age = getattr(me, "age_s", None)
        for name, info in infos.items():
            prev = self.seen.get(name)
            restarts, kills = info.restarts, info.hang_kills
            if prev is None and restarts and own_age is not None and info.age_s is not None \
                    and info.age_s <= own_age + STARTED_WITH_S:
                # restarted with this health node (it shares its process, or is the health node): nobody
                # else saw that restart happen
                if kills:
                    out.append((name, "hang", f"{name} hung (spin loop stopped) or was killed; the process "
                                              f"manager restarted it (hang restarts: {kills})"))
                self.times[name].append(wall)
                out.append((name, "restart", f"{name} restarted with the health node (restart #{restarts}, "
                                             f"last exit {info.last_exit})"))
            if info.source == "scan" and prev is not None and info.pid and prev[2] and info.pid != prev[2]:
                restarts = prev[0] + 1          # ros2 launch: a new pid is a restart
            if prev is not None and kills > prev[1]:
                out.append((name, "hang", f"{name} hung (spin loop stopped); the process manager killed pid "
                                          f"{prev[2]} and restarts it"))
            if prev is not None and restarts > prev[0]:
                self.times[name].append(wall)
                out.append((name, "restart", f"{name} restarted (restart #{restarts}, last exit {info.last_exit})"))
            self.times[name] = [t for t in self.times[name] if wall - t < RESTART_WINDOW_S]
            self.seen[name] = (restarts, kills, info.pid or (prev[2] if prev else None))
            self.hang_kills[name] = max(self.hang_kills[name], kills)
        return out

    def recent(self, name: str) -> int:
        return len(self.times.get(name, []))

    def total(self, name: str) -> int:
        return self.seen.get(name, (0, 0, None))[0]


class LevelChanges:
    """The last recorded level of each name, so that only changes become
    incidents; bounded: names that left the tree are forgotten."""

    def __init__(self, levels: dict[str, int] | None = None) -> None:
        self.levels = dict(levels or {})

    def change(self, name: str, level: int) -> tuple[bool, int | None]:
        """(changed, previous level)."""
        prev = self.levels.get(name)
        if prev == level:
            return False, prev
        self.levels[name] = int(level)
        return True, prev

    def previous(self, name: str) -> int | None:
        return self.levels.get(name)

    def prune(self, live: set[str], max_names: int = 20000) -> None:
        if len(self.levels) > max_names or any(k not in live for k in self.levels):
            self.levels = {k: v for k, v in self.levels.items() if k in live}
