from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularSwaggerSplitView

from governance.core.schema import SchemaView

urlpatterns = [
    path("api/v1/", include(("governance.api_urls", "api"), namespace="api")),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    # Swagger UI's start script is served from this path too (the split view), so the site's
    # Content-Security-Policy (script-src 'self') holds here as on every page
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("", include("governance.accounts.urls")),
    path("", include("governance.audit.urls")),
    path("", include("governance.registry.urls")),
    path("", include("governance.approvals.urls")),
    path("", include("governance.notifications.urls")),
    path("", include("governance.evaluations.urls")),
    path("", include("governance.compliance.urls")),
    path("", include("governance.serving.urls")),
    path("", include("governance.hosts.urls")),
]

handler400 = "governance.core.views.bad_request"
handler403 = "governance.core.views.permission_denied"
handler404 = "governance.core.views.page_not_found"
handler500 = "governance.core.views.server_error"
