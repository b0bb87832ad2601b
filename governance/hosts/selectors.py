"""Compute host reads. Hosts are site-wide, shared hardware: every signed-in user sees them all.

A host's status follows from its last heartbeat: online up to ``HOST_STALE_SECONDS`` after it,
stale up to ``HOST_OFFLINE_SECONDS``, offline after that (or before any heartbeat). It is computed
when read, in SQL for lists and filters (``host_list``) and in Python for one host (``status_of``),
from the same thresholds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Case, CharField, Count, QuerySet, Value, When
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone

from governance.hosts.models import Host, HostStatus


@dataclass(frozen=True)
class Thresholds:
    stale_after: dt.timedelta
    offline_after: dt.timedelta


def thresholds() -> Thresholds:
    return Thresholds(
        stale_after=dt.timedelta(seconds=settings.HOST_STALE_SECONDS),
        offline_after=dt.timedelta(seconds=settings.HOST_OFFLINE_SECONDS),
    )


def status_of(last_heartbeat_at: dt.datetime | None, *, now: dt.datetime | None = None) -> HostStatus:
    if last_heartbeat_at is None:
        return HostStatus.OFFLINE
    age = (now or timezone.now()) - last_heartbeat_at
    limits = thresholds()
    if age <= limits.stale_after:
        return HostStatus.ONLINE
    if age <= limits.offline_after:
        return HostStatus.STALE
    return HostStatus.OFFLINE


def host_list(*, user, now: dt.datetime | None = None) -> QuerySet[Host]:
    """Every host, each with ``status`` as of ``now`` (an annotation: filters and pages read the same)."""
    if not user.is_authenticated:
        return Host.objects.none()
    now = now or timezone.now()
    limits = thresholds()
    status = Case(
        When(last_heartbeat_at__gte=now - limits.stale_after, then=Value(HostStatus.ONLINE.value)),
        When(last_heartbeat_at__gte=now - limits.offline_after, then=Value(HostStatus.STALE.value)),
        default=Value(HostStatus.OFFLINE.value),
        output_field=CharField(),
    )
    return Host.objects.select_related("registered_by").annotate(status=status).order_by("name")


def with_labels(queryset: QuerySet[Host], labels: Iterable[tuple[str, str]]) -> QuerySet[Host]:
    """The hosts carrying every one of ``labels`` (key and value pairs), e.g. ``[("gpu", "h100")]``."""
    for position, (key, value) in enumerate(labels):
        alias = f"label_{position}"
        queryset = queryset.alias(**{alias: KeyTextTransform(key, "labels")}).filter(**{alias: value})
    return queryset


def status_counts(queryset: QuerySet[Host]) -> dict[str, int]:
    """How many hosts of ``queryset`` (from ``host_list``) are in each status, in one query."""
    rows = queryset.order_by().values("status").annotate(n=Count("id")).values_list("status", "n")
    found = dict(rows)
    return {s.value: found.get(s.value, 0) for s in HostStatus}


def gpu_summary(inventory: dict) -> str:
    """``2 × NVIDIA H100 80GB HBM3`` per kind of GPU, or ``no GPU`` (and why, when the agent said)."""
    gpus = [g for g in (inventory or {}).get("gpus") or [] if isinstance(g, dict)]
    if not gpus:
        return "no GPU"
    names: dict[str, int] = {}
    for gpu in gpus:
        names[str(gpu.get("name") or "GPU")] = names.get(str(gpu.get("name") or "GPU"), 0) + 1
    return ", ".join(f"{n} × {name}" for name, n in names.items())
