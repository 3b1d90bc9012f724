"""Owner notifications (core/health/notify.py): which top-level changes are
notified, the body (generic webhook + ntfy's publish-as-JSON fields), and
delivery to a real local HTTP receiver: retries with backoff, never twice after
a 2xx, in order, a receiver that is down and comes back, permanent 4xx, a
submit that never blocks while the receiver hangs."""
from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest

from reachy_mini.core.config import check_value
from reachy_mini.core.health.config import HealthConfig
from reachy_mini.core.health.notify import (Notifier, TopLevelWatch, Transition, check_url, notable, payload,
                                            redact)
from reachy_mini.core.levels import ERROR, OK, STALE, WARN

from conftest import wait_for
from notify_receiver import Receiver, free_port

FAST = (0.05, 0.4)    # backoff for tests: 0.05, 0.1, 0.2, 0.4, 0.4 ...


def tr(level, prev, message="m", t=1_700_000_000.25):
    return Transition(level, prev, message, t)


class Logs(list):
    def __call__(self, level, text):
        self.append((level, text))


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def make():
    made = []

    def _make(url, **kw):
        kw.setdefault("backoff", FAST)
        kw.setdefault("timeout", 5.0)
        n = Notifier(url, "robot2", "http://robot2.local:8000/", kw.pop("topic", ""), **kw)
        made.append(n)
        return n
    yield _make
    for n in made:
        n.stop(1.0)


# ---------------------------------------------------------------- rules
@pytest.mark.parametrize("prev,level,expected", [
    (OK, ERROR, True), (ERROR, OK, True), (ERROR, STALE, True), (STALE, WARN, True), (WARN, ERROR, True),
    (OK, STALE, True), (STALE, ERROR, True),
    (OK, WARN, False), (WARN, OK, False), (OK, OK, False), (ERROR, ERROR, False), (STALE, STALE, False)])
def test_notable_transitions(prev, level, expected):
    assert notable(prev, level) is expected


def test_top_level_watch_settles_then_reports_changes_once():
    w = TopLevelWatch(None, settle_s=10.0, started=100.0)
    assert w.observe(STALE, "no diagnostics received", 100.5) is None, "coming up is not an alarm"
    assert w.observe(ERROR, "expected 11, found 0", 105.0) is None
    assert w.observe(OK, "", 110.0) is None, "healthy after the window: nothing to say (baseline OK)"
    t = w.observe(ERROR, "m2: overheating", 111.0, wall=5.0)
    assert (t.level, t.previous, t.message, t.t) == (ERROR, OK, "m2: overheating", 5.0)
    assert w.observe(ERROR, "m2: overheating", 112.0) is None, "the same level again is not a transition"
    assert w.observe(STALE, "silent", 113.0).previous == ERROR
    assert w.observe(WARN, "warm", 114.0).previous == STALE
    assert w.observe(OK, "", 115.0) is None and w.observe(WARN, "x", 116.0) is None
    ids = {w.observe(ERROR, "", 117.0).id, w.observe(OK, "", 118.0).id}
    assert len(ids) == 2, "one id per transition"


def test_top_level_watch_baseline_from_history():
    """Was ERROR before a restart and is OK now: it recovered; still ERROR: no repeat."""
    t = TopLevelWatch(ERROR, 1.0, 0.0).observe(OK, "", 2.0)
    assert (t.previous, t.level) == (ERROR, OK)
    assert TopLevelWatch(ERROR, 1.0, 0.0).observe(ERROR, "", 2.0) is None
    t = TopLevelWatch(None, 0.0, 0.0).observe(ERROR, "broken at start", 0.0)
    assert (t.previous, t.level) == (OK, ERROR)


def test_a_flapping_level_is_coalesced_not_a_flood():
    """Seen on the loaded simulated stack: ERROR<->WARN every few seconds. One
    notification at once, then at most one per interval, with the level of
    that moment and the number of changes in between."""
    w = TopLevelWatch(None, settle_s=0.0, started=0.0, min_interval_s=60.0)
    first = w.observe(ERROR, "not answering", 1.0, wall=101.0)
    assert (first.previous, first.level, first.changes) == (OK, ERROR, 1), "the first alarm goes at once"
    out = [w.observe(lv, "", float(s), wall=100.0 + s) for s, lv in
           [(3, WARN), (6, ERROR), (9, WARN), (12, ERROR), (20, WARN), (40, WARN), (59, WARN)]]
    assert out == [None] * 7, "within the interval: nothing"
    t = w.observe(WARN, "warm", 61.0, wall=161.0)
    assert (t.previous, t.level, t.changes, t.t) == (ERROR, WARN, 5, 120.0), "entered WARN at 20 s, 5 changes"
    assert w.observe(OK, "", 62.0) is None and w.observe(WARN, "", 63.0) is None
    assert "5 changes" in payload(t, "r", "u")["title"] and payload(t, "r", "u")["changes"] == 5
    assert w.observe(ERROR, "", 70.0, wall=170.0) is None          # within the interval
    assert w.observe(WARN, "", 100.0, wall=200.0) is None
    assert w.observe(WARN, "", 125.0, wall=225.0) is None, "interval over, but back where it was: nothing"
    t = w.observe(ERROR, "again", 130.0, wall=230.0)
    assert (t.previous, t.level, t.changes, t.t) == (WARN, ERROR, 3, 230.0), "interval over: at once; OK<->WARN " \
        "does not count"
    assert TopLevelWatch(None, 0.0, 0.0, 0.0).observe(ERROR, "", 0.0) is not None


NTFY_PUBLISH_TYPES = {"topic": str, "title": str, "message": str, "priority": int, "tags": list, "click": str,
                      "icon": str, "actions": list, "attach": str, "markdown": bool, "filename": str, "email": str,
                      "call": str, "delay": str}


def test_payload_generic_and_ntfy_fields():
    t = tr(ERROR, OK, "m2: overheating")
    b = payload(t, "robot2", "http://robot2.local:8000/", topic="reachy-alerts")
    assert b["robot"] == "robot2" and b["level"] == "ERROR" and b["previous_level"] == "OK"
    assert b["message"] == "m2: overheating" and b["url"] == "http://robot2.local:8000/"
    assert b["time"] == "2023-11-14T22:13:20.250Z" and b["time_unix"] == 1_700_000_000.25
    assert datetime.fromisoformat(b["time"].replace("Z", "+00:00")).timestamp() == b["time_unix"]
    assert b["notification_id"] == t.id
    # ntfy's publish-as-JSON: topic, title, message, priority 1..5, tags, click
    assert b["topic"] == "reachy-alerts" and b["title"] == "robot2: ERROR" and b["priority"] == 5
    assert b["tags"] == ["rotating_light", "robot"] and b["click"] == "http://robot2.local:8000/"
    for k, v in b.items():   # a key ntfy knows has ntfy's type (it would refuse the body otherwise)
        if k in NTFY_PUBLISH_TYPES:
            assert isinstance(v, NTFY_PUBLISH_TYPES[k]), k
    assert "id" not in b and "time" not in NTFY_PUBLISH_TYPES
    back = payload(tr(OK, STALE, ""), "robot2", "u")
    assert back["title"] == "robot2: OK again (was STALE)" and back["priority"] == 3
    assert back["tags"][0] == "white_check_mark" and back["message"] == "OK" and "topic" not in back
    assert payload(tr(STALE, ERROR), "r", "u")["priority"] == 4


@pytest.mark.parametrize("url,ok", [
    ("", True), ("http://127.0.0.1:8080/hook", True), ("https://ntfy.sh/", True),
    ("https://user:pa%40ss@hooks.example.com/x?token=1", True), ("http://[::1]:9/x", True),
    ("ftp://host/x", False), ("ntfy.sh/topic", False), ("http://", False), ("http://host:99999/", False),
    ("http://host/a b", False), ("file:///etc/passwd", False)])
def test_url_rules(url, ok):
    assert (check_url(url) is None) is ok


def test_errors_and_logs_never_show_credentials():
    spec = {s.name: s for s in HealthConfig.specs()}["notify_url"]
    err = check_value(spec, "ftp://alice:s3cret@host/x")
    assert err.startswith("parameter 'notify_url'") and "ftp" in err and "s3cret" not in err
    assert redact("https://alice:s3cret@hooks.example.com:8443/p?auth=tok") == "https://hooks.example.com:8443/p?..."
    assert check_value(spec, "http://h/") is None


# ---------------------------------------------------------------- delivery
def test_delivers_one_post_with_id_headers(receiver, make):
    n = make(receiver.url, topic="alerts")
    t = tr(ERROR, OK, "m2: overheating")
    n.submit(t)
    assert n.wait_idle(10)
    (p,) = receiver.posts
    assert p["path"] == "/hook" and p["body"]["notification_id"] == t.id and p["body"]["topic"] == "alerts"
    assert p["headers"]["Idempotency-Key"] == t.id == p["headers"]["X-Reachy-Mini-Id"]
    assert p["headers"]["Content-Type"] == "application/json" and "Authorization" not in p["headers"]
    s = n.stats()
    assert (s["sent"], s["failed"], s["retries"], s["dropped"], s["pending"], s["failing"]) == (1, 0, 0, 0, 0, False)
    time.sleep(0.3)
    assert receiver.attempts == 1, "never posted again after a 2xx"


def test_5xx_429_and_a_broken_answer_are_retried_with_backoff_and_delivered_once(make):
    r = Receiver(script=[503, "garbage", 429, 502])
    try:
        n = make(r.url, backoff=(0.1, 0.25))
        t0 = time.monotonic()
        n.submit(tr(ERROR, OK))
        assert n.wait_idle(20)
        took = time.monotonic() - t0
        assert r.attempts == 5 and len(r.posts) == 1
        s = n.stats()
        assert (s["sent"], s["retries"], s["failed"], s["failing"]) == (1, 4, 0, False)
        # waits 0.1 + 0.2 + 0.25 + 0.25 (doubling, capped): at least that, loosely
        assert took >= 0.7, took
    finally:
        r.close()


def test_permanent_4xx_is_not_retried_and_the_next_one_goes(make):
    r = Receiver(script=[404, 301])
    try:
        logs = Logs()
        n = make(r.url, log=logs)
        n.submit(tr(ERROR, OK, "first"))
        n.submit(tr(OK, ERROR, "second"))
        n.submit(tr(ERROR, OK, "third"))
        assert n.wait_idle(10)
        assert r.attempts == 3 and [b["message"] for b in r.bodies()] == ["third"]
        s = n.stats()
        assert (s["sent"], s["failed"], s["retries"], s["failing"]) == (1, 2, 0, False)
        errs = [t for lv, t in logs if lv == "error"]
        assert "HTTP 404" in errs[0] and "not retried" in errs[0] and "redirect" in errs[1]
    finally:
        r.close()


def test_permanent_failure_reports_failing_until_a_success(make):
    r = Receiver(script=[400])
    try:
        n = make(r.url)
        n.submit(tr(ERROR, OK))
        wait_for(lambda: n.stats()["failed"] == 1, timeout=10)
        assert n.stats()["failing"] and "HTTP 400" in n.stats()["last_error"]
        n.submit(tr(OK, ERROR))
        assert n.wait_idle(10) and not n.stats()["failing"]
    finally:
        r.close()


def test_receiver_down_then_back_delivers_once_in_order(make):
    """Connection refused: retried (counted, reported failing); once the
    receiver listens, every pending transition arrives exactly once, in order."""
    port = free_port()
    logs = Logs()
    n = make(f"http://alice:s3cret@127.0.0.1:{port}/hook", log=logs)
    sent = [tr(ERROR, OK, "1"), tr(STALE, ERROR, "2"), tr(WARN, STALE, "3"), tr(ERROR, WARN, "4")]
    for t in sent:
        n.submit(t)
    wait_for(lambda: n.stats()["retries"] >= 3, timeout=10)
    s = n.stats()
    assert s["failing"] and s["pending"] == 4 and s["sent"] == 0 and "refused" in s["last_error"].lower()
    r = Receiver(port=port)
    try:
        assert n.wait_idle(10)
        time.sleep(0.5)
        assert [b["notification_id"] for b in r.bodies()] == [t.id for t in sent]
        assert r.attempts == 4, "each exactly once"
        assert r.posts[0]["headers"]["Authorization"] == "Basic YWxpY2U6czNjcmV0"   # alice:s3cret
        s = n.stats()
        assert (s["sent"], s["failed"], s["pending"], s["failing"]) == (4, 0, 0, False)
        assert logs and not any("s3cret" in t or "alice" in t for _, t in logs)
        assert any(f"http://127.0.0.1:{port}/hook" in t for _, t in logs)
    finally:
        r.close()


def test_submit_never_blocks_while_the_receiver_hangs_and_the_queue_drops_the_oldest(make):
    r = Receiver(script=["hang"])
    try:
        n = make(r.url, queue_size=3, timeout=20.0)
        first = tr(ERROR, OK, "0")
        n.submit(first)
        wait_for(lambda: r.attempts == 1, timeout=10)   # the worker is stuck in the post
        later = [tr(OK if i % 2 else ERROR, ERROR if i % 2 else OK, str(i)) for i in range(1, 11)]
        t0 = time.monotonic()
        for t in later:
            n.submit(t)
        assert time.monotonic() - t0 < 1.0, "submit() does not wait for the receiver"
        s = n.stats()
        assert s["dropped"] == 7 and s["pending"] == 4          # the post in progress + the newest 3
        r.release.set()
        assert n.wait_idle(10)
        assert [b["message"] for b in r.bodies()] == ["0", "8", "9", "10"]
    finally:
        r.close()


def test_timeout_is_retried_with_the_same_id(make):
    """The receiver got the post but answered too late: the retry carries the
    same id, so the receiver can drop the repeat (at most once per id)."""
    r = Receiver(script=["hang"])
    try:
        n = make(r.url, timeout=0.5)
        t = tr(ERROR, OK)
        n.submit(t)
        wait_for(lambda: n.stats()["retries"] >= 1, timeout=10)
        assert "timed out" in n.stats()["last_error"].lower()
        r.release.set()
        assert n.wait_idle(10)
        ids = [p["headers"]["Idempotency-Key"] for p in r.posts]
        assert ids and set(ids) == {t.id} and n.stats()["sent"] == 1
    finally:
        r.close()


def test_stop_is_bounded_while_a_post_hangs(make):
    r = Receiver(script=["hang"])
    try:
        logs = Logs()
        n = make(r.url, timeout=20.0, log=logs)
        n.submit(tr(ERROR, OK))
        n.submit(tr(OK, ERROR))
        wait_for(lambda: r.attempts == 1, timeout=10)
        t0 = time.monotonic()
        n.stop(0.5)
        assert time.monotonic() - t0 < 3.0
        assert any("not delivered" in t for _, t in logs)
    finally:
        r.close()


def test_concurrent_submits_all_arrive_once(receiver, make):
    n = make(receiver.url, queue_size=1000)
    made = []

    def burst(k):
        for i in range(20):
            t = tr(ERROR if i % 2 == 0 else OK, OK if i % 2 == 0 else ERROR, f"{k}-{i}")
            made.append(t)
            n.submit(t)
    threads = [threading.Thread(target=burst, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert n.wait_idle(30)
    got = [b["notification_id"] for b in receiver.bodies()]
    assert sorted(got) == sorted(t.id for t in made) and len(set(got)) == 80
    for k in range(4):   # each caller's transitions in its order
        mine = [b["message"] for b in receiver.bodies() if b["message"].startswith(f"{k}-")]
        assert mine == [f"{k}-{i}" for i in range(20)]


def test_a_failing_logger_does_not_end_the_worker(receiver, make):
    """rclpy refuses some log calls (a call site whose severity changes): the
    worker must go on."""
    def bad_log(level, text):
        raise ValueError("Logger severity cannot be changed between calls.")
    n = make(receiver.url, log=bad_log)
    n.submit(tr(ERROR, OK))
    n.submit(tr(OK, ERROR))
    assert n.wait_idle(10) and len(receiver.posts) == 2 and n.thread.is_alive()
