from django.urls import path

from governance.approvals import views

urlpatterns = [
    path("reviews/", views.review_queue, name="reviews"),
    path("reviews/<int:pk>/", views.review_detail, name="review-detail"),
    path("reviews/<int:pk>/decide/", views.review_decide, name="review-decide"),
    path("reviews/<int:pk>/withdraw/", views.review_withdraw, name="review-withdraw"),
    path("versions/<int:pk>/request-review/", views.review_request, name="review-request"),
    path("versions/<int:pk>/checklist/", views.checklist_tick, name="checklist-tick"),
    path("models/<int:pk>/policy/", views.model_policy, name="model-policy"),
    path("models/<int:pk>/policy/<int:assignment>/approve/", views.model_policy_approve, name="model-policy-approve"),
    path("models/<int:pk>/policy/<int:assignment>/reject/", views.model_policy_reject, name="model-policy-reject"),
    path("policies/", views.policy_list, name="policies"),
    path("policies/new/", views.policy_create, name="policy-create"),
    path("policies/<int:pk>/", views.policy_detail, name="policy-detail"),
    path("policies/<int:pk>/edit/", views.policy_edit, name="policy-edit"),
    path(
        "policies/<int:pk>/revisions/<int:number>/approve/",
        views.policy_revision_approve,
        name="policy-revision-approve",
    ),
    path(
        "policies/<int:pk>/revisions/<int:number>/reject/", views.policy_revision_reject, name="policy-revision-reject"
    ),
]
