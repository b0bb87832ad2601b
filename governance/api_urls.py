from rest_framework.routers import DefaultRouter

from governance.accounts.api import MembershipViewSet, TeamViewSet, TokenViewSet
from governance.approvals import api as approvals
from governance.audit.api import AuditEventViewSet
from governance.evaluations import api as evaluations
from governance.notifications import api as notifications
from governance.registry.api import ModelViewSet, VersionViewSet

router = DefaultRouter()
router.register("teams", TeamViewSet, basename="team")
router.register("memberships", MembershipViewSet, basename="membership")
router.register("tokens", TokenViewSet, basename="token")
router.register("models", ModelViewSet, basename="model")
router.register("versions", VersionViewSet, basename="version")
router.register("audit-events", AuditEventViewSet, basename="auditevent")
approvals.register(router)
notifications.register(router)
evaluations.register(router)

urlpatterns = approvals.urlpatterns + router.urls
