"""The Celery app. Tasks live in ``workers/``; this module only wires them to Django."""

import os

from celery import Celery, Task, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "governance.settings")

app = Celery("charter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.imports = (
    "workers.artifacts", "workers.audit", "workers.notifications", "workers.approvals", "workers.evaluations",
    "workers.integrity", "workers.leases", "workers.retention", "workers.deploy",
)  # fmt: skip
app.conf.task_routes = {
    **{
        f"workers.{name}.*": {"queue": "default"}
        for name in ("artifacts", "audit", "notifications", "approvals", "integrity", "leases", "retention")
    },
    # CPU-heavy evidence work has its own queue, so a long SHAP run never delays an inspection or a webhook
    "workers.evaluations.*": {"queue": "evaluations"},
    # serving actions: never behind an evaluation, one worker pool that may be sized and placed on its own
    "workers.deploy.*": {"queue": "deploy"},
}
app.conf.beat_schedule = {
    # a signed, exported copy of the chain head: a removed or rewritten tail no longer verifies
    "audit-checkpoint": {"task": "workers.audit.checkpoint_chain", "schedule": 3600.0},
    "approvals-expiring": {"task": "workers.approvals.announce_expiring_approvals", "schedule": 86400.0},
    # re-hash stored artifacts in bounded slices, oldest-checked first: a changed byte fails the gate
    "artifact-integrity-scrub": {"task": "workers.integrity.scrub_artifacts", "schedule": 3600.0},
    # evaluation results and retained data past EVALUATION_*_RETENTION_DAYS; never a frozen result, never the audit log
    "retention-purge": {"task": "workers.retention.purge_expired", "schedule": 86400.0},
}


@app.on_after_configure.connect
def _schedule_lease_sweep(sender, **kwargs):
    """Re-queue, or fail, the runs whose worker died (``governance.core.leases``), every
    TASK_LEASE_SWEEP_SECONDS: read once Django's settings are, not when this module is imported."""
    from django.conf import settings

    sender.add_periodic_task(
        settings.TASK_LEASE_SWEEP_SECONDS, sender.signature("workers.leases.recover_expired"), name="leases-recover"
    )


@app.on_after_configure.connect
def _schedule_serving_reconcile(sender, **kwargs):
    """Compare each serving backend with what Charter says is live (``workers.deploy.reconcile_backends``,
    on the deploy queue), every SERVING_RECONCILE_SECONDS."""
    from django.conf import settings

    sender.add_periodic_task(
        settings.SERVING_RECONCILE_SECONDS,
        sender.signature("workers.deploy.reconcile_backends"),
        name="serving-reconcile",
    )


@app.on_after_configure.connect
def _schedule_serving_watch(sender, **kwargs):
    """Read each environment's request figures and judge its canaries (``workers.deploy.watch_live``, on
    the deploy queue), every SERVING_WATCH_SECONDS."""
    from django.conf import settings

    sender.add_periodic_task(
        settings.SERVING_WATCH_SECONDS, sender.signature("workers.deploy.watch_live"), name="serving-watch"
    )


AUDIT_KWARG = "_audit"


@signals.setup_logging.connect
def _log_through_django_settings(**kwargs):
    """The worker logs through ``settings.LOGGING``, as the web does: each line with its request id
    (the requester's, restored by ``AuditedTask``), JSON with ``LOG_FORMAT=json``, the level from
    ``LOG_LEVEL``. With a receiver connected, Celery leaves the root logger's handlers alone."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)


class AuditedTask(Task):
    """Carries the enqueuing request's audit context (actor, request id) into the worker.

    The context rides in a reserved keyword argument so it survives any broker and eager mode.
    """

    acks_late = True
    reject_on_worker_lost = True
    typing = False  # the reserved keyword is not in the task's signature

    def apply_async(self, args=None, kwargs=None, **options):
        from governance.core import context

        kwargs = dict(kwargs or {})
        kwargs.setdefault(AUDIT_KWARG, context.as_headers())
        return super().apply_async(args=args, kwargs=kwargs, **options)

    def __call__(self, *args, **kwargs):
        from governance.core.context import audit_context

        carried = kwargs.pop(AUDIT_KWARG, None) or {}
        with audit_context(
            source="task",
            request_id=carried.get("request_id"),
            actor_id=carried.get("actor_id"),
            actor_label=carried.get("actor_label", ""),
        ):
            return super().__call__(*args, **kwargs)


def enqueue_on_commit(task_name: str, *args, actor=None, queue: str | None = None, **kwargs) -> None:
    """Send the task named ``task_name`` once the current transaction commits, under the audit
    context open *now* (with ``actor`` as the requester when given). By name, so the web process
    never imports worker code (or its engines).

    The context is captured here because on-commit callbacks may run after the code that
    opened it (a request, a command) has already left it. A broker outage after the commit is
    logged, not raised: the committed write stands and the task can be re-sent. ``queue`` overrides the
    task's route (a benchmark goes to its compute host's own queue, ``host.<name>``).
    """
    import logging

    from django.db import transaction

    from governance.core import context

    carried = context.as_headers()
    if carried is not None and actor is not None:  # the service's actor is the requester, whoever opened the context
        carried.update(actor_id=actor.pk, actor_label=actor.get_username())

    def send():
        try:
            # the message's printable copies name the task's arguments, not the requester's context, and
            # spare Celery from building them with saferepr on every publish
            app.send_task(
                task_name, args=args, kwargs={**kwargs, AUDIT_KWARG: carried},
                argsrepr=repr(args), kwargsrepr=repr(sorted(kwargs)), **({"queue": queue} if queue else {}),
            )  # fmt: skip
        except Exception:
            logging.getLogger(__name__).exception("Could not enqueue %s", task_name)

    transaction.on_commit(send)
