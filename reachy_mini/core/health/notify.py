"""Owner notification without Prometheus: when the robot's top level enters or
leaves ERROR or STALE, POST one JSON document to `notify_url`. Plain Python
(urllib), no rclpy.

- ``TopLevelWatch`` decides which top-level changes are notifications
  (``notable``: OK->ERROR, ERROR->OK, ERROR->STALE, STALE->WARN ...; never
  OK<->WARN), after a settle window at start-up so that the stack coming up
  (motors not yet reporting, nodes not yet seen) is not an alarm, and at most
  one per minimum interval, so that a flapping level is one notification with
  a count rather than a flood.
- ``payload`` is the one body format: generic webhook fields and ntfy's
  "publish as JSON" fields in the same object (ntfy ignores fields it does not
  know: its server decodes the body into a struct with Go's encoding/json, which
  skips unknown keys; none of our generic keys is one of ntfy's publish keys:
  topic, title, message, priority, tags, click, icon, actions, attach,
  markdown, filename, email, call, delay).
- ``Notifier`` delivers: ``submit()`` only appends to a bounded queue (it never
  blocks a ROS callback); one worker thread posts the transitions in order,
  retrying connection errors, timeouts, 5xx, 408 and 429 with exponential
  backoff (1, 2, 4 ... capped at 60 s); any other 4xx (and a redirect) is a
  permanent failure, logged and counted. A transition is never posted again once
  a 2xx came back; each post carries the transition's id (``Idempotency-Key``
  and ``X-Reachy-Mini-Id``), so that a receiver can drop the rare repeat after
  a timeout that happened after it had received the post. When the queue is
  full the oldest waiting transition is dropped and counted.
"""
from __future__ import annotations

import base64
import collections
import http.client
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from reachy_mini.core.levels import ERROR, OK, STALE, Level

ALARM = (ERROR, STALE)
PRIORITY = {ERROR: 5, STALE: 4}            # ntfy: 5 max, 4 high, 3 default
TAGS = {ERROR: "rotating_light", STALE: "warning"}
RECOVERED_TAG = "white_check_mark"


def notable(previous: int, level: int) -> bool:
    """A change of the top level worth telling the owner: it enters or leaves
    ERROR or STALE (ERROR<->STALE included); OK<->WARN is not."""
    return previous != level and (previous in ALARM or level in ALARM)


@dataclass(frozen=True)
class Transition:
    """One notable change of the top level."""
    level: Level
    previous: Level                           # the level last notified (or the baseline)
    message: str
    t: float                                  # wall time the level was entered, seconds since the epoch
    changes: int = 1                          # notable top-level changes since the previous notification
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


class TopLevelWatch:
    """Turns the stream of top levels (every publish) into transitions.

    `baseline` is the level the robot was last known to have (the incident
    history's last top level; OK when unknown). For `settle_s` after `started`
    (monotonic) nothing is reported: the first level after the window is
    compared with the baseline, so a robot that comes up healthy says nothing,
    one that comes up broken says so once, and one that was ERROR before a
    restart and is OK now says it recovered.

    A flapping robot is not a flood: after a notification, the next one waits
    until `min_interval_s` has passed and then reports the level of that moment
    against the level last notified (nothing if it is back where it was), with
    the number of notable changes in between (OK<->WARN does not count)."""

    def __init__(self, baseline: int | None, settle_s: float, started: float, min_interval_s: float = 0.0) -> None:
        self.notified = Level(OK if baseline is None else baseline)
        self.level = self.notified
        self.since: float | None = None           # wall time self.level began
        self.settle_until = started + settle_s
        self.min_interval_s = min_interval_s
        self.last_sent: float | None = None
        self.changes = 0

    def observe(self, level: int, message: str, now: float, wall: float | None = None) -> Transition | None:
        wall = time.time() if wall is None else wall
        level = Level(level)
        if level != self.level:
            if now >= self.settle_until and notable(self.level, level):
                self.changes += 1
            self.level, self.since = level, wall
        if now < self.settle_until or not notable(self.notified, level):
            return None
        if self.last_sent is not None and now - self.last_sent < self.min_interval_s:
            return None
        tr = Transition(level, self.notified, message, self.since if self.since is not None else wall,
                        max(self.changes, 1))
        self.notified, self.last_sent, self.changes = level, now, 0
        return tr


def iso_utc(t: float) -> str:
    """ISO 8601 in UTC with milliseconds, e.g. 2026-11-30T13:47:48.123Z."""
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def title(tr: Transition, robot: str) -> str:
    t = f"{robot}: {tr.level.name}" if tr.level in ALARM else f"{robot}: {tr.level.name} again (was {tr.previous.name})"
    return t + (f" ({tr.changes} changes since the last notification)" if tr.changes > 1 else "")


def payload(tr: Transition, robot: str, page_url: str, topic: str = "") -> dict:
    """The JSON body. Generic fields: robot, level, previous_level, message,
    time (ISO 8601 UTC, when the level was entered), time_unix (s), url (the
    robot's page), notification_id (one per transition; also the
    Idempotency-Key), changes (notable top-level changes since the previous
    notification: more than 1 when a flapping level was coalesced). ntfy's
    publish-as-JSON fields: topic (when set), title, message, priority, tags,
    click."""
    body = {
        "robot": robot,
        "level": tr.level.name,
        "previous_level": tr.previous.name,
        "message": tr.message or tr.level.text,
        "time": iso_utc(tr.t),
        "time_unix": round(tr.t, 3),
        "url": page_url,
        "notification_id": tr.id,
        "changes": tr.changes,
        "title": title(tr, robot),
        "priority": PRIORITY.get(tr.level, 3),
        "tags": [TAGS.get(tr.level, RECOVERED_TAG), "robot"],
        "click": page_url,
    }
    if topic:
        body["topic"] = topic
    return body


# ------------------------------------------------------------------ URLs
def check_url(v: str) -> str | None:
    """'' (off) or an absolute http(s) URL with a host; error text or None.
    Never repeats the URL (it may hold credentials)."""
    if v == "":
        return None
    if any(c.isspace() for c in v):
        return "must not contain spaces"
    try:
        u = urllib.parse.urlsplit(v)
        u.port   # noqa: B018 - raises ValueError for a bad port
    except ValueError as e:
        return f"not a valid URL ({e})"
    if u.scheme not in ("http", "https"):
        return f"must be '' or an http:// or https:// URL (got scheme {u.scheme or 'none'!r})"
    if not u.hostname:
        return "has no host"
    return None


def redact(url: str) -> str:
    """The URL as it may appear in logs: no user, password or query."""
    try:
        u = urllib.parse.urlsplit(url)
        host = u.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{u.port}" if u.port else ""
    except ValueError:
        return "<invalid URL>"
    return f"{u.scheme}://{host}{port}{u.path}" + ("?..." if u.query else "")


def _split_credentials(url: str) -> tuple[str, str | None]:
    """(URL without user:password@, Authorization header value or None)."""
    u = urllib.parse.urlsplit(url)
    if u.username is None and u.password is None:
        return url, None
    netloc = u.netloc.rsplit("@", 1)[1]
    user = urllib.parse.unquote(u.username or "")
    password = urllib.parse.unquote(u.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return urllib.parse.urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment)), f"Basic {token}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer (a permanent failure), not something to follow:
    urllib would turn the POST into a GET without the body."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class Retry(Exception):
    """A failure worth another try (connection, timeout, 5xx, 408, 429)."""

    def __init__(self, text: str, after: float | None = None) -> None:
        super().__init__(text)
        self.after = after


class Permanent(Exception):
    """A failure another try will not fix (4xx, a redirect)."""


def _retry_after(headers) -> float | None:
    try:
        v = float(headers.get("Retry-After", ""))
    except (TypeError, ValueError):
        return None
    return v if v >= 0 else None


# ------------------------------------------------------------------ delivery
class Notifier:
    """One worker thread posting transitions to `url` in order.

    `log(level, text)` with level 'info' | 'warn' | 'error' (the node's logger;
    texts never contain the URL's credentials). `backoff` is (first, max)
    seconds between tries of one transition (doubling)."""

    def __init__(self, url: str, robot: str, page_url: str, topic: str = "", *, timeout: float = 10.0,
                 queue_size: int = 100, backoff: tuple[float, float] = (1.0, 60.0),
                 log: Callable[[str, str], None] | None = None, user_agent: str = "reachy_mini") -> None:
        err = check_url(url)
        if err or not url:
            raise ValueError(f"notify URL {err or 'is empty'}")
        self.url, self.auth = _split_credentials(url)
        self.shown_url = redact(url)
        self.robot, self.page_url, self.topic = robot, page_url, topic
        self.timeout, self.backoff = float(timeout), (float(backoff[0]), float(backoff[1]))
        self.user_agent = user_agent
        self._logger = log
        self._opener = urllib.request.build_opener(_NoRedirect())
        self._q: collections.deque[Transition] = collections.deque()
        self.queue_size = int(queue_size)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._current: Transition | None = None
        self.sent = self.failed = self.retries = self.dropped = 0
        self.attempts = 0
        self.last_error = ""
        self.last_sent_t: float | None = None
        self.failing = False          # the last try failed and nothing went through since
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    # -------------------------------------------------------------- caller side
    def submit(self, tr: Transition) -> None:
        """Never blocks (beyond a short lock): a full queue drops its oldest."""
        with self._cond:
            if len(self._q) >= self.queue_size:
                old = self._q.popleft()
                self.dropped += 1
                self._log("warn", f"notification queue full ({self.queue_size}): dropped the oldest "
                                  f"({old.previous.name}->{old.level.name} at {iso_utc(old.t)})")
            self._q.append(tr)
            self._cond.notify()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._q) + (self._current is not None)

    def stats(self) -> dict:
        with self._cond:
            return {"sent": self.sent, "failed": self.failed, "retries": self.retries, "dropped": self.dropped,
                    "pending": len(self._q) + (self._current is not None), "attempts": self.attempts,
                    "failing": self.failing, "last_error": self.last_error}

    def wait_idle(self, timeout: float) -> bool:
        """True once nothing is pending (tests, shutdown)."""
        end = time.monotonic() + timeout
        while self.pending:
            if time.monotonic() > end:
                return False
            time.sleep(0.01)
        return True

    def stop(self, timeout: float = 2.0) -> bool:
        """Stops the worker (a post in progress finishes or times out); waits
        at most `timeout`. What is still pending is lost and logged."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout)
        left = self.pending
        if left:
            self._log("warn", f"{left} notification(s) not delivered to {self.shown_url} at shutdown")
        return not self._thread.is_alive()

    def _log(self, level: str, text: str) -> None:
        """Logging never ends the worker."""
        if self._logger is None:
            return
        try:
            self._logger(level, text)
        except Exception:  # noqa: BLE001
            pass

    # -------------------------------------------------------------- worker
    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._q and not self._stop.is_set():
                    self._cond.wait()
                if self._stop.is_set():
                    return
                self._current = tr = self._q.popleft()
            try:
                self._deliver(tr)
            except Exception as e:  # noqa: BLE001 - a bug here must not end notifications
                with self._cond:
                    self.failed += 1
                    self.failing = True
                    self.last_error = f"{type(e).__name__}: {e}"
                self._log("error", f"notification {tr.id} failed: {type(e).__name__}: {e}; not retried")
            with self._cond:
                self._current = None

    def _deliver(self, tr: Transition) -> None:
        delay = self.backoff[0]
        what = f"{tr.previous.name}->{tr.level.name} ({tr.id})"
        while not self._stop.is_set():
            try:
                self._post(tr)
            except Retry as e:
                with self._cond:
                    self.retries += 1
                    self.failing = True
                    self.last_error = str(e)
                wait = min(max(delay, e.after or 0.0), self.backoff[1])
                self._log("warn", f"notification {what} to {self.shown_url} failed: {e}; retrying in {wait:.1f} s")
                if self._stop.wait(wait):
                    return
                delay = min(delay * 2, self.backoff[1])
                continue
            except Permanent as e:
                with self._cond:
                    self.failed += 1
                    self.failing = True
                    self.last_error = str(e)
                self._log("error", f"notification {what} to {self.shown_url} refused: {e}; not retried")
                return
            with self._cond:
                self.sent += 1
                self.failing = False
                self.last_sent_t = time.time()
            self._log("info", f"notification {what} delivered to {self.shown_url}")
            return

    def _post(self, tr: Transition) -> None:
        data = json.dumps(payload(tr, self.robot, self.page_url, self.topic)).encode()
        headers = {"Content-Type": "application/json", "User-Agent": self.user_agent,
                   "Idempotency-Key": tr.id, "X-Reachy-Mini-Id": tr.id}
        if self.auth:
            headers["Authorization"] = self.auth
        req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        with self._cond:
            self.attempts += 1
        try:
            with self._opener.open(req, timeout=self.timeout) as r:
                r.read(65536)
                code = r.status
        except urllib.error.HTTPError as e:
            code = e.code
            after = _retry_after(e.headers)
            e.close()
            if code >= 500 or code in (408, 429):
                raise Retry(f"HTTP {code} {e.reason}", after) from None
            if 300 <= code < 400:
                raise Permanent(f"HTTP {code} redirect (not followed; point notify_url at the final URL)") from None
            raise Permanent(f"HTTP {code} {e.reason}") from None
        except http.client.HTTPException as e:          # not HTTP, cut short: the receiver is not well yet
            raise Retry(f"bad answer: {type(e).__name__}: {e}") from None
        except (urllib.error.URLError, OSError) as e:   # refused, unreachable, DNS, TLS, timeout
            reason = getattr(e, "reason", e)
            raise Retry(f"{type(reason).__name__}: {reason}" if not isinstance(reason, str) else reason) from None
        if not 200 <= code < 300:
            raise Permanent(f"HTTP {code}")
