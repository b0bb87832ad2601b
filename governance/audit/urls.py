from django.urls import path

from governance.audit import views

urlpatterns = [
    path("audit/", views.audit_log, name="audit-log"),
    path("audit/verify/", views.audit_verify, name="audit-verify"),
]
