"""The serving backend interface.

Charter serves each model version under its own backend name (``<model>-v<number>``) on a stable
*endpoint* per model (``<model>``): a rollback makes an earlier, still-present release serve the
endpoint again instead of uploading anything. Every method is idempotent (a redelivered task calls
it again after a crash), and a backend that cannot do something says so (``Unsupported``) instead
of pretending.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar


class ServingError(Exception):
    """A refusal or failure of the backend, with a machine-readable code and a sentence without secrets."""

    code = "backend_error"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class Unreachable(ServingError):
    code = "backend_unreachable"


class Unsupported(ServingError):
    code = "capability_missing"


@dataclass(frozen=True)
class Capabilities:
    traffic_split: bool  # a canary with a share of the traffic next to the live release
    formats: frozenset[str]  # artifact formats it can serve (registry ArtifactFormat values)
    metrics: bool  # per-release request counts, errors and durations

    def as_dict(self) -> dict[str, Any]:
        return {"traffic_split": self.traffic_split, "formats": sorted(self.formats), "metrics": self.metrics}


@dataclass(frozen=True)
class Release:
    """One model version as a backend serves it."""

    endpoint: str  # the model's stable name in the environment, e.g. "credit-risk"
    name: str  # the version's own name, e.g. "credit-risk-v3"
    artifact_path: str  # a local file whose sha256 the caller has just verified
    artifact_format: str
    sha256: str
    framework: str = ""


@dataclass(frozen=True)
class Loaded:
    """What a backend has loaded, for status and reconciliation."""

    name: str
    ready: bool
    endpoint: str = ""
    traffic_percent: int | None = None  # None where the backend has no notion of a share
    reason: str = ""


@dataclass(frozen=True)
class Stats:
    """Cumulative request figures of one release since the backend loaded it."""

    name: str
    requests: int
    errors: int
    duration_seconds_sum: float
    buckets: dict[float, int] = field(default_factory=dict)  # upper bound (s) -> cumulative count

    def p95_seconds(self) -> float | None:
        if not self.requests or not self.buckets:
            return None
        wanted = 0.95 * self.requests
        return next((bound for bound, count in sorted(self.buckets.items()) if count >= wanted), None)


class Backend(ABC):
    kind: ClassVar[str]

    @abstractmethod
    def capabilities(self) -> Capabilities: ...

    @abstractmethod
    def deploy(self, release: Release) -> None:
        """Load ``release`` and make it serve all of its endpoint's traffic. Releases loaded
        before stay loaded until ``undeploy``; deploying a release already serving is a no-op."""

    @abstractmethod
    def set_traffic(self, release: Release, *, percent: int, stable: Release) -> None:
        """A canary: ``release`` gets ``percent`` of the endpoint's traffic, ``stable`` the rest."""

    @abstractmethod
    def promote(self, release: Release) -> None:
        """The canary ``release`` takes all of the endpoint's traffic."""

    @abstractmethod
    def rollback(self, to: Release, *, current: Release) -> None:
        """``to`` (served before) serves the endpoint again; ``current`` gets no traffic."""

    @abstractmethod
    def undeploy(self, release: Release) -> None:
        """Unload ``release``; unloading what is not loaded is a no-op."""

    @abstractmethod
    def status(self) -> list[Loaded]:
        """Every release the backend has loaded (or is loading), Charter's or not."""

    @abstractmethod
    def predict(self, name: str, payload: dict[str, Any], *, timeout: float = 10.0) -> dict[str, Any]:
        """One Open Inference Protocol v2 request to release ``name``; the response body."""

    @abstractmethod
    def metrics(self) -> dict[str, Stats]:
        """Per-release request figures; empty where ``capabilities().metrics`` is false."""
