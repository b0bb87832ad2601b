from django.urls import path

from governance.evaluations import views

urlpatterns = [
    path("versions/<int:pk>/evaluate/", views.run_request, name="evaluation-request"),
    path("evaluations/compare/", views.run_compare, name="evaluation-compare"),
    path("evaluations/<int:pk>/", views.run_detail, name="evaluation-detail"),
    path("evaluations/<int:pk>/progress/", views.run_progress, name="evaluation-progress"),
    path("evaluations/<int:pk>/cancel/", views.run_cancel, name="evaluation-cancel"),
]
