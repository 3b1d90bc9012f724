"""Diagnostics aggregation without ROS, driven by diagnostic_aggregator's
analyzer YAML, so an existing aggregator config for these keys works
unchanged:

- top-level ``path``;
- ``diagnostic_aggregator/GenericAnalyzer`` with ``path``, ``startswith``,
  ``contains``, ``name``, ``expected``, ``regex`` (whole-name match),
  ``find_and_remove_prefix``, ``remove_prefix``, ``timeout`` (5 s),
  ``num_items`` (-1 = any), ``discard_stale``;
- ``diagnostic_aggregator/AnalyzerGroup`` with ``path`` and ``analyzers``;
- ``diagnostic_aggregator/DiscardAnalyzer`` (matched items are dropped);
- items no analyzer matches go to ``<path>/Other``, as in the aggregator.

Level rule for a group, a top-level state and our REP-107 reading of it
(the same as diagnostic_aggregator's): the level is the highest child
level; STALE only when *every* child is STALE; a mix of STALE and fresh
children is ERROR (a component that went silent is a fault, not a
warning). A ``num_items`` mismatch is ERROR, "expected N, found M". A group
with no items and no ``num_items`` is OK, as in the aggregator.

Hot path: ``Aggregator.update`` is a dict lookup plus attribute stores; the
analyzer routing of a name is computed once and cached.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from reachy_mini.core.levels import ERROR, OK, STALE, Level, combine


class ConfigError(ValueError):
    """An invalid analyzer configuration; the message names the analyzer and key."""


class Item:
    """The latest status of one name. ``values`` is kept as received (tuples
    or KeyValue messages) and converted only when reported."""
    __slots__ = ("name", "level", "message", "hardware_id", "values", "stamp")

    def __init__(self, name: str, level: int, message: str, hardware_id: str, values, stamp: float | None):
        self.name, self.level, self.message = name, level, message
        self.hardware_id, self.values, self.stamp = hardware_id, values, stamp


@dataclass
class Out:
    name: str
    level: int
    message: str
    hardware_id: str = ""
    values: list[tuple[str, str]] = field(default_factory=list)



def _kv(values) -> list[tuple[str, str]]:
    return [v if isinstance(v, tuple) else (v.key, v.value) for v in values]


def remove_chaff(full_name: str, chaff: str) -> str:
    """diagnostic_aggregator's removeLeadingNameChaff: strips `chaff` from
    the start of the last path element, then a leading ':' and spaces."""
    if not chaff:
        return full_name
    cut = full_name.rfind("/") + 1
    head, tail = full_name[:cut], full_name[cut:]
    if tail.startswith(chaff):
        tail = tail[len(chaff):]
    if tail.startswith(":"):
        tail = tail[1:]
    return head + tail.lstrip(" ")


def _join(base: str, nice: str) -> str:
    p = nice if base in ("", "/") else f"{base.rstrip('/')}/{nice}"
    return p if p.startswith("/") else "/" + p


def _strings(owner: str, key: str, v) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
        return list(v)
    raise ConfigError(f"analyzer '{owner}': '{key}' must be a string or a list of strings, got {v!r}")


def _summary(level: int, children: list[Out]) -> str:
    if level == OK:
        return "OK"
    bad = [c for c in children if c.level != OK]
    detail = "; ".join(f"{c.name.rsplit('/', 1)[-1]}: {shown_message(c.message, c.values)}" for c in bad[:3])
    more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
    return f"{Level(level).text}: {detail}{more}" if detail else Level(level).text


CAUSE_KEY = "cause"   # a group's summary, kept beside its bare-word message


def _group(path: str, level: int, summary: str, values: list[tuple[str, str]] | None = None) -> Out:
    """A group's row as diagnostic_aggregator writes it: the bare level word
    (valToMsg: 'OK', 'Warning', 'Error', 'Stale') as its message, which is
    how rqt_robot_monitor tells a group from a fault (it lists a non-leaf
    row only if its message is not the bare word, else every fault shows
    once per ancestor); our summary of the cause goes in the 'cause' value."""
    word = Level(level).text
    cause = [(CAUSE_KEY, summary)] if summary != word else []
    return Out(path, level, word, values=cause + list(values or []))


def shown_message(message: str, values) -> str:
    """What a person reads for a row: a group's cause (its 'cause' value)
    instead of the bare level word; any other row's own message."""
    if message in _WORDS:
        for kv in values:
            k, v = kv if isinstance(kv, tuple) else (kv.key, kv.value)
            if k == CAUSE_KEY:
                return v
    return message


_WORDS = {lv.text for lv in Level}


class GenericAnalyzer:
    KEYS = {"type", "path", "startswith", "contains", "name", "expected", "regex", "find_and_remove_prefix",
            "remove_prefix", "timeout", "num_items", "discard_stale"}

    def __init__(self, key: str, cfg: dict, base_path: str) -> None:
        unknown = set(cfg) - self.KEYS
        if unknown:
            raise ConfigError(f"analyzer '{key}': unknown key(s) {sorted(unknown)}; known: {sorted(self.KEYS)}")
        if not isinstance(cfg.get("path"), str) or not cfg["path"]:
            raise ConfigError(f"analyzer '{key}': 'path' (a non-empty string) is required")
        self.key = key
        self.nice = cfg["path"]
        self.path = _join(base_path, self.nice)
        get = lambda k: _strings(key, k, cfg[k]) if k in cfg else []  # noqa: E731
        self.chaff = get("find_and_remove_prefix")
        self.startswith = get("startswith") + self.chaff
        self.chaff = [c.replace("/", " ") for c in self.chaff + get("remove_prefix")]
        self.contains = get("contains")
        self.names = set(get("name")) | set(get("expected"))
        self.expected = get("expected")
        self.regex = []
        for r in get("regex"):
            try:
                self.regex.append(re.compile(r))
            except re.error as e:
                raise ConfigError(f"analyzer '{key}': regex {r!r} is invalid: {e}") from None
        if not (self.startswith or self.contains or self.names or self.regex):
            raise ConfigError(f"analyzer '{key}': needs at least one of startswith, find_and_remove_prefix, "
                              "contains, name, expected, regex")
        try:
            self.timeout = float(cfg.get("timeout", 5.0))
            self.num_items = int(cfg.get("num_items", -1))
        except (TypeError, ValueError):
            raise ConfigError(f"analyzer '{key}': 'timeout' must be a number and 'num_items' an integer") from None
        self.discard_stale = cfg.get("discard_stale", False)
        if not isinstance(self.discard_stale, bool):
            raise ConfigError(f"analyzer '{key}': 'discard_stale' must be true or false")
        self.items: dict[str, Item] = {e: Item(e, STALE, "Missing", "", (), None) for e in self.expected}
        self._out_names: dict[str, str] = {}

    def match(self, name: str) -> bool:
        return (name in self.names or any(name.startswith(s) for s in self.startswith)
                or any(c in name for c in self.contains) or any(r.fullmatch(name) for r in self.regex))

    def leaves(self):
        yield self

    def out_name(self, name: str) -> str:
        o = self._out_names.get(name)
        if o is None:
            o = f"{self.path}/{name.replace('/', ' ')}"
            for c in self.chaff:
                o = remove_chaff(o, c)
            self._out_names[name] = o
        return o

    def report(self, now: float) -> list[Out]:
        children: list[Out] = []
        for name in list(self.items):
            it = self.items[name]
            stale = it.stamp is None or (self.timeout > 0 and now - it.stamp > self.timeout)
            if stale and self.discard_stale and it.stamp is not None:
                del self.items[name]
                continue
            if stale and it.stamp is not None:
                msg = f"stale: no update for {now - it.stamp:.1f} s (last: {it.message})"
            else:
                msg = it.message
            children.append(Out(self.out_name(name), STALE if stale else it.level, msg, it.hardware_id,
                                _kv(it.values)))
        level = combine([c.level for c in children])
        message = _summary(level, children)
        n = len(children)
        if self.num_items >= 0 and n != self.num_items:
            found = ", ".join(c.name.rsplit("/", 1)[-1] for c in children[:12])
            extra = f"; {message}" if level != OK else ""
            level = max(level, ERROR)
            message = f"expected {self.num_items}, found {n}" + (f" ({found})" if found else "") + extra
        values = [(c.name.rsplit("/", 1)[-1], c.message) for c in children]
        if self.num_items >= 0 and n != self.num_items:   # the aggregator's "Expected N, found M": not a bare word
            header = Out(self.path, level, message, values=values)
        else:
            header = _group(self.path, level, message, values)
        return [header] + children


class DiscardAnalyzer(GenericAnalyzer):
    """Matches like a GenericAnalyzer and reports nothing."""

    def report(self, now: float) -> list[Out]:
        self.items.clear()
        return []


class AnalyzerGroup:
    def __init__(self, key: str, cfg: dict, base_path: str) -> None:
        unknown = set(cfg) - {"type", "path", "analyzers"}
        if unknown:
            raise ConfigError(f"analyzer group '{key}': unknown key(s) {sorted(unknown)}")
        if not isinstance(cfg.get("path"), str) or not cfg["path"]:
            raise ConfigError(f"analyzer group '{key}': 'path' (a non-empty string) is required")
        subs = cfg.get("analyzers")
        if not isinstance(subs, dict) or not subs:
            raise ConfigError(f"analyzer group '{key}': 'analyzers' must map names to analyzers")
        self.key = key
        self.path = _join(base_path, cfg["path"])
        self.children = [make_analyzer(k, v, self.path) for k, v in subs.items()]

    def match(self, name: str) -> bool:
        return any(c.match(name) for c in self.children)

    def leaves(self):
        for c in self.children:
            yield from c.leaves()

    def report(self, now: float) -> list[Out]:
        outs: list[Out] = []
        heads: list[Out] = []
        for c in self.children:
            r = c.report(now)
            if r:
                heads.append(r[0])
                outs.extend(r)
        level = combine([h.level for h in heads])
        return [_group(self.path, level, _summary(level, heads))] + outs


TYPES = {
    "diagnostic_aggregator/GenericAnalyzer": GenericAnalyzer,
    "diagnostic_aggregator/AnalyzerGroup": AnalyzerGroup,
    "diagnostic_aggregator/DiscardAnalyzer": DiscardAnalyzer,
}


def make_analyzer(key: str, cfg: Any, base_path: str):
    if not isinstance(cfg, dict):
        raise ConfigError(f"analyzer '{key}': expected a mapping, got {type(cfg).__name__}")
    t = cfg.get("type")
    cls = TYPES.get(t) or TYPES.get(f"diagnostic_aggregator/{t}")
    if cls is None:
        raise ConfigError(f"analyzer '{key}': type {t!r} is not supported; supported: {sorted(TYPES)}")
    return cls(key, cfg, base_path)


def _unflatten(d: dict) -> dict:
    """ROS 2 parameter files may spell nested keys as 'motors.path'."""
    out: dict = {}
    for k, v in d.items():
        v = _unflatten(v) if isinstance(v, dict) else v
        cur = out
        parts = str(k).split(".")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        if isinstance(v, dict) and isinstance(cur.get(parts[-1]), dict):
            cur[parts[-1]].update(v)
        else:
            cur[parts[-1]] = v
    return out


def analyzer_params(doc: Any) -> dict:
    """The analyzer parameters from a YAML document: `<node>: ros__parameters:`
    (any node key, e.g. `analyzers` or `/**`), or the bare mapping."""
    if not isinstance(doc, dict):
        raise ConfigError("analyzer file: the top level must be a mapping")
    scoped = [v["ros__parameters"] for v in doc.values() if isinstance(v, dict) and "ros__parameters" in v]
    params = {}
    for s in scoped:
        params.update(s)
    if not scoped:
        params = doc
    params = _unflatten(params)
    if set(params) == {"analyzers"} and isinstance(params["analyzers"], dict) and "type" not in params["analyzers"]:
        params = params["analyzers"]  # ROS 1 style: analyzers: {path: ..., motors: {...}}
    return params


# Top-level parameters of aggregator_node that are not analyzers.
TOP_LEVEL_KEYS = {"path", "base_path", "pub_rate", "other_as_errors", "critical", "use_sim_time"}


class Aggregator:
    def __init__(self, params: dict, other_timeout: float = 5.0) -> None:
        root_path = params.get("path", params.get("base_path", ""))
        if not isinstance(root_path, str):
            raise ConfigError("analyzer file: 'path' must be a string")
        analyzers = {k: v for k, v in params.items() if k not in TOP_LEVEL_KEYS}
        bad = [k for k, v in analyzers.items() if not isinstance(v, dict)]
        if bad:
            raise ConfigError(f"analyzer file: unknown top-level key(s) {bad}")
        self.root_path = _join("", root_path) if root_path not in ("", "/") else ""
        self.root = [make_analyzer(k, v, self.root_path or "/") for k, v in analyzers.items()]
        self.leaves = [leaf for a in self.root for leaf in a.leaves()]
        self.other = GenericAnalyzer("other", {"path": "Other", "regex": [".*"], "timeout": other_timeout,
                                               "discard_stale": True}, self.root_path or "/")
        self.other_as_errors = bool(params.get("other_as_errors", False))
        self.items: dict[str, Item] = {}
        self.routes: dict[str, list[GenericAnalyzer]] = {}
        self.updates = 0

    def route(self, name: str) -> list[GenericAnalyzer]:
        r = self.routes.get(name)
        if r is None:
            r = [leaf for leaf in self.leaves if leaf.match(name)] or [self.other]
            self.routes[name] = r
        return r

    def out_names(self, name: str) -> list[str]:
        return [a.out_name(name) for a in self.route(name) if not isinstance(a, DiscardAnalyzer)]

    def update(self, name: str, level: int, message: str, hardware_id: str, values, now: float) -> int | None:
        """Stores one status; returns its previous level (None if new)."""
        self.updates += 1
        it = self.items.get(name)
        if it is None:
            it = self.items[name] = Item(name, level, message, hardware_id, values, now)
            prev = None
        else:
            prev = it.level
            it.level, it.message, it.hardware_id, it.values, it.stamp = level, message, hardware_id, values, now
        for a in self.route(name):
            a.items[name] = it
        return prev

    def report(self, now: float) -> tuple[list[Out], Out]:
        outs: list[Out] = []
        heads: list[Out] = []
        for a in self.root:
            r = a.report(now)
            if r:
                heads.append(r[0])
                outs.extend(r)
        other = self.other.report(now)
        if len(other) > 1:
            if self.other_as_errors:
                other[0].level = max(other[0].level, ERROR)
            heads.append(other[0])
            outs.extend(other)
        if self.root_path:
            lv = combine([h.level for h in heads]) if heads else STALE
            outs.insert(0, _group(self.root_path, lv, _summary(lv, heads) if heads else "no diagnostics received"))
        if not outs:
            return outs, Out("toplevel_state", STALE, "no diagnostics received")
        levels = [o.level for o in outs]
        top = max(levels)
        if top == STALE and min(levels) < STALE:
            top = ERROR
        return outs, Out("toplevel_state", top, _summary(top, heads) if heads else Level(top).text)

    def prune(self, now: float, forget_after_s: float = 3600.0) -> int:
        """Forgets items not updated for an hour (names that are gone for good)."""
        old = [k for k, it in self.items.items() if it.stamp is not None and now - it.stamp > forget_after_s]
        for k in old:
            del self.items[k]
            for a in self.routes.pop(k, []):
                a.items.pop(k, None)
                a._out_names.pop(k, None)
        return len(old)


def load_aggregator(path: str) -> Aggregator:
    import yaml

    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"analyzer file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"analyzer file {path}: invalid YAML: {e}") from None
    try:
        return Aggregator(analyzer_params(doc))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
