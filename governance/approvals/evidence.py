"""The evidence manifest of a version: what a review looks at, and the digest that binds an approval to it.

The manifest names the artifact (its sha256 and what inspecting it found), the registered
metadata and metrics, the model fields that choose the policy or that a reviewer reads (risk
tier, use case, description, business KPIs, owners), the current model card revision (by the
hash of its text), and the evaluation results attached to the version. Any change to one of them changes the digest,
and approvals given against the old digest stop counting.
"""

from __future__ import annotations

import hashlib
from typing import Any

from governance.audit.chain import canonical_json
from governance.evaluations.selectors import evidence_runs
from governance.registry.models import ModelVersion

_METADATA_FIELDS = (
    "framework", "artifact_format", "training_data_ref", "evaluation_data_ref", "preprocessing_ref",
    "preprocessing_fingerprint", "hyperparameters", "metrics", "tags", "training_profile",
)  # fmt: skip
# The model's fields a review relies on, in the words of the stale notice. The risk tier chooses
# the policy (when no policy is assigned to the model); the others are what reviewers read.
MODEL_FIELDS = {
    "risk_tier": "the model's risk tier",
    "use_case": "the model's use case",
    "description": "the model's description",
    "business_kpis": "the model's business KPIs",
    "owners": "the model's owners",
}


def model_part(model) -> dict[str, Any]:
    return {
        "risk_tier": model.risk_tier,
        "use_case": model.use_case,
        "description": model.description,
        "business_kpis": model.business_kpis,
        "owners": sorted(model.owners.values_list("username", flat=True)),
    }


def _sha256(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def manifest(version: ModelVersion) -> dict[str, Any]:
    card = version.cards.order_by("-revision").only("revision", "sections").first()
    return {
        "artifact": {
            "sha256": version.artifact_sha256,
            "size": version.artifact_size,
            "inspection": version.artifact_metadata or {},
        },
        "metadata": {name: getattr(version, name) for name in _METADATA_FIELDS},
        "model": model_part(version.model),
        "card": None if card is None else {"revision": card.revision, "sha256": _sha256(card.sections)},
        "evaluations": [
            {
                "kind": run.kind,
                "run": run.pk,
                "result_digest": run.result_digest,
                "artifact_sha256": run.artifact_sha256,
            }
            for run in evidence_runs(version=version)
        ],
    }


def digest(document: dict[str, Any]) -> str:
    return _sha256(document)


def current(version: ModelVersion) -> tuple[dict[str, Any], str]:
    document = manifest(version)
    return document, digest(document)


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Which parts of the evidence differ, in words, for the stale notice."""
    names = {"artifact": "the artifact", "metadata": "the registered metadata", "card": "the model card",
             "evaluations": "the evaluation results"}  # fmt: skip
    found = [names[key] for key in names if before.get(key) != after.get(key)]
    old, new = before.get("model") or {}, after.get("model") or {}
    found += [words for field, words in MODEL_FIELDS.items() if old.get(field) != new.get(field)]
    return found
