"""An environment's health policy applied to a release's request figures (no Django).

The worker judges a new deployment's observation window with it, and beat's ``serving-watch`` judges a
running canary with it: one rule for both. Figures come from the backend's cumulative counters
(:class:`~workers.serving.backend.Stats`); :func:`accumulate` turns successive readings into figures
counted since the first one, across a counter reset (a restarted server or pod starts again at zero).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from workers.serving.backend import Stats

MET, BREACHED, NOT_JUDGED, WATCHING = "met", "breached", "not_judged", "watching"


@dataclass(frozen=True)
class Policy:
    max_error_rate: float
    max_latency_ms: float
    min_requests: int
    observation_seconds: int = 0


@dataclass(frozen=True)
class Window:
    """Request figures over a span: counts, summed duration and cumulative histogram buckets."""

    requests: int = 0
    errors: int = 0
    duration_seconds_sum: float = 0.0
    buckets: dict[float, int] = field(default_factory=dict)  # upper bound (s) -> cumulative count

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def latency(self) -> tuple[float, str] | None:
        """The p95 in ms where the backend reports a histogram, else the mean (MLServer has no per-model
        histogram); ``None`` without requests."""
        if not self.requests:
            return None
        if self.buckets:
            wanted = 0.95 * self.requests
            bound = next((b for b, count in sorted(self.buckets.items()) if count >= wanted), None)
            if bound is not None and math.isfinite(bound):
                return bound * 1000, "p95"
        return self.duration_seconds_sum / self.requests * 1000, "mean"

    def as_dict(self) -> dict[str, Any]:
        latency = self.latency()
        return {
            "requests": self.requests, "errors": self.errors, "error_rate": self.error_rate,
            "latency_ms": round(latency[0], 3) if latency else None, "latency_kind": latency[1] if latency else None,
        }  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    state: str  # met, breached, not_judged (too few requests) or watching (a canary's window still open)
    sentence: str
    code: str = ""  # "health_breach" when breached


def between(before: Stats | None, after: Stats) -> Window:
    """The figures of the requests ``after`` counts that ``before`` (an earlier reading) did not."""

    def minus(a: float, b: float) -> float:
        return a - b if before is not None else a

    buckets = {
        bound: int(minus(count, (before.buckets.get(bound, 0) if before else 0)))
        for bound, count in after.buckets.items()
    }
    return Window(
        requests=int(minus(after.requests, before.requests if before else 0)),
        errors=int(minus(after.errors, before.errors if before else 0)),
        duration_seconds_sum=minus(after.duration_seconds_sum, before.duration_seconds_sum if before else 0.0),
        buckets=buckets,
    )


def judge(policy: Policy, window: Window) -> Verdict:
    """Whether ``window`` meets the policy; too few requests judge nothing."""
    if window.requests < policy.min_requests:
        return Verdict(
            NOT_JUDGED, f"{window.requests} request(s) in the window, fewer than {policy.min_requests}: not judged."
        )
    rate = window.error_rate or 0.0
    latency, which = window.latency() or (0.0, "mean")
    figures = f"{window.requests} requests, error rate {rate:.1%}, {which} latency {latency:.0f} ms"
    if rate > policy.max_error_rate:
        return Verdict(
            BREACHED,
            f"Error rate {rate:.1%} over {window.requests} requests, above {policy.max_error_rate:.1%}.",
            "health_breach",
        )
    if latency > policy.max_latency_ms:
        return Verdict(
            BREACHED, f"{which} latency {latency:.0f} ms, above {policy.max_latency_ms:.0f} ms.", "health_breach"
        )
    return Verdict(MET, f"{figures}: within the health policy.")


def judge_canary(policy: Policy, window: Window, *, elapsed_seconds: float) -> Verdict:
    """A running canary: breached as soon as enough requests break the policy; met once the observation
    window has passed with enough requests within it; otherwise still watching."""
    verdict = judge(policy, window)
    if verdict.state == BREACHED:
        return verdict
    left = policy.observation_seconds - elapsed_seconds
    if verdict.state == MET and left <= 0:
        return verdict
    waiting = []
    if window.requests < policy.min_requests:
        waiting.append(f"{window.requests} of {policy.min_requests} requests")
    if left > 0:
        waiting.append(f"{math.ceil(left)} s of the {policy.observation_seconds} s window left")
    return Verdict(WATCHING, "Watching: " + ", ".join(waiting) + ".")


# --- figures stored between readings --------------------------------------------------------------


def accumulate(stored: dict[str, Any] | None, reading: Stats) -> dict[str, Any]:
    """The stored figures after one more cumulative ``reading``: the first reading is the baseline
    (nothing counted yet); a counter that went down means the backend started counting again, and
    everything it counts since is new."""
    if not stored:
        return {"requests": 0, "errors": 0, "duration_seconds_sum": 0.0, "buckets": {}, "raw": _raw(reading)}
    last = _stats(reading.name, stored.get("raw") or {})
    reset = reading.requests < last.requests or reading.errors < last.errors
    added = between(None if reset else last, reading)
    buckets = {float(k): int(v) for k, v in (stored.get("buckets") or {}).items()}
    for bound, count in added.buckets.items():
        buckets[bound] = buckets.get(bound, 0) + max(0, count)
    return {
        "requests": int(stored.get("requests", 0)) + max(0, added.requests),
        "errors": int(stored.get("errors", 0)) + max(0, added.errors),
        "duration_seconds_sum": float(stored.get("duration_seconds_sum", 0.0)) + max(0.0, added.duration_seconds_sum),
        "buckets": {_key(bound): count for bound, count in sorted(buckets.items())},
        "raw": _raw(reading),
    }


def stored_window(stored: dict[str, Any] | None) -> Window:
    if not stored:
        return Window()
    return Window(
        requests=int(stored.get("requests", 0)),
        errors=int(stored.get("errors", 0)),
        duration_seconds_sum=float(stored.get("duration_seconds_sum", 0.0)),
        buckets={float(k): int(v) for k, v in (stored.get("buckets") or {}).items()},
    )


def _key(bound: float) -> str:  # JSON object keys are strings; "inf" reads back as float("inf")
    return repr(float(bound))


def _raw(reading: Stats) -> dict[str, Any]:
    return {
        "requests": reading.requests, "errors": reading.errors, "duration_seconds_sum": reading.duration_seconds_sum,
        "buckets": {_key(bound): count for bound, count in reading.buckets.items()},
    }  # fmt: skip


def _stats(name: str, raw: dict[str, Any]) -> Stats:
    return Stats(
        name=name,
        requests=int(raw.get("requests", 0)),
        errors=int(raw.get("errors", 0)),
        duration_seconds_sum=float(raw.get("duration_seconds_sum", 0.0)),
        buckets={float(k): int(v) for k, v in (raw.get("buckets") or {}).items()},
    )
