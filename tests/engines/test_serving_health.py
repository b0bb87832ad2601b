"""The health policy (``workers/serving/health.py``): one rule for a new deployment's window and a
running canary, over figures accumulated from a backend's cumulative counters."""

from __future__ import annotations

import json
import math

from workers.serving import health
from workers.serving.backend import Stats

POLICY = health.Policy(max_error_rate=0.1, max_latency_ms=200, min_requests=10, observation_seconds=60)


def reading(requests: int, errors: int = 0, seconds: float = 0.0, buckets=None) -> Stats:
    return Stats(name="m-v1", requests=requests, errors=errors, duration_seconds_sum=seconds, buckets=buckets or {})


def test_first_reading_is_the_baseline_and_later_ones_add_what_they_counted_since():
    stored = health.accumulate(None, reading(500, 7, 12.0))
    assert health.stored_window(stored) == health.Window()
    stored = health.accumulate(stored, reading(530, 9, 13.5))
    window = health.stored_window(stored)
    assert (window.requests, window.errors) == (30, 2)
    assert math.isclose(window.duration_seconds_sum, 1.5)
    assert window.latency() == (50.0, "mean")


def test_a_counter_reset_counts_everything_since_the_restart_as_new():
    stored = health.accumulate(health.accumulate(None, reading(100, 1, 1.0)), reading(120, 1, 1.2))
    stored = health.accumulate(stored, reading(15, 3, 0.3))  # the server restarted: counting from zero again
    window = health.stored_window(stored)
    assert (window.requests, window.errors) == (35, 3)
    assert math.isclose(window.duration_seconds_sum, 0.5)


def test_p95_from_histogram_buckets_survives_the_json_round_trip_including_inf():
    first = reading(0, buckets={0.05: 0, 0.1: 0, 0.25: 0, math.inf: 0})
    later = reading(100, 0, 9.0, buckets={0.05: 50, 0.1: 94, 0.25: 100, math.inf: 100})
    stored = health.accumulate(health.accumulate(None, first), later)
    window = health.stored_window(json.loads(json.dumps(stored)))
    assert window.latency() == (250.0, "p95")  # 94 of 100 under 100 ms: the 95th is in the 250 ms bucket


def test_judge_not_judged_met_and_each_breach():
    assert health.judge(POLICY, health.Window(requests=9)).state == health.NOT_JUDGED
    assert health.judge(POLICY, health.Window(requests=10, errors=1, duration_seconds_sum=1.0)).state == health.MET
    errors = health.judge(POLICY, health.Window(requests=10, errors=2, duration_seconds_sum=1.0))
    assert (errors.state, errors.code) == (health.BREACHED, "health_breach") and "20.0%" in errors.sentence
    slow = health.judge(POLICY, health.Window(requests=10, duration_seconds_sum=3.0))
    assert slow.state == health.BREACHED and "mean latency 300 ms, above 200 ms" in slow.sentence


def test_a_canary_is_watched_until_its_window_passed_with_enough_requests_but_a_breach_counts_at_once():
    healthy = health.Window(requests=50, errors=0, duration_seconds_sum=1.0)
    early = health.judge_canary(POLICY, healthy, elapsed_seconds=20)
    assert early.state == health.WATCHING and "40 s of the 60 s window left" in early.sentence
    few = health.judge_canary(POLICY, health.Window(requests=3), elapsed_seconds=120)
    assert few.state == health.WATCHING and "3 of 10 requests" in few.sentence
    assert health.judge_canary(POLICY, healthy, elapsed_seconds=60).state == health.MET
    sick = health.Window(requests=10, errors=5, duration_seconds_sum=1.0)
    assert health.judge_canary(POLICY, sick, elapsed_seconds=1).state == health.BREACHED
