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
"""
from __future__ import annotations

from typing import Callable, Iterable

from reachy_mini.core.health.recorder import RECORDER_NODE

BATCH_PERIOD_S = 0.1
# Subscriber nodes that read joint_states / head/pose in bulk, late by design.
BUFFERED_READERS = frozenset({RECORDER_NODE})
# The subscribers' node names are looked up (a graph query) when a count
# changes, and at least this often (a reader replaced by another).
RECHECK_S = 2.0


def live(readers: Iterable[str], tf_subscribers: int) -> bool:
    """True when a sample is to be published as soon as it exists: a
    subscriber of joint_states or head/pose that is not a buffered reader,
    or anyone on /tf (tf2 listeners want the latest transform)."""
    return tf_subscribers > 0 or any(r not in BUFFERED_READERS for r in readers)


class SampleReaders:
    """The thread's mode from the three publishers' subscription counts
    (cheap, each wake) and, when one changed or every RECHECK_S, the
    subscriber names `names()` gives (joint_states and head/pose)."""

    def __init__(self, recheck_s: float = RECHECK_S) -> None:
        self.recheck_s = recheck_s
        self.counts: tuple[int, int, int] | None = None
        self.checked = float("-inf")
        self.live = False

    def update(self, counts: tuple[int, int, int], now: float, names: Callable[[], Iterable[str]]) -> bool:
        """counts: subscriptions of (joint_states, head/pose, /tf); returns live."""
        if counts != self.counts or now - self.checked >= self.recheck_s:
            self.counts, self.checked = counts, now
            self.live = live(names() if counts[0] or counts[1] else (), counts[2])
        return self.live


def mode(is_live: bool, subscribed: bool) -> str:
    """The "joint_states publishing" value of motor_node's bus diagnostics."""
    if is_live:
        return "at once (live subscribers)"
    if subscribed:
        return f"in bursts every {BATCH_PERIOD_S:g} s (only the flight recorder reads)"
    return "none (no subscriber)"
