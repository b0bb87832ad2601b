"""Evaluation writes: request a run (data validated before queuing), and the worker's steps.

The worker calls ``run_start``, ``run_progress`` / ``run_renew``, ``run_finish`` / ``run_fail``: each is
idempotent under the run's row lock, so a task delivered twice (``acks_late``) neither runs a
finished evaluation again nor duplicates its result. ``run_start`` gives the worker the run's lease
(``governance.core.leases``), and the worker's later steps name it: a message delivered again while
the run is being worked on does nothing, and a worker that lost the lease changes nothing. A run whose
worker died is re-queued, or failed with ``worker_lost``, by ``runs_recover_lost`` (beat). A finished
run's result joins the version's evidence, which re-freezes an open review
(``registry.signals.evidence_changed``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.conf import settings
from django.core.files.storage import storages
from django.db import IntegrityError, transaction
from django.utils import timezone

from governance.accounts.capabilities import Capability
from governance.accounts.permissions import require, require_scope
from governance.audit import services as audit
from governance.audit.actions import AuditAction
from governance.audit.chain import canonical_json
from governance.celery import enqueue_on_commit
from governance.core import leases, locks
from governance.core.errors import Conflict, NotFound, ValidationFailed
from governance.core.retry import retry_once
from governance.evaluations import params
from governance.evaluations.models import ACTIVE, EvaluationKind, EvaluationRun, RunStatus
from governance.registry.models import ModelVersion
from governance.registry.signals import evidence_changed
from workers.engines import privacy

WORKER_LOST = "worker_lost"


def data_storage():
    return storages["evaluation_data"]


@dataclass(frozen=True)
class Requested:
    run: EvaluationRun
    created: bool  # False: the same evaluation was already queued, running or done


@retry_once
def run_request(
    *, actor, version: ModelVersion, kind: str, data=None, data_from: EvaluationRun | None = None,
    target_column: str = "", sensitive_features: list | None = None, parameters: dict | None = None,
    retain_data: bool = False,
) -> Requested:  # fmt: skip
    """Validate the data and parameters, store the data, and queue the run (once per identical evaluation).

    The data is an upload, or ``data_from``: the retained data of an earlier run (of this model or
    another the actor can see), copied so that each run owns, and deletes, its own file.
    """
    require_scope(actor, "write")
    require(actor, Capability.EVALUATION_REQUEST, team_id=version.model.team_id, what="request an evaluation")
    if kind not in EvaluationKind.values:
        raise ValidationFailed(
            f"'{kind}' is not an evaluation kind. Choose one of: {', '.join(EvaluationKind.values)}.",
            code="invalid_kind",
        )
    chosen = params.parse(kind, parameters)
    queue = _benchmark_queue(chosen["host"]) if kind == EvaluationKind.BENCHMARK else None
    sensitive = list(dict.fromkeys(sensitive_features or []))
    if kind in params.NEEDS_TARGET and not target_column:
        raise ValidationFailed(
            "Name the target column.", code="missing_target", fields={"target_column": "Required for this kind."}
        )
    if kind in params.NEEDS_SENSITIVE and not 1 <= len(sensitive) <= params.MAX_SENSITIVE_FEATURES:
        raise ValidationFailed(
            f"Name one to {params.MAX_SENSITIVE_FEATURES} sensitive feature columns.", code="invalid_sensitive_features",
            fields={"sensitive_features": f"One to {params.MAX_SENSITIVE_FEATURES} columns."},
        )  # fmt: skip
    if (data is None) == (data_from is None):
        raise ValidationFailed(
            "Attach the evaluation data, or name an earlier run whose data was retained (data_from_run).",
            code="missing_data", fields={"data": "Upload a file or name a run."},
        )  # fmt: skip
    if data_from is not None:
        with _retained_copy(data_from) as copy:
            stored = _datasets().store(copy, storage=data_storage())
    else:
        stored = _datasets().store(data, storage=data_storage())  # outside the transaction: files are not transactional
    try:
        summary = _datasets().check(
            stored, storage=data_storage(), target_column=target_column, sensitive_features=sensitive,
            slice_column=chosen.get("slice_column"), sample_weight_column=chosen.get("sample_weight_column"),
        )  # fmt: skip
        digest = hashlib.sha256(
            canonical_json([kind, chosen, target_column, sensitive, stored.sha256, version.artifact_sha256]).encode()
        ).hexdigest()
        with transaction.atomic():
            # lock order (governance/audit/services.py): the version row before the chain head; the
            # run's foreign key would otherwise take this lock at commit, after it
            locks.key_share(ModelVersion, version.pk)
            existing = _current(version, digest)
            if existing is not None:
                data_storage().delete(stored.path)
                return Requested(existing, False)
            run = EvaluationRun.objects.create(
                version=version, kind=kind, parameters=chosen, parameters_digest=digest, data_path=stored.path,
                data_name=stored.name, data_format=stored.format, data_sha256=stored.sha256, data_rows=summary.rows,
                data_columns=summary.columns, target_column=target_column, sensitive_features=sensitive,
                retain_data=retain_data, requested_by=actor,
            )  # fmt: skip
            audit.record(action=AuditAction.EVALUATION_REQUEST, obj=run, after=audit.snapshot(run), actor=actor)
            enqueue_on_commit("workers.evaluations.run_evaluation", run.pk, actor=actor, queue=queue)
            return Requested(run, True)
    except IntegrityError:  # the same evaluation requested at the same moment: the other request won
        data_storage().delete(stored.path)
        with transaction.atomic():
            existing = _current(version, digest)
        if existing is None:
            raise
        return Requested(existing, False)
    except BaseException:
        data_storage().delete(stored.path)
        raise


def _retained_copy(source: EvaluationRun):
    """The retained data file of ``source``, opened for ``datasets.store`` to copy."""
    from django.core.files import File

    if not source.retain_data or source.data_deleted_at is not None or not source.data_path:
        raise ValidationFailed(
            f"Run #{source.pk} did not retain its data; request it again with the data, or retain it next time.",
            code="data_not_retained",
        )
    if not data_storage().exists(source.data_path):
        raise ValidationFailed(f"The retained data of run #{source.pk} is gone.", code="data_not_retained")
    handle = File(data_storage().open(source.data_path, "rb"), name=source.data_name or source.data_path)
    return handle


def runs_auto_request(*, actor, version: ModelVersion, kinds: list[str]) -> list[EvaluationRun]:
    """The evaluations a policy runs on every new version: each kind again, with the parameters and
    the retained data of that kind's newest run on an earlier version of the model. A kind with no
    such run is skipped (there is no data to run it on)."""
    made = []
    for kind in kinds:
        source = (
            EvaluationRun.objects.filter(
                version__model_id=version.model_id,
                version__number__lt=version.number,
                kind=kind,
                retain_data=True,
                data_deleted_at__isnull=True,
            )  # fmt: skip
            .order_by("-version__number", "-id")
            .first()
        )
        if source is None:
            continue
        made.append(
            run_request(
                actor=actor, version=version, kind=kind, data_from=source, target_column=source.target_column,
                sensitive_features=source.sensitive_features, parameters=dict(source.parameters), retain_data=False,
            ).run
        )  # fmt: skip
    return made


def _current(version: ModelVersion, digest: str) -> EvaluationRun | None:
    """The queued, running or successful run of this evaluation; never one whose worker was lost (its
    lease ran out before the sweep came by): that one is re-queued first, or failed if it has had its
    last start, and then there is none. Inside the caller's transaction."""
    wanted = [*ACTIVE, RunStatus.SUCCEEDED]
    run = (
        EvaluationRun.objects.filter(version=version, parameters_digest=digest, status__in=wanted)
        .order_by("-id")
        .first()
    )
    if run is None or run.status != RunStatus.RUNNING or leases.is_held(run):
        return run
    run = _locked(run.pk)
    if run.status == RunStatus.RUNNING and not leases.is_held(run) and not _recover(run, enqueue=True):
        return None
    return run if run.status in wanted else None


def _locked(run_id: int) -> EvaluationRun:
    run = (
        EvaluationRun.objects.select_for_update(of=("self",))
        .select_related("version", "version__model", "version__created_by")
        .filter(pk=run_id)
        .first()
    )
    if run is None:
        raise NotFound("This evaluation run no longer exists.")
    return run


@retry_once
@transaction.atomic
def run_start(*, run_id: int, host: str) -> EvaluationRun | None:
    """Mark the run running under a new lease (``run.lease_token``, which the worker's later calls
    name); ``None`` when there is nothing to do: the run ended (finished, cancelled), or another
    execution holds its lease (the same message delivered twice).

    A run still running whose lease ran out lost its worker, and this is its message delivered again:
    it starts over here (as the sweep would have re-queued it), unless it has had its last start
    (``TASK_LEASE_MAX_ATTEMPTS``): then it fails with ``worker_lost``."""
    run = _locked(run_id)
    if run.status not in ACTIVE or leases.is_held(run):
        return None
    if run.status == RunStatus.RUNNING and not _recover(run, enqueue=False):
        return None
    taken = leases.take(
        EvaluationRun.objects.filter(status__in=ACTIVE), pk=run.pk, status=RunStatus.RUNNING,
        started_at=timezone.now(), progress=0.0, progress_message=f"Started on {host[:80]}",
    )  # fmt: skip
    if taken is None:
        return None
    run.refresh_from_db(fields=["status", "started_at", "attempts", "progress", "progress_message", "lease_token",
                                "lease_expires_at"])  # fmt: skip
    return run


def run_progress(*, run_id: int, percent: float, message: str = "", lease: str | None = None) -> bool:
    """Record progress (not a governed write: no audit), renewing the lease ``lease`` names. False once
    the run was cancelled, or its lease went to another execution: the worker stops. Without ``lease``
    (a caller that is not a leased worker) only the status is checked."""
    running = EvaluationRun.objects.filter(status=RunStatus.RUNNING)
    progress = {"progress": max(0.0, min(100.0, float(percent))), "progress_message": message[:200]}
    if lease is None:
        return bool(running.filter(pk=run_id).update(**progress))
    return leases.renew(running, pk=run_id, token=lease, **progress)


def run_renew(*, run_id: int, lease: str) -> bool:
    """Extend the worker's lease while an engine step is long (the task's heartbeat); False as above."""
    return leases.renew(EvaluationRun.objects.filter(status=RunStatus.RUNNING), pk=run_id, token=lease)


def _holds(run: EvaluationRun, lease: str | None) -> bool:
    """Whether the caller may still write the run's outcome: it names the lease the run is under (a
    caller without one, not a leased worker, only needs the run to be in progress)."""
    return lease is None or run.lease_token == lease


def runs_recover_lost(*, limit: int = 200) -> dict:
    """Re-queue the running runs whose lease ran out (their worker died), or fail with ``worker_lost``
    those that had their last start; their data is deleted when they end. Beat runs it through
    ``governance.core.leases.recover_expired``; each run in a transaction of its own."""
    lost = EvaluationRun.objects.filter(status=RunStatus.RUNNING).filter(leases.not_held()).order_by("id")
    counts = {"requeued": 0, "failed": 0}
    for run_id in lost.values_list("pk", flat=True)[:limit]:
        outcome = _recover_lost(run_id=run_id)
        if outcome is not None:
            counts[outcome] += 1
    return counts


@retry_once
@transaction.atomic
def _recover_lost(*, run_id: int) -> str | None:
    run = _locked(run_id)
    if run.status != RunStatus.RUNNING or leases.is_held(run):  # it ended, or a worker took it, meanwhile
        return None
    return "requeued" if _recover(run, enqueue=True) else "failed"


def _recover(run: EvaluationRun, *, enqueue: bool) -> bool:
    """``run`` (locked) is running and nobody holds its lease: its worker was lost. Back to the queue
    (the message sent again when ``enqueue``), or, after its last allowed start, failed with
    ``worker_lost`` and its data deleted. True when it was re-queued."""
    if run.attempts >= leases.max_attempts():
        _end_failed(
            run, code=WORKER_LOST,
            message=f"The worker running this evaluation was lost (stopped without finishing) {run.attempts} "
            f"time{'s' if run.attempts != 1 else ''}; it was not started again. Request it again.",
        )  # fmt: skip
        return False
    before = {"status": run.status, "attempts": run.attempts}
    run.status = RunStatus.QUEUED
    run.progress, run.progress_message = 0.0, "Queued again: the worker running it was lost"
    run.save(update_fields=["status", "progress", "progress_message", *leases.release(run)])
    audit.record(
        action=AuditAction.EVALUATION_REQUEUE, obj=run, before=before, after={"status": run.status, "reason": WORKER_LOST},
        actor=None,
    )  # fmt: skip
    if enqueue:
        enqueue_on_commit("workers.evaluations.run_evaluation", run.pk, actor=run.requested_by, queue=queue_of(run))
    return True


def _benchmark_queue(host_name: str) -> str:
    """The queue of the compute host a benchmark is to run on: refused unless the host is registered
    and its agent has been heard from recently (a stale host may still answer; an offline one not)."""
    from governance.hosts import selectors as hosts
    from governance.hosts.models import Host, HostStatus, queue_for

    host = Host.objects.filter(name=host_name).only("name", "last_heartbeat_at").first()
    if host is None:
        raise NotFound(f"No compute host named {host_name} is registered.", code="host_not_found")
    if hosts.status_of(host.last_heartbeat_at) == HostStatus.OFFLINE:
        seconds = int(hosts.thresholds().offline_after.total_seconds())
        raise Conflict(
            f"{host_name} is offline: its agent has not sent a heartbeat for over {seconds} s, so nothing would run "
            "the benchmark. Start its host agent (manage.py host_agent) first.",
            code="host_offline",
        )
    return queue_for(host.name)


def queue_of(run: EvaluationRun) -> str | None:
    """Where a run's message goes: a benchmark to its host's queue, the others by their route."""
    if run.kind == EvaluationKind.BENCHMARK:
        from governance.hosts.models import queue_for

        return queue_for(str((run.parameters or {}).get("host", "")))
    return None


def _result_digest(kind: str, result: dict, figures: dict, artifact_sha256: str) -> str:
    return hashlib.sha256(canonical_json([kind, artifact_sha256, result, figures]).encode()).hexdigest()


@retry_once
@transaction.atomic
def run_finish(
    *, run_id: int, result: dict, figures: dict, environment: dict, artifact_sha256: str, lease: str | None = None
) -> EvaluationRun | None:
    """Store the aggregates and figures, delete the data unless retained, and add the result to the
    version's evidence. A run cancelled meanwhile keeps its state and the result is dropped; so does a
    run whose lease ``lease`` no longer holds (another execution took it over).

    Whatever produced them, the result and figures pass ``privacy.aggregates_only`` here once more
    (the runner applied it with the data at hand): nothing is stored that the rule withholds."""
    result, figures = privacy.aggregates_only(
        result, figures, k=privacy.min_count_setting(settings.EVALUATION_MIN_COUNT)
    )
    # The version's lock first (the lock order of governance/audit/services.py), as a review request
    # holds it: the new evidence and a request opened at the same moment are ordered, so the request
    # freezes with this result or is re-frozen by it.
    ModelVersion.objects.select_for_update(of=("self",)).filter(evaluation_runs=run_id).first()
    run = _locked(run_id)
    if run.status != RunStatus.RUNNING or not _holds(run, lease):
        return None
    run.status = RunStatus.SUCCEEDED
    run.progress, run.progress_message = 100.0, "Done"
    run.finished_at = timezone.now()
    run.result, run.figures, run.environment = result, figures, environment
    run.artifact_sha256 = artifact_sha256
    run.result_digest = _result_digest(run.kind, result, figures, artifact_sha256)
    leases.release(run)
    _drop_data(run)
    run.save()
    # the receivers lock the version's review rows: before the chain head, which is taken last
    evidence_changed.send(
        sender=EvaluationRun, version=run.version, actor=None,
        reason=f"A {run.get_kind_display().lower()} evaluation (run #{run.pk}) finished.",
    )  # fmt: skip
    audit.record(
        action=AuditAction.EVALUATION_SUCCEED, obj=run,
        after={"kind": run.kind, "result_digest": run.result_digest, "artifact_sha256": artifact_sha256,
               "environment": environment},
        actor=None,
    )  # fmt: skip
    return run


@retry_once
@transaction.atomic
def run_fail(*, run_id: int, code: str, message: str, lease: str | None = None) -> EvaluationRun | None:
    """End the run with an error a person can act on (never containing data rows); nothing when it
    ended already or its lease ``lease`` no longer holds."""
    run = _locked(run_id)
    if run.status not in ACTIVE or not _holds(run, lease):
        return None
    _end_failed(run, code=code, message=message)
    return run


def _end_failed(run: EvaluationRun, *, code: str, message: str) -> None:
    run.status = RunStatus.FAILED
    run.finished_at = timezone.now()
    run.error_code, run.error_message = code[:40], message[:500]
    run.progress_message = "Failed"
    leases.release(run)
    _drop_data(run)
    run.save()
    audit.record(action=AuditAction.EVALUATION_FAIL, obj=run, after={"error_code": run.error_code}, actor=None)


@retry_once
@transaction.atomic
def run_cancel(*, actor, run: EvaluationRun) -> EvaluationRun:
    require_scope(actor, "write")
    run = _locked(run.pk)
    require(actor, Capability.EVALUATION_REQUEST, team_id=run.version.model.team_id, what="cancel an evaluation")
    if run.status not in ACTIVE:
        raise Conflict(f"Run #{run.pk} is {run.get_status_display().lower()}; only queued or running runs can be cancelled.",
                       code="run_finished")  # fmt: skip
    before = {"status": run.status}
    run.status = RunStatus.CANCELLED
    run.finished_at = timezone.now()
    run.progress_message = f"Cancelled by {actor.get_username()}"
    leases.release(run)
    _drop_data(run)
    run.save()
    audit.record(
        action=AuditAction.EVALUATION_CANCEL, obj=run, before=before, after={"status": run.status}, actor=actor
    )
    return run


def _drop_data(run: EvaluationRun) -> None:
    """Delete the evaluation data once the run ends (seed 000, item 5), unless retention was asked for.

    On commit: a rollback must not leave a run that still needs a file pointing at nothing.
    """
    if run.retain_data or not run.data_path or run.data_deleted_at:
        return
    path = run.data_path
    run.data_deleted_at = timezone.now()
    transaction.on_commit(lambda: data_storage().delete(path))


def _datasets():
    """The upload checks, which read tables with pandas: loaded by the first evaluation request, so a
    process that only serves pages and exports never holds pandas."""
    from governance.evaluations import datasets

    return datasets
