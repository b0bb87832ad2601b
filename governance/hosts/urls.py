from django.urls import path

from governance.hosts import views

urlpatterns = [
    path("hosts/", views.host_list, name="hosts"),
    path("hosts/<slug:name>/", views.host_detail, name="host-detail"),
]
