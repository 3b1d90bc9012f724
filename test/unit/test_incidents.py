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
