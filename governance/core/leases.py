"""Leases on long-running task records: how the work of a worker that died is found and picked up again.

A broker cannot tell a slow task from a dead worker: with Redis, a message a killed worker held comes
back only after the visibility timeout, and ``reject_on_worker_lost`` helps only when a pool child dies
under a living main process. So the record says it instead. A worker that starts a long task (an
evaluation run; serving actions and benchmarks later) takes the record's lease with a compare-and-set:
a fresh token and an expiry ``TASK_LEASE_SECONDS`` ahead, on the database's clock (one clock for every
host). It renews the lease as it reports progress, and from a ``Heartbeat`` thread while one engine step
is long; each write it makes on the record names its token. Then:

- a second delivery of the same message (``acks_late`` with a short visibility timeout redelivers a
  long task while it still runs) finds a live lease and does nothing: one execution at a time;
- a worker that died (SIGKILL, OOM, a node reboot, a deploy) stops renewing; the sweep (Celery beat,
  every ``TASK_LEASE_SWEEP_SECONDS``) finds the expired lease and has the owning app re-queue the
  record, or fail it once it has had ``TASK_LEASE_MAX_ATTEMPTS`` starts;
- a worker that was only thought dead (a long pause) finds its token gone at its next write, and stops.

This module knows the three fields, the clock and the sweep; each app owns its statuses and audit events
and registers its recovery (``register_recovery``) in its ``AppConfig.ready``.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import connection, models
from django.db.models import DurationField, F, Q, Value
from django.db.models.functions import Now

logger = logging.getLogger(__name__)


class Leased(models.Model):
    """The lease fields of a long-running task record."""

    attempts = models.PositiveSmallIntegerField(default=0, help_text="Starts so far, the current one included.")
    lease_token = models.CharField(max_length=32, blank=True, help_text="The token of the execution holding it.")
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Unless renewed by then, its worker is taken for lost."
    )

    class Meta:
        abstract = True


def duration() -> timedelta:
    return timedelta(seconds=settings.TASK_LEASE_SECONDS)


def renew_every() -> float:
    """Seconds between heartbeats: three may fail (a database blip) before the lease runs out."""
    return max(0.2, settings.TASK_LEASE_SECONDS / 4)


def max_attempts() -> int:
    return settings.TASK_LEASE_MAX_ATTEMPTS


def _expiry():
    return Now() + Value(duration(), output_field=DurationField())


def held() -> Q:
    """Records whose lease is live now (by the database's clock)."""
    return Q(lease_expires_at__gt=Now())


def not_held() -> Q:
    """Records nobody holds: never leased, released, or expired (their worker was lost)."""
    return Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=Now())


def is_held(obj: Leased) -> bool:
    return type(obj)._default_manager.filter(pk=obj.pk).filter(held()).exists()


def take(queryset: models.QuerySet, *, pk, **changes) -> str | None:
    """Take the lease of the record ``pk`` of ``queryset`` unless someone holds it, counting a start and
    applying ``changes`` in the same statement; its token, or ``None`` when it is held (or not in
    ``queryset``). One UPDATE decides, so two executions racing for one record never both get it."""
    token = secrets.token_hex(16)
    updated = (
        queryset.filter(pk=pk)
        .filter(not_held())
        .update(lease_token=token, lease_expires_at=_expiry(), attempts=F("attempts") + 1, **changes)
    )
    return token if updated else None


def renew(queryset: models.QuerySet, *, pk, token: str, **changes) -> bool:
    """Extend the lease ``token`` holds (with ``changes``, such as progress); False once the record left
    ``queryset`` (finished, cancelled) or its lease went to another execution: the caller should stop."""
    if not token:
        return False
    return bool(queryset.filter(pk=pk, lease_token=token).update(lease_expires_at=_expiry(), **changes))


def release(obj: Leased) -> list[str]:
    """Clear the lease of a record that ends or goes back to the queue (saved by the caller); the
    fields to save."""
    obj.lease_token, obj.lease_expires_at = "", None
    return ["lease_token", "lease_expires_at"]


class Heartbeat:
    """Renews a lease from a background thread while the task works, so that one long engine step
    without progress reports does not pass for a dead worker.

    ``lost`` turns true once a renewal is refused (the record was cancelled or finished, or another
    execution took it over); the task checks it at its next progress report. A renewal that fails with
    an error (a database blip) is tried again at the next beat. The thread uses, and closes, its own
    database connection.
    """

    def __init__(self, renew: Callable[[], bool], *, every: float | None = None):
        self._renew = renew
        self._every = every if every is not None else renew_every()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
        self.lost = False

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=self._every + 10)

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self._every):
                try:
                    if not self._renew():
                        self.lost = True
                        return
                except Exception:
                    logger.warning("Could not renew a task lease; trying again in %.1f s", self._every, exc_info=True)
                    connection.close()  # a broken connection is opened afresh at the next beat
        finally:
            connection.close()


# --- the sweep ----------------------------------------------------------------------------------------

_recoveries: dict[str, Callable[[], dict]] = {}


def register_recovery(name: str, recover: Callable[[], dict]) -> None:
    """Have the sweep call ``recover()``: it re-queues or fails the app's records whose lease expired
    and returns counts by outcome."""
    _recoveries[name] = recover


def recover_expired() -> dict[str, dict]:
    """Run every registered recovery (beat's ``leases-recover`` task); one that fails is logged and
    does not keep the others from running."""
    outcome = {}
    for name, recover in sorted(_recoveries.items()):
        try:
            outcome[name] = recover()
        except Exception:
            logger.exception("Recovering the expired leases of %s failed; the next sweep tries again", name)
            outcome[name] = {"error": 1}
    return outcome
