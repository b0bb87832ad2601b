from rest_framework.routers import DefaultRouter

from governance.accounts.api import MembershipViewSet, TeamViewSet, TokenViewSet
from governance.approvals import api as approvals
from governance.audit.api import AuditEventViewSet
from governance.compliance import api as compliance
from governance.evaluations import api as evaluations
from governance.hosts import api as hosts
from governance.notifications import api as notifications
from governance.registry.api import ModelViewSet, VersionViewSet
from governance.serving import api as serving


class Router(DefaultRouter):
    """Object ids are numbers: ``/api/v1/webhooks/abc/`` is no route (404), never a lookup that fails."""

    def get_lookup_regex(self, viewset, lookup_prefix=""):
        if not hasattr(viewset, "lookup_value_regex"):
            base_regex = "(?P<{lookup_prefix}{lookup_url_kwarg}>{lookup_value})"
            lookup_url_kwarg = getattr(viewset, "lookup_url_kwarg", None) or getattr(viewset, "lookup_field", "pk")
            return base_regex.format(
                lookup_prefix=lookup_prefix, lookup_url_kwarg=lookup_url_kwarg, lookup_value=r"\d+"
            )
        return super().get_lookup_regex(viewset, lookup_prefix)


router = Router()
router.register("teams", TeamViewSet, basename="team")
router.register("memberships", MembershipViewSet, basename="membership")
router.register("tokens", TokenViewSet, basename="token")
router.register("models", ModelViewSet, basename="model")
router.register("versions", VersionViewSet, basename="version")
router.register("audit-events", AuditEventViewSet, basename="auditevent")
approvals.register(router)
notifications.register(router)
evaluations.register(router)
compliance.register(router)
serving.register(router)
hosts.register(router)

urlpatterns = approvals.urlpatterns + compliance.urlpatterns + serving.urlpatterns + router.urls
