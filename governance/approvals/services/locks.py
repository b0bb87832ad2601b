"""The row locks the approvals services take, in the order ``governance/audit/services.py`` writes
down: the model row, the version row, then the version's review request, the audit chain head last
(the package docstring, ``governance/approvals/services/__init__.py``, says why)."""

from __future__ import annotations

from governance.approvals.models import ApprovalRequest
from governance.core.errors import NotFound
from governance.registry.models import ModelVersion, RegisteredModel


def _locked_model(model: RegisteredModel) -> RegisteredModel:
    # FOR NO KEY UPDATE: serialises the model's policy changes without blocking the versions that
    # reference the model (their inserts take FOR KEY SHARE)
    locked = RegisteredModel.objects.select_for_update(no_key=True, of=("self",)).select_related("team")
    locked = locked.filter(pk=model.pk).first()
    if locked is None:
        raise NotFound("This model no longer exists.")
    return locked


def _locked_version(version: ModelVersion) -> ModelVersion:
    return _locked_version_pk(version.pk)


def _locked_version_pk(pk: int) -> ModelVersion:
    locked = ModelVersion.objects.select_for_update(of=("self",)).select_related("model").filter(pk=pk).first()
    if locked is None:
        raise NotFound("This version no longer exists.")
    return locked


def _locked_review(request: ApprovalRequest) -> tuple[ModelVersion, ApprovalRequest]:
    """The request's version, then the request, both locked: the version first, as a finishing
    evaluation run (and every other writer of the version) takes them."""
    version = _locked_version_pk(request.version_id)
    locked = _locked_request(request)
    locked.version = version
    return version, locked


def _locked_request(request: ApprovalRequest) -> ApprovalRequest:
    """The request row, locked. Only with its version's row already locked (``_locked_review``)."""
    locked = (
        ApprovalRequest.objects.select_for_update(of=("self",))
        .select_related("version", "version__model", "policy_revision__policy", "requested_by", "assignment")
        .filter(pk=request.pk)
        .first()
    )
    if locked is None:
        raise NotFound("This review request no longer exists.")
    return locked
