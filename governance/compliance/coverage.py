"""Whether a version's evidence covers a mapping item's requirements: a pure decision over facts a
selector loaded (no queries here), one rule per kind of requirement, and missing is never covered.

Each check says why, and links to the evidence that covers it (the card section, the evaluation
run, the review, the audit trail) or to the page where what is missing is added.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.urls import reverse

from governance.compliance import evidence
from governance.registry.models import CARD_SECTION_MIN_CHARS, CARD_SECTIONS

COVERED, MISSING = "covered", "missing"
_SECTION_TITLES = {key: title for key, title, _ in CARD_SECTIONS}

MONITORING_NOTE = (
    "Charter records no production monitoring yet (the monitoring app is not built), so no version can "
    "cover a monitoring requirement; keep that evidence elsewhere until it is."
)


@dataclass(frozen=True)
class RunFact:
    id: int
    finished_at: dt.datetime | None
    purged_at: dt.datetime | None = None  # its stored result was deleted by retention


@dataclass(frozen=True)
class ReviewFact:
    id: int
    at: dt.datetime | None
    environments: tuple[str, ...] = ()


@dataclass(frozen=True)
class Facts:
    """What one version has, as the selector found it; ``version_id`` is ``None`` for a model without versions."""

    model_id: int
    version_id: int | None
    card_revision: int | None = None
    filled_sections: frozenset[str] = frozenset()
    runs: dict[str, RunFact] = field(default_factory=dict)  # the newest successful run of each kind
    approved: ReviewFact | None = None
    open_review: ReviewFact | None = None


@dataclass(frozen=True)
class Check:
    requirement: str
    label: str
    status: str  # covered | missing
    detail: str
    link: str = ""
    link_text: str = ""

    @property
    def covered(self) -> bool:
        return self.status == COVERED


def _date(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d") if value else "an unknown date"


def check(requirement: str, facts: Facts) -> Check:
    label = evidence.LABELS.get(requirement, requirement)
    if requirement == evidence.AUDIT:
        return _audit(label, facts)
    if requirement == evidence.MONITORING:
        return Check(requirement, label, MISSING, MONITORING_NOTE)
    if facts.version_id is None:
        return Check(
            requirement, label, MISSING, "The model has no version yet, so nothing of its evidence exists.",
            reverse("version-upload", args=[facts.model_id]), "Register a version",
        )  # fmt: skip
    if requirement.startswith(evidence.CARD_PREFIX):
        return _card(requirement, label, facts)
    if requirement.startswith(evidence.EVALUATION_PREFIX):
        return _evaluation(requirement, label, facts)
    if requirement == evidence.APPROVAL:
        return _approval(label, facts)
    return Check(requirement, label, MISSING, "Charter does not know this requirement, so nothing covers it.")


def _audit(label: str, facts: Facts) -> Check:
    if facts.version_id is None:
        query = {"object_type": "registry.registeredmodel", "object_id": facts.model_id}
    else:
        query = {"object_type": "registry.modelversion", "object_id": facts.version_id}
    return Check(
        evidence.AUDIT, label, COVERED,
        "Every governed change is in the hash-chained audit log, which Charter never edits or deletes.",
        f"{reverse('audit-log')}?{urlencode(query)}", "Audit trail",
    )  # fmt: skip


def _card(requirement: str, label: str, facts: Facts) -> Check:
    key = requirement.removeprefix(evidence.CARD_PREFIX)
    title = _SECTION_TITLES.get(key, key)
    if key in facts.filled_sections:
        return Check(
            requirement, label, COVERED, f"“{title}” is written in revision {facts.card_revision} of the model card.",
            reverse("version-detail", args=[facts.version_id]) + "#card", f"Model card: {title}",
        )  # fmt: skip
    why = (
        "The version has no model card yet."
        if facts.card_revision is None
        else f"“{title}” is empty or shorter than {CARD_SECTION_MIN_CHARS} characters in the model card."
    )
    return Check(
        requirement, label, MISSING, why, reverse("card-edit", args=[facts.version_id]) + f"#id_{key}",
        f"Write “{title}”",
    )  # fmt: skip


def _evaluation(requirement: str, label: str, facts: Facts) -> Check:
    kind = requirement.removeprefix(evidence.EVALUATION_PREFIX)
    run = facts.runs.get(kind)
    request_page = reverse("evaluation-request", args=[facts.version_id])
    if run is None:
        return Check(
            requirement, label, MISSING, f"No successful {kind.replace('_', ' ')} evaluation of this version.",
            request_page, "Request an evaluation",
        )  # fmt: skip
    if run.purged_at is not None:
        return Check(
            requirement, label, MISSING,
            f"Run #{run.id}'s stored result was deleted past its retention period on {_date(run.purged_at)} "
            "(its digest is kept); run the evaluation again.",
            request_page, "Request an evaluation",
        )  # fmt: skip
    return Check(
        requirement, label, COVERED, f"Evaluation run #{run.id} succeeded on {_date(run.finished_at)}.",
        reverse("evaluation-detail", args=[run.id]), f"Run #{run.id}",
    )  # fmt: skip


def _approval(label: str, facts: Facts) -> Check:
    if facts.approved is not None:
        review = facts.approved
        where = f" for {', '.join(review.environments)}" if review.environments else ""
        return Check(
            evidence.APPROVAL, label, COVERED, f"Review #{review.id} approved the version{where} on {_date(review.at)}.",
            reverse("review-detail", args=[review.id]), f"Review #{review.id}",
        )  # fmt: skip
    if facts.open_review is not None:
        review = facts.open_review
        return Check(
            evidence.APPROVAL, label, MISSING, f"Review #{review.id} is open: the version is not approved yet.",
            reverse("review-detail", args=[review.id]), f"Review #{review.id}",
        )  # fmt: skip
    return Check(
        evidence.APPROVAL, label, MISSING, "No review has approved this version.",
        reverse("review-request", args=[facts.version_id]), "Request a review",
    )  # fmt: skip


def item_status(checks: list[Check]) -> str:
    """An item is covered when every requirement it names is; an item that names none is missing."""
    return COVERED if checks and all(c.covered for c in checks) else MISSING
