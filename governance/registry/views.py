"""Browser pages of the registry: thin views over the same selectors and services as the API.

Every object is looked up through a selector scoped to the user, so another team's model or
version is a 404; every write goes through a service, whose refusals become form errors.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import OuterRef, Subquery
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.functional import cached_property
from django.views.decorators.http import require_POST

from governance.accounts.capabilities import Capability
from governance.accounts.models import Membership
from governance.accounts.permissions import can, roles_for, roles_in
from governance.accounts.selectors import team_list
from governance.audit import selectors as audit_selectors
from governance.audit.presenters import describe_events
from governance.core.errors import DomainError
from governance.core.templatetags.charter import STAGE_COLOURS
from governance.core.ui import show_domain_error
from governance.registry import artifacts, selectors, services
from governance.registry import bundle as evidence_bundle
from governance.registry.filters import ModelFilter
from governance.registry.forms import (
    CardForm,
    ModelCreateForm,
    RetierForm,
    TransitionForm,
    VersionUploadForm,
    staged_artifact_token,
)
from governance.registry.models import (
    CARD_SECTION_MIN_CHARS,
    CARD_SECTIONS,
    PICKLE_FORMATS,
    ModelCard,
    ModelVersion,
    RiskTier,
    Stage,
)

PAGE_SIZE = 25
TIMELINE_LENGTH = 25
TRAIL_LENGTH = 50
ARTIFACT_REFUSALS = {"artifact_too_large", "artifact_empty", "digest_mismatch"}  # the file itself was refused

MODEL_SORTS = {
    "name": ("name", "pk"),
    "-name": ("-name", "-pk"),
    "team": ("team__name", "name"),
    "-team": ("-team__name", "name"),
    "risk": ("risk_tier", "name"),
    "-risk": ("-risk_tier", "name"),
    "versions": ("version_count", "name"),
    "-versions": ("-version_count", "name"),
    "updated": ("updated_at", "pk"),
    "-updated": ("-updated_at", "-pk"),
}
MODEL_COLUMNS = [
    ("name", "Name"),
    ("team", "Team"),
    ("risk", "Risk tier"),
    ("versions", "Versions"),
    (None, "Latest version"),
    (None, "Live"),
    ("updated", "Updated"),
]

MAIN_PATH = [Stage.DRAFT, Stage.IN_REVIEW, Stage.APPROVED, Stage.DEPLOYED, Stage.DEPRECATED, Stage.RETIRED]


class KnownCountPaginator(Paginator):
    """Page numbers without ``COUNT(*)``: the model keeps its version count."""

    def __init__(self, object_list, per_page, *, count: int, **kwargs):
        super().__init__(object_list, per_page, **kwargs)
        self._known_count = count

    @cached_property
    def count(self) -> int:
        return self._known_count


def _page(paginator: Paginator, number):
    page = paginator.get_page(number)
    page.object_list = list(page.object_list)
    return page


# --- home -----------------------------------------------------------------------------------


@login_required
def home(request):
    user = request.user
    counts = selectors.stage_counts(user=user)
    stages = [
        {"key": key, "label": label, "count": counts.get(key, 0), "color": STAGE_COLOURS[key]}
        for key, label in Stage.choices
    ]
    chart = {
        "labels": [s["label"] for s in stages],
        "values": [s["count"] for s in stages],
        "colors": [s["color"] for s in stages],
    }
    awaiting = list(
        selectors.version_list(user=user)
        .filter(stage=Stage.IN_REVIEW)
        .select_related("created_by")
        .order_by("-id")[:10]
    )
    recent = describe_events(user, audit_selectors.event_list(user=user)[:15])
    context = {
        "stages": stages,
        "chart": chart,
        "models_count": selectors.model_list(user=user).count(),
        "versions_count": sum(counts.values()),
        "in_review_count": counts.get(Stage.IN_REVIEW, 0),
        "deployed_count": counts.get(Stage.DEPLOYED, 0),
        "awaiting": awaiting,
        "recent": recent,
    }
    return render(request, "registry/home.html", context)


# --- models ---------------------------------------------------------------------------------


def _latest_version_annotations(qs):
    latest = ModelVersion.objects.filter(model=OuterRef("pk"), number=OuterRef("latest_version_number"))
    return qs.annotate(
        latest_version_id=Subquery(latest.values("id")[:1]),
        latest_version_stage=Subquery(latest.values("stage")[:1]),
    )


@login_required
def model_list(request):
    user = request.user
    teams = list(team_list(user=user))
    filterset = ModelFilter(request.GET or None, queryset=selectors.model_list(user=user), request=request)
    sort = request.GET.get("sort") or "name"
    if sort not in MODEL_SORTS:
        sort = "name"
    models = _latest_version_annotations(filterset.qs).order_by(*MODEL_SORTS[sort])
    page = _page(Paginator(models, PAGE_SIZE), request.GET.get("page"))
    columns = []
    for key, label in MODEL_COLUMNS:
        if key is None:
            columns.append({"label": label})
            continue
        active = sort.lstrip("-") == key
        next_sort = (
            ("-" + key if sort == key else key) if active else ("-" + key if key in ("updated", "versions") else key)
        )
        columns.append({"label": label, "sort": next_sort, "active": active, "desc": active and sort.startswith("-")})
    form = filterset.form
    context = {
        "page": page,
        "filterset": filterset,
        "filter_errors": form.errors if filterset.is_bound else {},
        "teams": teams,
        "risk_tiers": RiskTier.choices,
        "stages": Stage.choices,
        "current": {k: request.GET.get(k, "") for k in ("q", "team", "risk_tier", "stage")},
        "filters_active": any(request.GET.get(k) for k in ("q", "team", "risk_tier", "stage")),
        "sort": sort,
        "columns": columns,
        "may_register": any(can(user, Capability.MODEL_CREATE, t.pk) for t in teams),
    }
    if request.headers.get("HX-Request") and request.headers.get("HX-Target") == "model-results":
        return render(request, "registry/_model_results.html", context)
    return render(request, "registry/model_list.html", context)


@login_required
def model_create(request):
    user = request.user
    allowed = [t.pk for t in team_list(user=user) if can(user, Capability.MODEL_CREATE, t.pk)]
    if not allowed:
        raise PermissionDenied("You need the author or admin role in a team to register a model.")
    teams = team_list(user=user).filter(pk__in=allowed)
    form = ModelCreateForm(request.POST or None, teams=teams, initial={"team": request.GET.get("team")})
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            data = form.cleaned_data
            try:
                model = services.model_create(
                    actor=user,
                    team=data["team"],
                    name=data["name"].strip(),
                    description=data["description"],
                    use_case=data["use_case"],
                    risk_tier=data["risk_tier"],
                    business_kpis=data["business_kpis"],
                    owners=data["owners"],
                )
            except DomainError as exc:
                show_domain_error(request, exc, form)
                status = exc.status
            else:
                messages.success(request, f"Registered model “{model.name}” in {model.team}.")
                return redirect(model)
    return render(request, "registry/model_form.html", {"form": form}, status=status)


def _get_model(request, pk: int):
    return get_object_or_404(
        selectors.model_list(user=request.user).select_related("created_by").prefetch_related("owners"), pk=pk
    )


@login_required
def model_detail(request, pk: int):
    return _model_page(request, _get_model(request, pk))


@login_required
@require_POST
def model_retier(request, pk: int):
    model = _get_model(request, pk)
    form = RetierForm(request.POST)
    if not form.is_valid():
        return _model_page(request, model, status=400, retier_form=form)
    before = model.get_risk_tier_display().lower()
    try:
        services.model_retier(actor=request.user, model=model, **form.cleaned_data)
    except DomainError as exc:
        # the form is shown only to those who may use it; anyone else reads the refusal as a message
        show_domain_error(request, exc, form if exc.status != 403 else None)
        return _model_page(request, _get_model(request, pk), status=exc.status, retier_form=form)
    tier = RiskTier(form.cleaned_data["risk_tier"]).label.lower()
    messages.success(
        request, f"{model.name} moved from the {before} to the {tier} risk tier; any open or approved review of its "
        "versions is frozen again and its reviewers told.",
    )  # fmt: skip
    return redirect(model)


def _model_page(request, model, *, status: int = 200, retier_form: RetierForm | None = None):
    user = request.user
    versions = selectors.version_list(user=user, model=model).select_related("created_by").order_by("-number")
    page = _page(KnownCountPaginator(versions, PAGE_SIZE, count=model.version_count), request.GET.get("page"))
    if page.number == 1:
        latest = page.object_list[0] if page.object_list else None
    else:
        latest = versions.first()
    latest_card = selectors.card_current(version=latest) if latest is not None else None
    trail = audit_selectors.model_trail(user=user, model=model)
    context = {
        "model": model,
        "page": page,
        "latest": latest,
        "latest_card": latest_card,
        "latest_metrics": sorted(latest.metrics.items())[:4]
        if latest is not None and isinstance(latest.metrics, dict)
        else [],
        "latest_missing": _missing_titles(latest_card),
        "timeline": describe_events(user, trail.order_by("-seq")[:TIMELINE_LENGTH]),
        "may_upload": can(user, Capability.VERSION_CREATE, model.team_id),
        "may_retier": can(user, Capability.MODEL_RETIER, model.team_id),
        "retier_form": retier_form or RetierForm(initial={"risk_tier": model.risk_tier}),
    }
    return render(request, "registry/model_detail.html", context, status=status)


# --- versions -------------------------------------------------------------------------------


@login_required
def version_create(request, pk: int):
    user = request.user
    model = get_object_or_404(selectors.model_list(user=user), pk=pk)
    if request.method != "POST" and not can(user, Capability.VERSION_CREATE, model.team_id):
        raise PermissionDenied(f"You need the author or admin role in {model.team} to register a version.")
    form = VersionUploadForm(request.POST or None, request.FILES or None, user=user, model=model)
    status = 200
    if request.method == "POST":
        status = 400
        artifact_refused = False
        if form.is_valid():
            data = dict(form.cleaned_data)
            for key in ("artifact", "staged_artifact"):
                data.pop(key)
            expected = data.pop("artifact_sha256") or None
            try:
                with form.artifact_file() as artifact:
                    version = services.version_create(
                        actor=user, model=model, artifact=artifact, artifact_sha256=expected, **data
                    )
            except DomainError as exc:
                show_domain_error(request, exc, form)
                status = exc.status
                artifact_refused = exc.code in ARTIFACT_REFUSALS
                if artifact_refused:
                    form.staged = None
            except FileNotFoundError:  # the kept file went from the store since the form was checked
                form.add_error("artifact", "The kept file is no longer stored: choose the artifact file again.")
                form.staged = None
            else:
                messages.success(request, f"Registered version {version.number} of {model.name}.")
                return redirect(version)
        if upload := request.FILES.get("artifact"):
            form.previous_file = (upload.name, upload.size)
            if not artifact_refused:
                _keep_upload(request, form, model, upload)
    return render(request, "registry/version_form.html", {"form": form, "model": model}, status=status)


def _keep_upload(request, form: VersionUploadForm, model, upload) -> None:
    """After a form error, keep a valid chosen file so the next try need not choose it again.

    Browsers never keep a file input across a POST. The bytes go where a registration would put
    them (the artifact store, by sha256) and the form carries a signed token naming them; only
    someone who may register versions of this model gets one. A file the store refuses (empty,
    too large, not the declared digest) is not kept: its error is shown instead.
    """
    if form.staged is not None:
        return
    if form.has_error("artifact") or not can(request.user, Capability.VERSION_CREATE, model.team_id):
        return
    declared = None if form.has_error("artifact_sha256") else (form.cleaned_data.get("artifact_sha256") or None)
    try:
        stored = artifacts.store_upload(upload, expected_sha256=declared)
    except DomainError as exc:
        form.add_error("artifact", exc.detail)
        return
    form.staged = staged_artifact_token(
        user=request.user, model=model, sha256=stored.sha256, size=stored.size, name=upload.name or "artifact"
    )
    form.fields["artifact"].widget.attrs["required"] = False


def _missing_titles(card: ModelCard | None) -> list[str]:
    titles = dict((key, title) for key, title, _ in CARD_SECTIONS)
    if card is None:
        return list(titles.values())
    return [titles[key] for key in card.missing_sections()]


def _lifecycle_path(stage: str) -> list[dict]:
    path = list(MAIN_PATH)
    if stage in (Stage.CHANGES_REQUESTED, Stage.REJECTED):
        path.insert(2, stage)
        if stage == Stage.REJECTED:
            path = [Stage.DRAFT, Stage.IN_REVIEW, Stage.REJECTED, Stage.RETIRED]
    here = path.index(stage)
    return [
        {"key": s, "label": Stage(s).label, "state": "done" if i < here else "current" if i == here else "todo"}
        for i, s in enumerate(path)
    ]


def _version_page(request, version: ModelVersion, *, status: int = 200, transition_form: TransitionForm | None = None):
    user = request.user
    card = selectors.card_current(version=version)
    previous = selectors.version_previous(user=user, version=version)
    diff = selectors.version_diff(old=previous, new=version) if previous is not None else None
    trail = audit_selectors.version_trail(user=user, version=version)
    roles = roles_in(user, version.model.team_id)
    steps = [
        {
            "to": to,
            "label": Stage(to).label,
            "verb": step.verb,
            "permitted": bool(step.roles & roles),
            "roles": sorted(step.roles),
            "danger": to in (Stage.REJECTED, Stage.RETIRED, Stage.DEPRECATED),
        }
        for to, step in version.manual_transitions().items()
    ]
    sections = []
    for key, title, help_text in CARD_SECTIONS:
        text = (card.sections.get(key) or "") if card else ""
        sections.append(
            {
                "key": key,
                "title": title,
                "help": help_text,
                "text": text,
                "filled": len(text.strip()) >= CARD_SECTION_MIN_CHARS,
            }
        )
    meta = version.artifact_metadata or {}
    inspected = bool(meta.get("sha256"))
    pickle_based = meta.get("pickle_based") if inspected else version.artifact_format in PICKLE_FORMATS
    context = {
        "version": version,
        "model": version.model,
        "card": card,
        "sections": sections,
        "missing": _missing_titles(card),
        "completeness": card.completeness if card else 0,
        "previous": previous,
        "diff": diff,
        "trail": describe_events(user, trail.order_by("-seq")[:TRAIL_LENGTH]),
        "steps": steps,
        "any_step_permitted": any(s["permitted"] for s in steps),
        "transition_form": transition_form,
        "lifecycle": _lifecycle_path(version.stage),
        "meta": meta,
        "inspected": inspected,
        "pickle_based": pickle_based,
        # the evaluation worker loads a pickle only when someone who may register versions in the owning
        # team uploaded it (workers/evaluations.py)
        "pickle_trusted": pickle_based
        and Membership.objects.filter(
            user_id=version.created_by_id, team_id=version.model.team_id, role__in=roles_for(Capability.VERSION_CREATE)
        ).exists(),
        "download_url": reverse("api:version-artifact", args=[version.pk]),
        "metrics": sorted(version.metrics.items()) if isinstance(version.metrics, dict) else [],
        "hyperparameters": sorted(version.hyperparameters.items()) if isinstance(version.hyperparameters, dict) else [],
        # only where a save can succeed: a role that may edit cards, on a version whose card is not frozen
        "may_edit_card": version.is_editable and can(user, Capability.CARD_EDIT, version.model.team_id),
        "roles": sorted(roles),
    }
    return render(request, "registry/version_detail.html", context, status=status)


def _get_version(request, pk: int) -> ModelVersion:
    return get_object_or_404(selectors.version_list(user=request.user).select_related("created_by"), pk=pk)


@login_required
def version_detail(request, pk: int):
    return _version_page(request, _get_version(request, pk))


@login_required
def version_bundle(request, pk: int):
    """The evidence bundle, downloaded from the version page: the same zip as ``GET /api/v1/versions/<id>/bundle/``."""
    built = evidence_bundle.version_bundle(user=request.user, version=_get_version(request, pk))
    return evidence_bundle.response(built)


@login_required
@require_POST
def version_transition(request, pk: int):
    version = _get_version(request, pk)
    form = TransitionForm(request.POST)
    if form.is_valid():
        to = form.cleaned_data["to"]
        try:
            services.version_transition(actor=request.user, version=version, to=to, reason=form.cleaned_data["reason"])
        except DomainError as exc:
            show_domain_error(request, exc, form)
            return _version_page(request, version, status=exc.status, transition_form=form)
        messages.success(request, f"Version {version.number} of {version.model.name} is now {Stage(to).label.lower()}.")
        return redirect("version-detail", pk=version.pk)
    return _version_page(request, version, status=400, transition_form=form)


@login_required
def card_edit(request, pk: int):
    user = request.user
    version = _get_version(request, pk)
    if request.method != "POST" and not can(user, Capability.CARD_EDIT, version.model.team_id):
        raise PermissionDenied(f"You need the author or admin role in {version.model.team} to edit the model card.")
    current = selectors.card_current(version=version)
    start_from = None  # a new version's card starts as the previous card; saving it stays the author's act
    if current is None and version.stage != Stage.RETIRED:
        start_from = selectors.card_to_start_from(user=user, version=version)
    initial = current or start_from
    form = CardForm(request.POST or None, initial=dict(initial.sections) if initial else {})
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                card = services.card_save(
                    actor=user,
                    version=version,
                    sections=form.changed_sections(current.sections if current else None),
                    comment=form.cleaned_data["comment"],
                )
            except DomainError as exc:
                show_domain_error(request, exc, form)
                status = exc.status
            else:
                messages.success(request, f"Saved model card revision {card.revision} ({card.completeness}% complete).")
                return redirect(reverse("version-detail", args=[version.pk]) + "#card")
    revisions = list(selectors.card_list(user=user, version=version).order_by("-revision")[:50])
    context = {
        "version": version,
        "model": version.model,
        "form": form,
        "current": current,
        "prefilled_from": start_from if not form.is_bound else None,
        "revisions": revisions,
        "retired": version.stage == Stage.RETIRED,
    }
    return render(request, "registry/card_edit.html", context, status=status)
