from django.urls import path

from governance.compliance import views

urlpatterns = [
    path("compliance/", views.compliance_home, name="compliance"),
    path("compliance/models/<int:pk>/", views.model_report, name="compliance-report"),
    path("compliance/decisions/", views.decision_record, name="compliance-decisions"),
    path("compliance/decisions.pdf", views.decision_record_pdf, name="compliance-decisions-pdf"),
    path("compliance/frameworks/<int:pk>/", views.framework_detail, name="compliance-framework"),
    path("compliance/frameworks/<int:pk>/items/new/", views.item_create, name="compliance-item-create"),
    path("compliance/items/<int:pk>/", views.item_detail, name="compliance-item"),
]
