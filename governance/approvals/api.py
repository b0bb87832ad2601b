"""REST API of the approvals app: policies, review requests and decisions, the deployment gate, checklist ticks."""

from __future__ import annotations

import re

from django.urls import path
from django_filters import rest_framework as filters
from django_filters.utils import translate_validation
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.accounts.selectors import team_list
from governance.approvals import rules as R
from governance.approvals import selectors, services
from governance.approvals.models import (
    ApprovalRequest,
    Decision,
    DecisionKind,
    Policy,
    PolicyAssignment,
    RequestStatus,
    RevisionState,
)
from governance.core import filters as core_filters
from governance.core.api import described, errors, validated
from governance.core.errors import DomainError, NotFound, ValidationFailed
from governance.core.pagination import NewestFirstCursorPagination, PagePagination
from governance.registry import selectors as registry_selectors
from governance.registry.models import RiskTier
from governance.serving.selectors import environment_names

# --- policies ---------------------------------------------------------------------------------


class ProposalOut(serializers.Serializer):
    number = serializers.IntegerField()
    based_on = serializers.IntegerField(allow_null=True, help_text="The revision the proposal loosens.")
    loosens = serializers.ListField(child=serializers.CharField(), help_text="Why these rules are looser.")
    proposed_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)
    proposed_at = serializers.DateTimeField(source="created_at")
    comment = serializers.CharField()


class PolicyOut(serializers.ModelSerializer):
    team_name = serializers.CharField(source="team.name", read_only=True, default=None, allow_null=True)
    rules = serializers.SerializerMethodField()
    pending_proposal = serializers.SerializerMethodField(
        help_text="A looser revision waiting for a second admin (the rules above stay in force until then)."
    )

    class Meta:
        model = Policy
        fields = [
            "id", "name", "description", "team", "team_name", "risk_tier", "revision", "rules", "pending_proposal",
            "created_at", "updated_at",
        ]  # fmt: skip

    def get_rules(self, obj) -> dict:
        rules = getattr(obj, "current_rules", None)  # annotated by selectors.policy_list
        return rules if rules is not None else selectors.policy_revision_current(obj).rules

    @extend_schema_field(ProposalOut(allow_null=True))
    def get_pending_proposal(self, obj) -> dict | None:
        if getattr(obj, "has_proposal", True) is False:  # annotated by selectors.policy_list: no query
            return None
        proposal = selectors.policy_proposal(obj)
        return ProposalOut(proposal).data if proposal is not None else None


class PolicyIn(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    team = serializers.IntegerField(required=False, allow_null=True, default=None, help_text="Omit for site-wide.")
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices, required=False, allow_blank=True, default="")
    rules = described(serializers.JSONField, {"type": "object"})(
        help_text="Gates and quorum per environment; see the policy documentation."
    )
    comment = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class PolicyPatchIn(serializers.Serializer):
    name = serializers.CharField(max_length=120, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    rules = described(serializers.JSONField, {"type": "object"})(required=False)
    comment = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class PolicyRevisionOut(serializers.Serializer):
    number = serializers.IntegerField()
    state = serializers.ChoiceField(
        choices=RevisionState.choices,
        help_text="adopted (took effect), proposed (a loosening waiting for a second admin) or rejected.",
    )
    rules = serializers.JSONField()
    comment = serializers.CharField()
    loosens = serializers.ListField(child=serializers.CharField(), help_text="Why it loosens the rules before it.")
    based_on = serializers.IntegerField(allow_null=True)
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)
    created_at = serializers.DateTimeField()
    decided_by = serializers.CharField(source="decided_by.username", default=None, allow_null=True)
    decided_at = serializers.DateTimeField(allow_null=True)
    decision_comment = serializers.CharField()


class ProposalDecisionIn(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=300)


class PolicyAssignIn(serializers.Serializer):
    model = serializers.IntegerField()
    policy = serializers.IntegerField(allow_null=True, help_text="null: back to the risk tier's default policy.")


def _revision_ref(revision) -> dict | None:
    if revision is None:
        return None
    return {"policy": revision.policy_id, "policy_name": revision.policy.name, "revision": revision.number}


class AssignmentOut(serializers.ModelSerializer):
    model_name = serializers.CharField(source="model.name")
    policy_name = serializers.CharField(source="policy.name", default=None, help_text="null: the tier's default.")
    target = serializers.SerializerMethodField(help_text="The policy revision that governs once it takes effect.")
    based_on = serializers.SerializerMethodField(help_text="The policy revision that governed when it was made.")
    proposed_by = serializers.CharField(source="proposed_by.username", default=None)
    decided_by = serializers.CharField(source="decided_by.username", default=None, allow_null=True)

    class Meta:
        model = PolicyAssignment
        fields = [
            "id", "model", "model_name", "policy", "policy_name", "state", "loosens", "target", "based_on",
            "proposed_by", "proposed_at", "decided_by", "decided_at", "decision_comment",
        ]  # fmt: skip

    @extend_schema_field(serializers.DictField(allow_null=True))
    def get_target(self, obj) -> dict | None:
        return _revision_ref(obj.target)

    @extend_schema_field(serializers.DictField(allow_null=True))
    def get_based_on(self, obj) -> dict | None:
        return _revision_ref(obj.based_on)


class PolicyAssignedOut(serializers.Serializer):
    model = serializers.IntegerField()
    policy = serializers.IntegerField(allow_null=True, help_text="The policy governing the model now.")
    pending_assignment = AssignmentOut(
        allow_null=True, help_text="A looser choice waiting for a second admin (the policy above governs until then)."
    )


class AssignmentFilter(core_filters.FilterSet):
    model = core_filters.IdFilter(field_name="model_id")
    state = filters.ChoiceFilter(choices=RevisionState.choices)

    class Meta:
        model = PolicyAssignment
        fields = ["model", "state"]


@extend_schema_view(
    list=extend_schema(summary="List policies (site-wide defaults and your teams' own)"),
    retrieve=extend_schema(summary="One policy with its current rules", responses={200: PolicyOut, **errors(404)}),
)
class PolicyViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = PolicyOut
    pagination_class = PagePagination

    def get_queryset(self):
        return selectors.policy_list(user=self.request.user)

    @extend_schema(
        summary="Create a policy", request=PolicyIn, responses={201: PolicyOut, **errors(400, 403, 404, 409)}
    )
    def create(self, request):
        data = validated(PolicyIn, request.data)
        team, team_id = None, data.pop("team")
        if team_id is not None:
            team = team_list(user=request.user).filter(pk=team_id).first()
            if team is None:
                raise NotFound("No such team, or you are not a member of it.", code="team_not_found")
        policy = services.policy_create(actor=request.user, team=team, **data)
        return Response(PolicyOut(policy).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Edit a policy (changed rules become a new revision)",
        description="Rules that tighten the policy (or change nothing a version must pass) take effect at once: "
        "200. Rules that loosen it (fewer approvals, a role slot or gate removed, a threshold relaxed, an "
        "environment newly covered, a longer expiry, a checklist item opened to tokens...) are stored as a "
        "*proposed* revision and answered 202 with `pending_proposal` listing why; the policy keeps its current "
        "revision until a second admin of the team (or a site administrator) approves the proposal at "
        "`POST /api/v1/policies/{id}/revisions/{number}/approve/`. 409 `proposal_pending` while a proposal waits.",
        request=PolicyPatchIn,
        responses={200: PolicyOut, 202: PolicyOut, **errors(400, 403, 404, 409)},
    )
    def partial_update(self, request, pk=None):
        data = validated(PolicyPatchIn, request.data)
        target = self.get_object()
        waiting = selectors.policy_proposal(target)
        policy = services.policy_update(actor=request.user, policy=target, **data)
        proposal = selectors.policy_proposal(policy)
        proposed = proposal is not None and (waiting is None or waiting.pk != proposal.pk)
        return Response(PolicyOut(policy).data, status=status.HTTP_202_ACCEPTED if proposed else status.HTTP_200_OK)

    @extend_schema(summary="Every revision of the policy, newest first", responses={200: PolicyRevisionOut(many=True)})
    @action(detail=True, methods=["get"])
    def revisions(self, request, pk=None):
        revisions = self.get_object().revisions.select_related("created_by", "decided_by").order_by("-number")
        page = self.paginate_queryset(revisions)
        return self.get_paginated_response(PolicyRevisionOut(page, many=True).data)

    def _proposal(self, number: str):
        revision = self.get_object().revisions.select_related("policy", "policy__team").filter(number=number).first()
        if revision is None:
            raise NotFound("This policy has no such revision.", code="revision_not_found")
        return revision

    @extend_schema(
        summary="Approve a proposed loosening of the policy (a second admin)",
        description="The proposed revision becomes the policy's current one. Only an admin of the policy's team "
        "(a site administrator for site-wide policies), in person: 403 `separation_of_duties` for the proposer, "
        "403 `decision_requires_person` for API tokens, 409 `proposal_closed` when it is not proposed any more, "
        "409 `proposal_stale` when the policy moved on since. Refusals are audited as `policy.revision.refused`.",
        request=ProposalDecisionIn,
        responses={200: PolicyRevisionOut, **errors(400, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"], url_path=r"revisions/(?P<number>\d+)/approve", url_name="revision-approve")
    def approve_revision(self, request, pk=None, number=None):
        data = validated(ProposalDecisionIn, request.data)
        revision = services.policy_revision_approve(actor=request.user, revision=self._proposal(number), **data)
        return Response(PolicyRevisionOut(revision).data)

    @extend_schema(
        summary="Reject a proposed loosening of the policy (any admin who may approve it, or its proposer)",
        request=ProposalDecisionIn,
        responses={200: PolicyRevisionOut, **errors(400, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"], url_path=r"revisions/(?P<number>\d+)/reject", url_name="revision-reject")
    def reject_revision(self, request, pk=None, number=None):
        data = validated(ProposalDecisionIn, request.data)
        revision = services.policy_revision_reject(actor=request.user, revision=self._proposal(number), **data)
        return Response(PolicyRevisionOut(revision).data)

    @extend_schema(
        summary="Give a model its own policy, or send it back to its tier's default",
        description="A choice whose rules are looser than the ones governing the model now (fewer approvals, a "
        "gate removed, a threshold relaxed, an environment newly covered...; a model no policy governs approves "
        "nothing) takes effect only once a second admin of the team (or a site administrator) approves it: it is "
        "answered 202 with `pending_assignment` listing why, and the model keeps its policy until then "
        "(`POST /api/v1/policies/assignments/{id}/approve/`). Its proposer never requests nor decides a review "
        "judged under it. A tightening or equal choice, or a site administrator's, takes effect at once: 200. "
        "409 `proposal_pending` while a proposal for the model waits.",
        request=PolicyAssignIn,
        responses={200: PolicyAssignedOut, 202: PolicyAssignedOut, **errors(400, 403, 404, 409)},
    )
    @action(detail=False, methods=["post"])
    def assign(self, request):
        data = validated(PolicyAssignIn, request.data)
        model = registry_selectors.model_list(user=request.user).filter(pk=data["model"]).first()
        if model is None:
            raise NotFound("No such model, or you cannot see it.", code="model_not_found")
        policy = None
        if data["policy"] is not None:
            policy = self.get_queryset().filter(pk=data["policy"]).first()
            if policy is None:
                raise NotFound("No such policy, or you cannot see it.", code="policy_not_found")
        change = services.policy_assign(actor=request.user, policy=policy, model=model)
        proposed = change is not None and change.is_proposed
        try:
            governing = selectors.policy_for_model(model).pk
        except DomainError:  # back to a tier that has no default policy: none governs
            governing = None
        body = {"model": model.pk, "policy": governing,
                "pending_assignment": AssignmentOut(change).data if proposed else None}  # fmt: skip
        return Response(body, status=status.HTTP_202_ACCEPTED if proposed else status.HTTP_200_OK)

    @extend_schema(
        summary="Changes of your models' policies, newest first (filter state=proposed for those waiting)",
        parameters=[
            OpenApiParameter(
                "model", {"type": "integer", "minimum": 1, "maximum": core_filters.MAX_ID}, required=False
            ),
            OpenApiParameter("state", str, required=False, enum=list(RevisionState.values)),
        ],
        responses={200: AssignmentOut(many=True)},
    )
    @action(detail=False, methods=["get"], url_path="assignments", url_name="assignments")
    def assignments(self, request):
        filterset = AssignmentFilter(request.query_params, queryset=selectors.assignment_list(user=request.user))
        if not filterset.is_valid():  # a filter value it cannot use is a 400, as on every other list
            raise translate_validation(filterset.errors)
        queryset = filterset.qs
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(AssignmentOut(page, many=True).data)

    def _assignment(self, assignment_id: str) -> PolicyAssignment:
        found = selectors.assignment_list(user=self.request.user).filter(pk=assignment_id).first()
        if found is None:
            raise NotFound("No such change of a model's policy, or you cannot see it.", code="assignment_not_found")
        return found

    @extend_schema(
        summary="Approve a proposed, looser choice of a model's policy (a second admin)",
        description="The model is governed by the chosen policy from now on. Only an admin of the model's team or a "
        "site administrator, in person: 403 `separation_of_duties` for the proposer, 403 `decision_requires_person` "
        "for API tokens, 409 `proposal_closed` when it is not proposed any more, 409 `proposal_stale` when the "
        "model's policy or the rules changed since. Refusals are audited as `policy.assign.refused`.",
        request=ProposalDecisionIn,
        responses={200: AssignmentOut, **errors(400, 403, 404, 409)},
    )
    @action(
        detail=False, methods=["post"], url_path=r"assignments/(?P<assignment>\d+)/approve",
        url_name="assignment-approve",
    )  # fmt: skip
    def approve_assignment(self, request, assignment=None):
        data = validated(ProposalDecisionIn, request.data)
        change = services.policy_assignment_approve(actor=request.user, assignment=self._assignment(assignment), **data)
        return Response(AssignmentOut(change).data)

    @extend_schema(
        summary="Reject a proposed choice of a model's policy (any admin who may approve it, or its proposer)",
        request=ProposalDecisionIn,
        responses={200: AssignmentOut, **errors(400, 403, 404, 409)},
    )
    @action(
        detail=False, methods=["post"], url_path=r"assignments/(?P<assignment>\d+)/reject",
        url_name="assignment-reject",
    )  # fmt: skip
    def reject_assignment(self, request, assignment=None):
        data = validated(ProposalDecisionIn, request.data)
        change = services.policy_assignment_reject(actor=request.user, assignment=self._assignment(assignment), **data)
        return Response(AssignmentOut(change).data)


# --- review requests --------------------------------------------------------------------------


class DecisionOut(serializers.ModelSerializer):
    decided_by = serializers.CharField(source="decided_by.username")
    counts = serializers.SerializerMethodField(help_text="Whether this decision is on the request's current freeze.")

    class Meta:
        model = Decision
        fields = [
            "id", "decision", "comment", "decided_by", "team_roles", "other_team_roles", "freeze", "artifact_sha256",
            "evidence_digest", "decided_at", "expires_at", "counts", "gate",
        ]  # fmt: skip

    def get_counts(self, obj) -> bool:
        return obj.freeze == obj.request.freeze


class RequestOut(serializers.ModelSerializer):
    version_number = serializers.IntegerField(source="version.number")
    model = serializers.IntegerField(source="version.model_id")
    model_name = serializers.CharField(source="version.model.name")
    stage = serializers.CharField(source="version.stage")
    requested_by = serializers.CharField(source="requested_by.username", default=None)
    policy = serializers.SerializerMethodField()
    decisions = serializers.SerializerMethodField()

    class Meta:
        model = ApprovalRequest
        fields = [
            "id", "version", "version_number", "model", "model_name", "stage", "environments", "status", "comment",
            "artifact_sha256", "evidence_digest", "freeze", "frozen_at", "stale_reason", "requested_by",
            "requested_at", "closed_at", "approved_at", "policy", "decisions",
        ]  # fmt: skip

    def get_policy(self, obj) -> dict:
        revision = obj.policy_revision
        return {"id": revision.policy_id, "name": revision.policy.name, "revision": revision.number}

    def get_decisions(self, obj) -> list[dict]:
        decisions = sorted(obj.decisions.all(), key=lambda d: d.pk)  # prefetched with the page
        return DecisionOut(decisions, many=True).data


class RequestIn(serializers.Serializer):
    version = serializers.IntegerField()
    environments = serializers.ListField(child=serializers.CharField(max_length=40), min_length=1, max_length=5)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=4000)


class DecideIn(serializers.Serializer):
    decision = described(serializers.CharField, {"type": "string", "enum": list(DecisionKind.values)})(
        max_length=40, help_text="approve, request_changes or reject."
    )
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=4000)


class WithdrawIn(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=1000)


class RequestFilter(core_filters.FilterSet):
    status = filters.ChoiceFilter(choices=RequestStatus.choices)
    version = core_filters.IdFilter(field_name="version_id")
    model = core_filters.IdFilter(field_name="version__model_id")
    team = core_filters.IdFilter(field_name="version__model__team_id")
    risk_tier = filters.ChoiceFilter(field_name="version__model__risk_tier", choices=RiskTier.choices)
    awaiting_me = core_filters.BooleanFilter(method="_awaiting", help_text="Open requests you may decide and have not.")

    class Meta:
        model = ApprovalRequest
        fields = ["status", "version", "model", "team", "risk_tier", "awaiting_me"]

    def _awaiting(self, queryset, name, value):
        if value:
            return queryset.filter(pk__in=selectors.request_awaiting(user=self.request.user).values("pk"))
        return queryset


@extend_schema_view(
    list=extend_schema(summary="List review requests (newest first)"),
    retrieve=extend_schema(summary="One review request with its decisions", responses={200: RequestOut, **errors(404)}),
)
class ApprovalRequestViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = RequestOut
    filterset_class = RequestFilter
    pagination_class = NewestFirstCursorPagination

    def get_queryset(self):
        return selectors.request_list(user=self.request.user).prefetch_related("decisions__decided_by")

    @extend_schema(
        summary="Request a review of a version for some environments (freezes its artifact and evidence)",
        request=RequestIn,
        responses={201: RequestOut, **errors(400, 403, 404, 409)},
    )
    def create(self, request):
        data = validated(RequestIn, request.data)
        version = registry_selectors.version_list(user=request.user).filter(pk=data["version"]).first()
        if version is None:
            raise NotFound("No such version, or you cannot see it.", code="version_not_found")
        made = services.request_review(
            actor=request.user, version=version, environments=data["environments"], comment=data["comment"]
        )
        return Response(RequestOut(self.get_queryset().get(pk=made.pk)).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Decide: approve, request changes or reject (a comment is required for the last two)",
        description="Decisions are final. Refused with 403 `separation_of_duties` for the version's author and the "
        "requester, 403 `decision_requires_person` for API tokens, and 409 `request_closed` once the review is closed.",
        request=DecideIn,
        responses={200: RequestOut, **errors(400, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def decide(self, request, pk=None):
        data = validated(DecideIn, request.data)
        target = self.get_object()
        services.request_decide(actor=request.user, request=target, **data)
        return Response(RequestOut(self.get_queryset().get(pk=target.pk)).data)

    @extend_schema(
        summary="Withdraw an open review request (the version goes back to draft)",
        request=WithdrawIn,
        responses={200: RequestOut, **errors(400, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def withdraw(self, request, pk=None):
        data = validated(WithdrawIn, request.data)
        target = self.get_object()
        services.request_withdraw(actor=request.user, request=target, **data)
        return Response(RequestOut(self.get_queryset().get(pk=target.pk)).data)


# --- the gate and the checklist ---------------------------------------------------------------


class GateLineOut(serializers.Serializer):
    kind = serializers.CharField()
    label = serializers.CharField()
    status = serializers.ChoiceField(choices=["passed", "failed", "missing"])
    detail = serializers.CharField()
    link = serializers.CharField()


class GateOut(serializers.Serializer):
    version_id = serializers.IntegerField()
    environment = serializers.CharField()
    verdict = serializers.ChoiceField(choices=["pass", "fail", "pending"])
    summary = serializers.CharField()
    policy = serializers.DictField()
    request_id = serializers.IntegerField(allow_null=True)
    gates = GateLineOut(many=True)
    quorum = GateLineOut(many=True)
    checked_at = serializers.DateTimeField()


def _visible_version(request, pk: int):
    version = registry_selectors.version_list(user=request.user).filter(pk=pk).first()
    if version is None:
        raise NotFound("No such version, or you cannot see it.", code="version_not_found")
    return version


def environment_param(value: str | None) -> str:
    known = environment_names()
    if not value:
        raise ValidationFailed(f"Name the environment: ?environment=<{'|'.join(known)}>.", code="environment_required")
    if value in known:
        return value
    message = f"Unknown environment '{value[:40]}'. Environments are: {', '.join(known)}."
    if not re.fullmatch(R.ENVIRONMENT_NAME, value):
        raise ValidationFailed(message, code="invalid_environment")
    raise NotFound(message, code="unknown_environment")  # a well-formed name of no environment


class GateView(APIView):
    @extend_schema(
        summary="Deployment gate: may this version be served in the environment?",
        description="Always HTTP 200 with the verdict in the body (`pass`, `fail` or `pending`) and one line per "
        "gate and quorum rule saying why, so CI can block until it passes.",
        parameters=[
            OpenApiParameter(
                "environment",
                str,
                required=True,
                pattern=R.ENVIRONMENT_NAME,
                description="An environment's name (GET /api/v1/environments/), e.g. staging.",
            )
        ],  # fmt: skip
        responses={200: GateOut, **errors(400, 404)},
    )
    def get(self, request, pk: int):
        environment = environment_param(request.query_params.get("environment"))
        verdict = selectors.gate_check(version=_visible_version(request, pk), environment=environment)
        return Response(verdict.as_dict())


class ChecklistIn(serializers.Serializer):
    item = serializers.CharField(max_length=64)
    ticked = serializers.BooleanField(default=True)
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


class ChecklistView(APIView):
    @extend_schema(
        summary="Tick (or untick) a manual checklist item of the version's policy",
        description="A tick is an attestation, separated from the work like a review decision: a reviewer, "
        "approver, author or admin of the owning team may tick, except the version's author and the requester "
        "of its open review (403 `separation_of_duties`). An API token may tick only an item whose policy names "
        'that automation (`"automation": true` for any token with the transition scope, or a list of token '
        "names); otherwise 403 `checklist_requires_person`. The tick records the token. Every refusal is "
        "audited as `checklist.tick.refused`. The gate panel of the version page says who may tick each item.",
        request=ChecklistIn,
        responses={200: inline_serializer("ChecklistTicked", {"item": serializers.CharField(),
                                                             "ticked": serializers.BooleanField()}),
                   **errors(400, 403, 404, 409)},
    )  # fmt: skip
    def post(self, request, pk: int):
        data = validated(ChecklistIn, request.data)
        version = _visible_version(request, pk)
        tick = services.checklist_tick(actor=request.user, version=version, **data)
        return Response({"item": data["item"], "ticked": tick is not None})


def register(router) -> None:
    """Add this app's viewsets to the /api/v1/ router."""
    router.register("policies", PolicyViewSet, basename="policy")
    router.register("approval-requests", ApprovalRequestViewSet, basename="approvalrequest")


urlpatterns = [
    path("versions/<int:pk>/gate/", GateView.as_view(), name="version-gate"),
    path("versions/<int:pk>/checklist/", ChecklistView.as_view(), name="version-checklist"),
]
