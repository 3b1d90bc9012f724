"""Incident history: persistence, retention, non-blocking writes, queries."""
from __future__ import annotations

import os
import time

from reachy_mini.core.health.incidents import Incident, IncidentWriter, db_path, query, summary


def test_write_query_and_survive_reopen(tmp_path):
    w = IncidentWriter(str(tmp_path))
    t = time.time()
    w.record(Incident(t - 10, "/R/Motors/m1", 2, 0, "overheating", "dynamixel:11"))
    w.record(Incident(t - 5, "/R/Motors/m1", 0, 2, "OK"))
    w.record(Incident(t - 1, "/R/Camera", 3, 0, "stale"))
    w.record(Incident(t, "/R/System/Nodes/camera_node", 2, 3, "hung", kind="hang"))
    assert w.flush()
    w.close()
    path = db_path(str(tmp_path))
    rows = query(path)
    assert [r["name"] for r in rows][:2] == ["/R/System/Nodes/camera_node", "/R/Camera"]  # newest first
    assert rows[-1]["level_name"] == "ERROR" and rows[-1]["hardware_id"] == "dynamixel:11"
    assert [r["level"] for r in query(path, name_prefix="/R/Motors")] == [0, 2]
    assert len(query(path, since=t - 2)) == 2 and len(query(path, min_level=2)) == 3
    assert query(path, kind="hang")[0]["message"] == "hung"
    assert len(query(path, limit=1)) == 1
    assert summary(path)["by_kind"] == {"level": 3, "hang": 1}
    w2 = IncidentWriter(str(tmp_path))     # a restarted health node continues the history
    assert w2.last_levels() == {"/R/Motors/m1": 0, "/R/Camera": 3}
    w2.close()


def test_retention_by_rows_and_age(tmp_path):
    w = IncidentWriter(str(tmp_path), retention_days=1.0, max_rows=100)
    now = time.time()
    for i in range(300):
        w.record(Incident(now - 3 * 86400 if i < 50 else now, f"/R/x{i}", i % 4, None, "m"))
    w.prune_now()
    assert w.rows() == 100
    names = [r["name"] for r in query(w.path, limit=1000)]
    assert names[0] == "/R/x299" and names[-1] == "/R/x200"   # the newest are kept
    w.close()
    w = IncidentWriter(str(tmp_path), retention_days=1.0, max_rows=1000)
    w.record(Incident(now - 2 * 86400, "/R/old", 2, 0, "old"))
    w.prune_now()
    assert not query(w.path, name_prefix="/R/old")
    w.close()


def test_file_size_bounded_under_churn(tmp_path):
    w = IncidentWriter(str(tmp_path), max_rows=2000)
    for round_ in range(5):
        for i in range(5000):
            w.record(Incident(time.time(), f"/R/Motors/m{i % 9}", i % 4, None, "x" * 200))
        w.prune_now()
        assert w.rows() <= 2000
        if round_ == 1:
            size_after_2 = os.path.getsize(w.path)
    assert os.path.getsize(w.path) <= size_after_2 * 1.2   # steady state, not growth
    w.close()


def test_record_never_blocks(tmp_path):
    import sqlite3

    w = IncidentWriter(str(tmp_path), queue_size=10)
    other = sqlite3.connect(w.path, isolation_level=None)   # another process holding the database
    other.execute("BEGIN EXCLUSIVE")   # the writer thread stalls on the lock
    t0 = time.monotonic()
    ok = [w.record(Incident(time.time(), "/R/a", 1, 0, "m")) for _ in range(1000)]
    assert time.monotonic() - t0 < 0.5
    assert w.dropped == ok.count(False) > 0
    other.execute("COMMIT")
    other.close()
    w.close()


def test_query_without_database(tmp_path):
    assert query(str(tmp_path / "none.sqlite3")) == []
    assert summary(str(tmp_path / "none.sqlite3"))["rows"] == 0


def test_robot_name_is_stored_and_an_old_database_gains_the_column(tmp_path):
    import sqlite3

    path = db_path(str(tmp_path))
    old = sqlite3.connect(path)      # a database written before robot_name existed
    old.executescript("CREATE TABLE incidents (id INTEGER PRIMARY KEY AUTOINCREMENT, t REAL NOT NULL, "
                      "name TEXT NOT NULL, level INTEGER NOT NULL, prev_level INTEGER, message TEXT NOT NULL "
                      "DEFAULT '', hardware_id TEXT NOT NULL DEFAULT '', kind TEXT NOT NULL DEFAULT 'level');"
                      f"INSERT INTO incidents (t, name, level) VALUES ({time.time() - 100}, '/R/Camera', 2);")
    old.commit()
    assert query(path)[0]["robot"] == ""       # readable as is, read-only
    old.close()
    w = IncidentWriter(str(tmp_path), robot="lab-3")
    w.record(Incident(time.time(), "/R/Camera", 0, 2, "OK"))
    w.record(Incident(time.time(), "/R/Audio", 2, 0, "silent", robot="other"))
    assert w.flush()
    w.close()
    rows = query(path)
    assert [(r["name"], r["robot"]) for r in rows] == [("/R/Audio", "other"), ("/R/Camera", "lab-3"), ("/R/Camera", "")]


def test_old_database_gains_the_snapshot_column(tmp_path):
    import sqlite3

    path = db_path(str(tmp_path))
    old = sqlite3.connect(path)      # a database from before the flight recorder
    old.executescript("CREATE TABLE incidents (id INTEGER PRIMARY KEY AUTOINCREMENT, t REAL NOT NULL, "
                      "name TEXT NOT NULL, level INTEGER NOT NULL, prev_level INTEGER, message TEXT NOT NULL "
                      "DEFAULT '', hardware_id TEXT NOT NULL DEFAULT '', kind TEXT NOT NULL DEFAULT 'level', "
                      "robot TEXT NOT NULL DEFAULT '');"
                      f"INSERT INTO incidents (t, name, level) VALUES ({time.time() - 100}, '/R/Camera', 2);")
    old.commit()
    old.close()
    assert query(path)[0]["snapshot"] is None          # readable as is
    w = IncidentWriter(str(tmp_path))
    w.record(Incident(time.time(), "/R/Camera", 2, 0, "stale", snapshot="snapshot_x.mcap"))
    assert w.flush()
    w.close()
    assert [r["snapshot"] for r in query(path)] == ["snapshot_x.mcap", None]


def _history(tmp_path, n=25):
    w = IncidentWriter(str(tmp_path))
    t = time.time()
    for i in range(n):
        w.record(Incident(t - n + i, f"/R/Motors/m{i % 3}", i % 3, None, f"msg, with \"quotes\" {i}",
                          snapshot=f"s{i}.mcap" if i % 5 == 0 else None))
    assert w.flush()
    return w


def test_export_csv_and_json_round_trip(tmp_path):
    import csv
    import io
    import json

    from reachy_mini.core.health.incidents import export, main

    w = _history(tmp_path)
    w.close()
    path = db_path(str(tmp_path))
    js, cs = io.StringIO(), io.StringIO()
    assert export(path, js, "json") == 25 and export(path, cs, "csv") == 25
    rows = json.loads(js.getvalue())
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)          # oldest first
    want = list(reversed(query(path, limit=100)))
    assert [(r["name"], r["level"], r["message"], r["snapshot"]) for r in rows] == \
        [(r["name"], r["level"], r["message"], r["snapshot"]) for r in want]
    back = list(csv.DictReader(io.StringIO(cs.getvalue())))
    assert [(r["name"], int(r["level"]), r["message"], r["snapshot"] or None) for r in back] == \
        [(r["name"], r["level"], r["message"], r["snapshot"]) for r in want]
    assert back[0]["time_utc"].endswith("Z") and back[0]["level_name"] == "OK"
    out = tmp_path / "x.csv"
    assert main(["export", "--db", path, "--format", "csv", "--output", str(out)]) == 0
    assert out.read_text() == cs.getvalue()
    assert main(["export", "--db", path, "--format", "json", "--since", "5", "--output", str(out)]) == 0
    assert 3 <= len(json.loads(out.read_text())) <= 6


def test_backup_while_writing_and_restore_round_trip(tmp_path):
    from reachy_mini.core.health.incidents import backup, main, restore

    w = _history(tmp_path)   # the writer stays open: an online backup
    path = db_path(str(tmp_path))
    dest = str(tmp_path / "b.sqlite3")
    assert backup(path, dest) == 25
    before = query(path, limit=100)
    w.record(Incident(time.time(), "/R/after", 2, 0, "after the backup"))
    assert w.flush()
    assert restore(path, dest) == 25                          # the live file, writer still open
    assert query(path, limit=100) == before
    w.record(Incident(time.time(), "/R/after_restore", 2, 0, "the writer carries on"))
    assert w.flush() and w.errors == 0
    assert query(path, limit=1)[0]["name"] == "/R/after_restore"
    w.close()
    # the CLI: default destination <data>/backups, keeps the newest --keep
    for _ in range(3):
        assert main(["backup", "--db", path, "--keep", "2"]) == 0
        time.sleep(1.05)
    assert len(os.listdir(tmp_path / "backups")) == 2, os.listdir(tmp_path / "backups")


def test_restore_refuses_a_damaged_file(tmp_path, capsys):
    from reachy_mini.core.health.incidents import DamagedDatabase, backup, main, restore

    w = _history(tmp_path)
    w.close()
    path = db_path(str(tmp_path))
    good = str(tmp_path / "good.sqlite3")
    backup(path, good)
    bad = tmp_path / "bad.sqlite3"
    data = bytearray(open(good, "rb").read())
    data[4096:] = os.urandom(len(data) - 4096)        # damaged pages behind a sound header
    bad.write_bytes(bytes(data))
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database at all" * 100)
    before = query(path, limit=100)
    for f in (bad, junk):
        try:
            restore(path, str(f))
            raise AssertionError("a damaged file was restored")
        except DamagedDatabase:
            pass
        assert main(["restore", "--db", path, str(f)]) == 1
        assert "refused" in capsys.readouterr().err
    assert query(path, limit=100) == before                    # nothing changed


def test_damaged_database_at_start_is_moved_aside(tmp_path):
    path = db_path(str(tmp_path))
    with open(path, "wb") as f:
        f.write(b"SQLite format 3\x00" + os.urandom(8000))     # a header, then garbage
    w = IncidentWriter(str(tmp_path))
    assert w.moved_aside and ".damaged-" in w.moved_aside
    aside = w.moved_aside.split(" (")[0]
    assert os.path.exists(aside) and open(aside, "rb").read(16) == b"SQLite format 3\x00"
    w.record(Incident(time.time(), "/R/x", 2, 0, "fresh"))
    assert w.flush() and w.errors == 0
    w.close()
    assert [r["name"] for r in query(path)] == ["/R/x"]
    w = IncidentWriter(str(tmp_path))                           # a sound file stays where it is
    assert w.moved_aside is None
    w.close()
