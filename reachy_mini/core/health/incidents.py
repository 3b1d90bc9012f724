"""Incident history in SQLite: every level change of every diagnostic item,
plus restarts and hang kills. Plain Python, no rclpy.

- ``IncidentWriter`` (health node): ``record()`` only appends to a bounded
  queue, so ROS callbacks never wait on the disk; a writer thread inserts
  in batches and enforces retention (age in days and row count) with
  incremental vacuum, so the file shrinks back.
- ``query()`` / ``summary()`` (web bridge, CLI): read-only, safe to call from
  another process while the writer runs (WAL mode).
- A damaged database at start is moved aside (``*.damaged-<time>``) and a
  fresh one is used (``IncidentWriter.moved_aside`` says where it went).
- ``export()``, ``backup()`` (SQLite's online backup API, then an integrity
  check of the copy) and ``restore()`` (refuses a damaged file).

    reachy-mini-incidents [--db PATH] [--since 3600] [--limit 50]
    reachy-mini-incidents export --format csv|json [--since S] [--output FILE]
    reachy-mini-incidents backup [DEST] [--keep 7]
    reachy-mini-incidents restore FILE
"""
from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass

from reachy_mini.core.levels import Level

DB_NAME = "incidents.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    t REAL NOT NULL,              -- wall time, seconds since the epoch
    name TEXT NOT NULL,           -- aggregated name, e.g. /Reachy Mini/Motors/stewart_2
    level INTEGER NOT NULL,       -- 0 OK, 1 WARN, 2 ERROR, 3 STALE
    prev_level INTEGER,           -- NULL: first seen
    message TEXT NOT NULL DEFAULT '',
    hardware_id TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL DEFAULT 'level',  -- level | restart | hang | crash
    robot TEXT NOT NULL DEFAULT '',      -- the robot's name (robot_name)
    snapshot TEXT                        -- its flight-recorder file (core/health/recorder.py), NULL: none
);
CREATE INDEX IF NOT EXISTS incidents_t ON incidents(t);
CREATE INDEX IF NOT EXISTS incidents_name ON incidents(name, id);
"""


def default_data_dir(namespace: str | None = None) -> str:
    from reachy_mini.common.paths import data_dir

    return data_dir(namespace)


def db_path(data_dir: str) -> str:
    return os.path.join(data_dir, DB_NAME)


@dataclass
class Incident:
    t: float
    name: str
    level: int
    prev_level: int | None
    message: str = ""
    hardware_id: str = ""
    kind: str = "level"
    robot: str = ""
    snapshot: str | None = None   # file name of the flight-recorder snapshot covering it


class DamagedDatabase(Exception):
    """The file is not a sound incident database (not SQLite, or fails PRAGMA integrity_check)."""


def check_file(path: str) -> None:
    """Raises DamagedDatabase unless `path` is a sound incident database."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        try:
            res = [r[0] for r in db.execute("PRAGMA integrity_check").fetchall()]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            db.close()
    except sqlite3.Error as e:
        raise DamagedDatabase(f"{path}: {type(e).__name__}: {e}") from None
    if res != ["ok"]:
        raise DamagedDatabase(f"{path}: integrity check failed: {'; '.join(res[:3])}")
    if "incidents" not in tables:
        raise DamagedDatabase(f"{path}: no incidents table")


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # effective on a new file only
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    cols = {r[1] for r in db.execute("PRAGMA table_info(incidents)")}
    if "robot" not in cols:   # a database from before robot_name: the column is added, rows keep ''
        db.execute("ALTER TABLE incidents ADD COLUMN robot TEXT NOT NULL DEFAULT ''")
    if "snapshot" not in cols:   # a database from before the flight recorder: rows keep NULL
        db.execute("ALTER TABLE incidents ADD COLUMN snapshot TEXT")
    return db


def _open_sound(path: str) -> tuple[sqlite3.Connection, str | None]:
    """Opens the database; a damaged one (not SQLite, failing quick_check)
    is moved aside with its -wal/-shm and a fresh one is created. Returns
    (connection, where the damaged file went or None)."""
    try:
        db = _connect(path)
        res = [r[0] for r in db.execute("PRAGMA quick_check").fetchall()]
        if res == ["ok"]:
            return db, None
        db.close()
        why = "; ".join(res[:3])
    except sqlite3.DatabaseError as e:   # "file is not a database", "database disk image is malformed"
        why = f"{type(e).__name__}: {e}"
    aside = f"{path}.damaged-{time.strftime('%Y%m%dT%H%M%S')}"
    for ext in ("", "-wal", "-shm"):
        if os.path.exists(path + ext):
            os.replace(path + ext, aside + ext)
    return _connect(path), f"{aside} ({why})"


class IncidentWriter:
    def __init__(self, data_dir: str, retention_days: float = 30.0, max_rows: int = 100_000,
                 queue_size: int = 10_000, prune_every_s: float = 60.0, robot: str = "") -> None:
        os.makedirs(data_dir, exist_ok=True)
        self.robot = robot   # stored with each incident that does not name its own
        self.path = db_path(data_dir)
        self.retention_days = float(retention_days)
        self.max_rows = int(max_rows)
        self.prune_every_s = prune_every_s
        self.q: queue.Queue = queue.Queue(maxsize=queue_size)
        self.written = self.dropped = self.pruned = self.errors = 0
        self.last_error = ""
        self._db, self.moved_aside = _open_sound(self.path)
        self._prune()
        self._stop = threading.Event()
        self._flushed = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name="incident-writer", daemon=True)
        self._thread.start()

    @property
    def thread(self):
        """The writer thread (alive until close())."""
        return self._thread

    def last_levels(self) -> dict[str, int]:
        """Level of each name as last recorded, so that the history carries on
        across restarts of the health node instead of restarting from 'new'."""
        rows = self._db.execute(
            "SELECT name, level FROM incidents WHERE id IN (SELECT MAX(id) FROM incidents "
            "WHERE kind = 'level' GROUP BY name)").fetchall()
        return dict(rows)

    def record(self, inc: Incident) -> bool:
        """Never blocks: a full queue drops the incident and counts it."""
        try:
            self.q.put_nowait(inc)
        except queue.Full:
            self.dropped += 1
            return False
        with self._flushed:
            self._pending += 1
        return True

    def flush(self, timeout: float = 5.0) -> bool:
        """Waits until everything recorded so far is on disk (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._flushed:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._flushed.wait(left)
        return True

    def _run(self) -> None:
        last_prune = time.monotonic()
        while not self._stop.is_set() or not self.q.empty():
            try:
                batch = [self.q.get(timeout=0.5)]
            except queue.Empty:
                batch = []
            while batch and len(batch) < 1000:
                try:
                    batch.append(self.q.get_nowait())
                except queue.Empty:
                    break
            if batch:
                try:
                    self._db.execute("BEGIN")
                    self._db.executemany(
                        "INSERT INTO incidents (t, name, level, prev_level, message, hardware_id, kind, robot, "
                        "snapshot) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [(i.t, i.name, i.level, i.prev_level, i.message[:1000], i.hardware_id, i.kind,
                          i.robot or self.robot, i.snapshot) for i in batch])
                    self._db.execute("COMMIT")
                    self.written += len(batch)
                except sqlite3.Error as e:
                    self.errors += 1
                    self.last_error = f"{type(e).__name__}: {e}"
                    try:
                        self._db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                with self._flushed:
                    self._pending -= len(batch)
                    self._flushed.notify_all()
            if time.monotonic() - last_prune > self.prune_every_s:
                last_prune = time.monotonic()
                self._prune()

    def _prune(self) -> None:
        try:
            cur = self._db.execute("DELETE FROM incidents WHERE t < ?", (time.time() - self.retention_days * 86400,))
            n = cur.rowcount
            cur = self._db.execute(
                "DELETE FROM incidents WHERE id <= (SELECT id FROM incidents ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (self.max_rows,))
            n += cur.rowcount
            if n > 0:
                self.pruned += n
                self._db.execute("PRAGMA incremental_vacuum")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as e:
            self.errors += 1
            self.last_error = f"prune: {type(e).__name__}: {e}"

    def prune_now(self) -> None:
        self.flush()
        self._prune()

    def rows(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM incidents").fetchone()[0]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        try:
            self._db.close()
        except sqlite3.Error:
            pass


def _ro(path: str) -> sqlite3.Connection | None:
    if not os.path.exists(path):
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
    db.row_factory = sqlite3.Row
    return db


def query(path: str, since: float | None = None, until: float | None = None, limit: int = 100,
          name_prefix: str | None = None, min_level: int | None = None, kind: str | None = None) -> list[dict]:
    """Newest first. `since`/`until` are epoch seconds; `path` is the
    database file (db_path(data_dir))."""
    db = _ro(path)
    if db is None:
        return []
    where, args = [], []
    if since is not None:
        where.append("t >= ?")
        args.append(float(since))
    if until is not None:
        where.append("t <= ?")
        args.append(float(until))
    if name_prefix:
        where.append("substr(name, 1, ?) = ?")
        args += [len(name_prefix), name_prefix]
    if min_level is not None:
        where.append("level >= ?")
        args.append(int(min_level))
    if kind:
        where.append("kind = ?")
        args.append(kind)
    cols = {r[1] for r in db.execute("PRAGMA table_info(incidents)")}
    robot = "robot" if "robot" in cols else "'' AS robot"   # read-only: an old file is not migrated here
    snap = "snapshot" if "snapshot" in cols else "NULL AS snapshot"
    sql = f"SELECT id, t, name, level, prev_level, message, hardware_id, kind, {robot}, {snap} FROM incidents"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    args.append(max(0, int(limit)))
    try:
        rows = db.execute(sql, args).fetchall()
    finally:
        db.close()
    out = []
    for r in rows:
        d = dict(r)
        d["level_name"] = Level.name_of(d["level"])
        d["prev_level_name"] = Level.name_of(d["prev_level"]) if d["prev_level"] is not None else None
        out.append(d)
    return out


def summary(path: str, since: float | None = None) -> dict:
    """Counts per kind and per level since `since`, and the row total."""
    db = _ro(path)
    if db is None:
        return {"rows": 0, "by_kind": {}, "by_level": {}}
    try:
        cond, args = ("WHERE t >= ?", [since]) if since is not None else ("", [])
        rows = db.execute("SELECT COUNT(*) FROM incidents").fetchone()[0]
        kinds = dict(db.execute(f"SELECT kind, COUNT(*) FROM incidents {cond} GROUP BY kind", args).fetchall())
        levels = {Level.name_of(k): n for k, n in
                  db.execute(f"SELECT level, COUNT(*) FROM incidents {cond} GROUP BY level", args).fetchall()}
    finally:
        db.close()
    return {"rows": rows, "by_kind": kinds, "by_level": levels}


EXPORT_FIELDS = ("id", "t", "time_utc", "robot", "kind", "name", "level", "level_name", "prev_level",
                 "prev_level_name", "message", "hardware_id", "snapshot")


def export(path: str, out, fmt: str = "json", since: float | None = None) -> int:
    """Writes every incident since `since` (epoch s; None: all), oldest first,
    to the text stream `out` as CSV (a header line, then one row each) or
    JSON (a list of objects). Returns the row count."""
    import csv
    import json

    rows = list(reversed(query(path, since=since, limit=1 << 62)))
    for r in rows:
        r["time_utc"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(r["t"])) + f".{int(r['t'] * 1000) % 1000:03d}Z"
    rows = [{k: r.get(k) for k in EXPORT_FIELDS} for r in rows]
    if fmt == "csv":
        w = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    elif fmt == "json":
        json.dump(rows, out, indent=1)
        out.write("\n")
    else:
        raise ValueError(f"unknown format {fmt!r} (csv or json)")
    return len(rows)


def backup(path: str, dest: str) -> int:
    """Copies the live database to `dest` with SQLite's online backup API (a
    consistent copy while health_node writes), then checks the copy
    (PRAGMA integrity_check); a bad copy is deleted and DamagedDatabase
    raised. Returns the copy's row count."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no incident database at {path}")
    part = dest + ".part"
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
    try:
        dst = sqlite3.connect(part)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")   # one self-contained file, no -wal beside it
        finally:
            dst.close()
    except sqlite3.Error as e:
        _unlink(part)
        raise DamagedDatabase(f"{path}: backup failed: {type(e).__name__}: {e}") from None
    finally:
        src.close()
    try:
        check_file(part)
    except DamagedDatabase:
        _unlink(part)
        raise
    os.replace(part, dest)
    db = sqlite3.connect(f"file:{dest}?mode=ro", uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM incidents").fetchone()[0]
    finally:
        db.close()


def restore(path: str, source: str) -> int:
    """Replaces the live database's content with `source` (a backup), after
    checking it: a damaged or foreign file is refused (DamagedDatabase) and
    nothing changes. Uses the backup API into the live file, so a running
    health_node keeps writing to the restored history. Returns its row count."""
    check_file(source)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=10.0)
    dst = _connect(path)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=WAL")
        _connect(path).close()   # the schema of today (a backup from an older version gains its columns)
        return dst.execute("SELECT COUNT(*) FROM incidents").fetchone()[0]
    finally:
        src.close()
        dst.close()


def prune_backups(directory: str, keep: int, prefix: str = "incidents-") -> list[str]:
    """Deletes all but the newest `keep` backups named <prefix>*.sqlite3."""
    names = sorted(n for n in os.listdir(directory) if n.startswith(prefix) and n.endswith(".sqlite3"))
    gone = names[:-keep] if keep > 0 else names
    for n in gone:
        _unlink(os.path.join(directory, n))
    return gone


def _unlink(p: str) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass


def main(argv=None) -> int:
    import argparse
    import sys

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=None, help="database file (default: the robot's, see --namespace)")
    common.add_argument("--namespace", default="", help="robot namespace (its own incident database)")
    p = argparse.ArgumentParser(prog="reachy-mini-incidents", parents=[common],
                                description="The incident history: print it (no command), export, back up, restore.")
    p.add_argument("--since", type=float, default=86400.0, help="seconds back from now (default 1 day)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--min-level", type=lambda v: int(Level.of(v) if not v.isdigit() else Level(int(v))),
                   help="0..3 or OK, WARN, ERROR, STALE")
    p.add_argument("--name", help="name prefix, e.g. '/Reachy Mini/Motors'")
    sub = p.add_subparsers(dest="cmd", metavar="{export,backup,restore}")
    e = sub.add_parser("export", parents=[common], help="every incident as CSV or JSON")
    e.add_argument("--format", choices=("csv", "json"), default="json")
    e.add_argument("--since", dest="export_since", type=float, default=None,
                   help="seconds back from now (default: the whole history)")
    e.add_argument("--output", "-o", default="-", help="file (default: standard output)")
    b = sub.add_parser("backup", parents=[common], help="a checked copy (SQLite online backup API)")
    b.add_argument("dest", nargs="?", default=None,
                   help="file or directory (default: <data dir>/backups/incidents-<UTC time>.sqlite3)")
    b.add_argument("--keep", type=int, default=7, help="backups kept in the default directory (default 7)")
    r = sub.add_parser("restore", parents=[common], help="replace the history with a backup (a damaged one is refused)")
    r.add_argument("source", help="a backup file")
    a = p.parse_args(argv)
    data = default_data_dir(a.namespace)
    a.db = a.db or db_path(data)
    try:
        if a.cmd == "export":
            since = None if a.export_since is None else time.time() - a.export_since
            if a.output == "-":
                n = export(a.db, sys.stdout, a.format, since)
            else:
                with open(a.output, "w", newline="", encoding="utf-8") as f:
                    n = export(a.db, f, a.format, since)
            print(f"exported {n} incidents", file=sys.stderr)
            return 0
        if a.cmd == "backup":
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            folder = a.dest if a.dest and os.path.isdir(a.dest) else None
            if a.dest is None:
                folder = os.path.join(os.path.dirname(os.path.abspath(a.db)), "backups")
                os.makedirs(folder, exist_ok=True)
            dest = os.path.join(folder, f"incidents-{stamp}.sqlite3") if folder else a.dest
            n = backup(a.db, dest)
            print(f"backed up {n} incidents to {dest} (integrity check: ok)")
            if a.dest is None:
                for g in prune_backups(folder, a.keep):
                    print(f"removed old backup {g}")
            return 0
        if a.cmd == "restore":
            n = restore(a.db, a.source)
            print(f"restored {n} incidents from {a.source} into {a.db}")
            return 0
    except DamagedDatabase as err:
        print(f"refused: {err}", file=sys.stderr)
        return 1
    except (OSError, sqlite3.Error) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not os.path.exists(a.db):
        print(f"no incident database at {a.db}")
        return 1
    for r in reversed(query(a.db, since=time.time() - a.since, limit=a.limit, name_prefix=a.name,
                            min_level=a.min_level)):
        ts = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["t"]))
        prev = r["prev_level_name"] or "new"
        snap = f"  [{r['snapshot']}]" if r.get("snapshot") else ""
        print(f"{ts}  {r['kind']:<7} {prev:>5} -> {r['level_name']:<5} {r['name']}: {r['message']}{snap}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
