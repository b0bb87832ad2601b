from django.urls import path

from governance.serving import views

# Names not used by the API router (which defines environment-list, deployment-detail, ... under "api:").
urlpatterns = [
    path("serving/", views.live, name="serving"),
    path("serving/timeline/", views.timeline, name="serving-timeline"),
    path("serving/environments/<slug:name>/", views.environment_detail, name="environment-detail"),
    path("serving/actions/<int:pk>/", views.action_detail, name="deployment-action-detail"),
    path("serving/actions/<int:pk>/progress/", views.action_progress, name="deployment-action-progress"),
    path("versions/<int:pk>/serving/<slug:environment>/<slug:kind>/", views.action_confirm, name="serving-action"),
    path("versions/<int:pk>/probe/", views.probe_edit, name="version-probe-edit"),
]
