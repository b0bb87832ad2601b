from django.contrib.auth import views as auth_views
from django.urls import path

from governance.accounts import views

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<int:pk>/revoke/", views.token_revoke, name="api-token-revoke"),
    path("teams/", views.team_list, name="teams"),
    path("teams/<slug:slug>/", views.team_detail, name="team-detail"),
    path("teams/<slug:slug>/members/", views.membership_add, name="membership-add"),
    path("teams/<slug:slug>/members/<int:pk>/remove/", views.membership_remove, name="membership-remove"),
]
