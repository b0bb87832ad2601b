from django.urls import path

from governance.audit import api, views

urlpatterns = [
    # beside the router's /api/v1/audit-events/: the key belongs to the log, not to one event
    path("api/v1/audit/public-key/", api.AuditPublicKeyView.as_view(), name="audit-public-key"),
    path("audit/", views.audit_log, name="audit-log"),
    path("audit/verify/", views.audit_verify, name="audit-verify"),
]
