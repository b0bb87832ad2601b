from django.urls import path

from governance.registry import views

# Names not used by the API router (which also defines model-list, version-transition, ...).
urlpatterns = [
    path("", views.home, name="home"),
    path("models/", views.model_list, name="models"),
    path("models/new/", views.model_create, name="model-register"),
    path("models/<int:pk>/", views.model_detail, name="model-detail"),
    path("models/<int:pk>/risk-tier/", views.model_retier, name="model-retier"),
    path("models/<int:pk>/versions/new/", views.version_create, name="version-upload"),
    path("versions/<int:pk>/", views.version_detail, name="version-detail"),
    path("versions/<int:pk>/lifecycle/", views.version_transition, name="version-lifecycle"),
    path("versions/<int:pk>/bundle/", views.version_bundle, name="version-bundle"),
    path("versions/<int:pk>/card/", views.card_edit, name="card-edit"),
]
