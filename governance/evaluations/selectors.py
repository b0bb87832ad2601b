"""Evaluation reads, scoped to what the user may see."""

from __future__ import annotations

from django.db.models import QuerySet
from django.db.models.fields.json import KeyTextTransform, KeyTransform

from governance.accounts.permissions import team_ids_visible_to
from governance.evaluations.models import EvaluationKind, EvaluationRun, RunStatus
from governance.registry.models import ModelVersion


def run_list(*, user) -> QuerySet[EvaluationRun]:
    ids = team_ids_visible_to(user)
    qs = EvaluationRun.objects.all() if ids is None else EvaluationRun.objects.filter(version__model__team_id__in=ids)
    return qs.select_related("version", "version__model", "requested_by")


def evidence_runs(*, version: ModelVersion) -> list[EvaluationRun]:
    """The newest successful run of each kind and parameters on this version (what a review looks at)."""
    latest: dict[str, EvaluationRun] = {}
    runs = version.evaluation_runs.filter(status=RunStatus.SUCCEEDED).order_by("-finished_at", "-id")
    for run in runs.only("id", "kind", "parameters_digest", "result_digest", "artifact_sha256", "finished_at",
                         "result", "sensitive_features", "parameters", "version_id"):  # fmt: skip
        latest.setdefault(run.parameters_digest, run)
    return sorted(latest.values(), key=lambda r: (r.kind, r.pk))


def latest_succeeded(*, version: ModelVersion, kind: str) -> EvaluationRun | None:
    return version.evaluation_runs.filter(status=RunStatus.SUCCEEDED, kind=kind).order_by("-finished_at", "-id").first()


def evidence_table(*, version: ModelVersion) -> list[dict]:
    """Per kind (a benchmark: per kind and host): the newest run (any status) and, for comparing, the
    same kind's newest successful run on the previous version of the model. Two queries whatever the
    number of runs."""
    runs = list(
        EvaluationRun.objects.filter(version=version)
        .select_related("requested_by")
        .defer("result", "figures", "environment")
        .annotate(device=KeyTextTransform("type", KeyTransform("device", "result")))
        .order_by("-id")[:200]
    )
    newest: dict[tuple[str, str], EvaluationRun] = {}
    for run in runs:
        newest.setdefault(_evidence_key(run), run)
    previous = {}
    earlier = (
        EvaluationRun.objects.filter(
            version__model_id=version.model_id,
            version__number__lt=version.number,
            status=RunStatus.SUCCEEDED,
            kind__in=sorted({kind for kind, _ in newest}),
        )  # fmt: skip
        .select_related("version")
        .only("id", "kind", "parameters", "version__number", "version__id")
        .order_by("-version__number", "-id")
    )
    for run in earlier[:200]:
        previous.setdefault(_evidence_key(run), run)
    return [
        {
            "run": run, "count": sum(1 for r in runs if _evidence_key(r) == key), "previous": previous.get(key),
            "host": key[1],
        }
        for key, run in sorted(newest.items())
    ]  # fmt: skip


def _evidence_key(run: EvaluationRun) -> tuple[str, str]:
    """A benchmark is evidence about one host: the newest per host is shown, not only the newest."""
    host = (run.parameters or {}).get("host", "") if run.kind == EvaluationKind.BENCHMARK else ""
    return run.kind, str(host)
