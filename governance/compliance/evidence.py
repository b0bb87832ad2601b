"""The evidence a regulatory mapping item can ask for: one vocabulary of machine-checkable requirements.

A requirement is a code: ``card.<section>`` (a filled section of the version's model card, the
sections of ``governance.registry.models.CARD_SECTIONS``), ``evaluation.<kind>`` (a successful
evaluation of that kind on the version, ``governance.evaluations.models.EvaluationKind``),
``approval`` (an approved review of the version), ``audit`` (the version's audit trail: always
there) and ``monitoring`` (production monitoring: Charter records none yet, so never covered).
"""

from __future__ import annotations

from governance.evaluations.models import EvaluationKind
from governance.registry.models import CARD_SECTIONS

CARD_PREFIX = "card."
EVALUATION_PREFIX = "evaluation."
APPROVAL = "approval"
AUDIT = "audit"
MONITORING = "monitoring"


def choices() -> list[tuple[str, str]]:
    """Every requirement code with what it means, in the order a report lists them."""
    return [
        *((f"{CARD_PREFIX}{key}", f"Model card: {title}") for key, title, _ in CARD_SECTIONS),
        *((f"{EVALUATION_PREFIX}{kind.value}", f"Evaluation: {kind.label}") for kind in EvaluationKind),
        (APPROVAL, "An approved review of the version"),
        (AUDIT, "The audit trail of the version"),
        (MONITORING, "Production monitoring"),
    ]


LABELS: dict[str, str] = dict(choices())
CODES: list[str] = list(LABELS)


def ordered(codes) -> list[str]:
    """``codes`` without repeats, in the vocabulary's order (unknown codes are the caller's error)."""
    wanted = set(codes)
    return [code for code in CODES if code in wanted]


def unknown(codes) -> list[str]:
    return sorted({str(code) for code in codes} - set(LABELS))
