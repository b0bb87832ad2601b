from django.urls import path

from governance.notifications import views

urlpatterns = [
    path("notifications/", views.notification_list, name="notifications"),
    path("notifications/read-all/", views.notification_read_all, name="notifications-read-all"),
    path("notifications/<int:pk>/read/", views.notification_read, name="notification-read"),
    path("teams/<int:pk>/webhooks/", views.team_webhooks, name="team-webhooks"),
    path("teams/<int:pk>/webhooks/<int:webhook_pk>/test/", views.webhook_test, name="team-webhook-test"),
    path("teams/<int:pk>/webhooks/<int:webhook_pk>/delete/", views.webhook_delete, name="team-webhook-delete"),
]
