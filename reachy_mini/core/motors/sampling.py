"""When motor_node's sample thread wakes (rules; the thread: nodes/motor_node.py).

Every driver sample (one per position read, 100 Hz) becomes one
joint_states message (and head/pose, /tf), stamped with the sample's time.
While someone reads those topics live, the thread wakes for each sample and
publishes it at once. While their only subscribers are buffered readers
(the flight recorder, which takes what DDS holds for it 4 times a second),
the thread wakes every BATCH_PERIOD_S and publishes the samples since, each
still its own message with its own stamp: on an idle robot the hundred
wake-ups of Python per second were most of the stack's CPU. A new live
subscriber is seen within one batch period.

Polling readers take the latest sample at a fixed rate and need it no
fresher than their own period: web_bridge's reader node (never spun; the
vendor SDK's 50 Hz state stream, the vendor HTTP API's state, the status
page) reads every 20 ms at most, so while it (and buffered readers) are the
only subscribers the thread publishes every POLL_PERIOD_S: it wakes on every
second driver sample at 100 Hz (samples_per_wake), half the wake-ups of the
at-once mode with an SDK client connected, in step with the driver's
samples (not a timer of its own), so a sample waits at most one sample
period longer than at once (issue 33).
"""
from __future__ import annotations

from typing import Callable, Iterable

from reachy_mini.core.health.recorder import RECORDER_NODE

BATCH_PERIOD_S = 0.1
# Subscriber nodes that read joint_states / head/pose in bulk, late by design.
BUFFERED_READERS = frozenset({RECORDER_NODE})
# web_bridge's reader node (nodes/web_bridge.py): it takes the latest sample,
# at most every 20 ms (the SDK's state stream, web/sdk_ws.STATE_PERIOD_S).
WEB_READER_NODE = "web_bridge_reader"
POLL_PERIOD_S = 0.02
POLLING_READERS = {WEB_READER_NODE: POLL_PERIOD_S}
# The subscribers' node names are looked up (a graph query) when a count
# changes, and at least this often (a reader replaced by another).
RECHECK_S = 2.0


def period(readers: Iterable[str], tf_subscribers: int) -> float:
    """How long a sample may wait before it is published: 0.0 (at once) for
    a subscriber of joint_states or head/pose that is neither buffered nor
    polling, or anyone on /tf (tf2 listeners want the latest transform);
    else the shortest polling reader's period, else BATCH_PERIOD_S."""
    if tf_subscribers > 0:
        return 0.0
    p = BATCH_PERIOD_S
    for r in readers:
        if r in POLLING_READERS:
            p = min(p, POLLING_READERS[r])
        elif r not in BUFFERED_READERS:
            return 0.0
    return p


def samples_per_wake(period_s: float, loop_rate_hz: float) -> int:
    """While the period is shorter than BATCH_PERIOD_S (at once, or polling
    readers), the thread is woken by the driver: after this many new samples."""
    return max(1, int(period_s * loop_rate_hz + 1e-6))


def live(readers: Iterable[str], tf_subscribers: int) -> bool:
    """True when a sample is to be published as soon as it exists."""
    return period(readers, tf_subscribers) == 0.0


class SampleReaders:
    """The thread's period from the three publishers' subscription counts
    (cheap, each wake) and, when one changed or every RECHECK_S, the
    subscriber names `names()` gives (joint_states and head/pose)."""

    def __init__(self, recheck_s: float = RECHECK_S) -> None:
        self.recheck_s = recheck_s
        self.counts: tuple[int, int, int] | None = None
        self.checked = float("-inf")
        self.period = BATCH_PERIOD_S

    @property
    def live(self) -> bool:
        return self.period == 0.0

    def update(self, counts: tuple[int, int, int], now: float, names: Callable[[], Iterable[str]]) -> float:
        """counts: subscriptions of (joint_states, head/pose, /tf); returns
        the period (0.0: each sample at once)."""
        if counts != self.counts or now - self.checked >= self.recheck_s:
            self.counts, self.checked = counts, now
            self.period = period(names() if counts[0] or counts[1] else (), counts[2])
        return self.period


def mode(period_s: float, subscribed: bool) -> str:
    """The "joint_states publishing" value of motor_node's bus diagnostics."""
    if period_s == 0.0:
        return "at once (live subscribers)"
    if not subscribed:
        return "none (no subscriber)"
    if period_s < BATCH_PERIOD_S:
        return f"in bursts every {period_s:g} s (web_bridge polls the latest sample)"
    return f"in bursts every {period_s:g} s (only the flight recorder reads)"
