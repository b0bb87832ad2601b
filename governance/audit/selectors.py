from django.apps import apps
from django.db import connection
from django.db.models import CharField, F, Lookup, Q, QuerySet
from django.db.models.functions import Cast

from governance.accounts.permissions import team_ids_visible_to
from governance.audit.models import AuditEvent


def event_list(*, user) -> QuerySet[AuditEvent]:
    """Events of the user's teams, plus the user's own team-less events (logins); everything for superusers."""
    ids = team_ids_visible_to(user)
    qs = AuditEvent.objects.all()
    if ids is not None:
        qs = qs.filter(Q(team_id__in=ids) | Q(team_id__isnull=True, actor_id=user.pk))
    return qs.order_by("-seq")


def object_trail(*, user, obj) -> QuerySet[AuditEvent]:
    return event_list(user=user).filter(object_type=obj._meta.label_lower, object_id=str(obj.pk))


# An event about a part of a version (its card, a review request, a decision, an evaluation run)
# names the part, not the version: (the part's object type, the path from the part to its version).
# Checklist ticks, refusals and the version's own steps name the version itself. The serving
# issue's deployments join here: one line when their app lands.
VERSION_PARTS: tuple[tuple[str, str], ...] = (
    ("registry.modelcard", "version"),
    ("approvals.approvalrequest", "version"),
    ("approvals.decision", "request__version"),
    ("evaluations.evaluationrun", "version"),
)


class _AnyOf(Lookup):
    """``object_id = ANY(ARRAY(<subquery>))``: PostgreSQL runs the subquery once and probes the audit
    log's (object_type, object_id, -seq) index with the array. With ``IN (<subquery>)`` inside the
    trail's OR it walked the whole log newest first instead, testing each event against every
    subquery (290 ms at 1M events for a version with 25 events)."""

    lookup_name = "any_of"

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} = ANY(ARRAY{rhs})", [*lhs_params, *rhs_params]


def _object_ids(qs: QuerySet, *, probe: bool) -> Q:
    """Events whose ``object_id`` is the id (as text) of one of the rows of ``qs``.

    ``probe``: look the events up by object in the audit index (few objects); otherwise test each
    event as the log is read newest first (many objects, hence many events, the newest page near).
    """
    ids = qs.annotate(audit_object_id=Cast("pk", CharField())).values("audit_object_id")
    if probe and connection.vendor == "postgresql":
        return Q(_AnyOf(F("object_id"), ids))
    return Q(object_id__in=ids)


def _about_versions(*, lookup: str, value, probe: bool) -> Q:
    """Events about the versions matched by ``<lookup>=value`` (``id`` or ``model_id``) and their parts."""
    versions = apps.get_model("registry", "ModelVersion").objects.filter(**{lookup: value})
    about = Q(object_type="registry.modelversion") & _object_ids(versions, probe=probe)
    for label, to_version in VERSION_PARTS:
        try:
            part = apps.get_model(label)
        except LookupError:  # an app that is not installed has no events either
            continue
        parts = part.objects.filter(**{f"{to_version}__{lookup}": value})
        about |= Q(object_type=label) & _object_ids(parts, probe=probe)
    return about


# Up to this many versions, a model's trail is looked up object by object in the audit index: its
# cost follows the model's own events (a few ms). Past it, the events are so many that reading the
# log newest first, each event tested against the model's objects (hashed), finds a page sooner:
# 6 ms for a model of 10,000 versions and 380,000 events at 1M events, where the lookup took 26 s
# (its bitmap went lossy and every recheck scanned the 10,000 ids). A model that went quiet long
# ago costs the walk back to its newest event.
PROBE_MAX_VERSIONS = 200


def version_trail(*, user, version) -> QuerySet[AuditEvent]:
    """Every event about the version: its own steps, checklist ticks and refusals, and those of its
    card revisions, review requests, decisions and evaluation runs. Every one of them is filed under
    the model's team (``audit_team_id``), which the query says too, for the planner."""
    about = _about_versions(lookup="id", value=version.pk, probe=True)
    return event_list(user=user).filter(team_id=version.model.team_id).filter(about)


def model_trail(*, user, model) -> QuerySet[AuditEvent]:
    """Every event about the model and about each of its versions (``version_trail``)."""
    own = Q(object_type="registry.registeredmodel", object_id=str(model.pk))
    about = _about_versions(lookup="model_id", value=model.pk, probe=model.version_count <= PROBE_MAX_VERSIONS)
    return event_list(user=user).filter(team_id=model.team_id).filter(own | about)
