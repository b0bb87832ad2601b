from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AuditConfig(AppConfig):
    name = "governance.audit"
    label = "audit"

    def ready(self):
        # refusals: the receivers that record the refused writes core announces (governance.core.errors)
        from governance.audit import checks, refusals, roles, signals  # noqa: F401

        # once per migrate (and flush), as the owner: the application role's privileges
        post_migrate.connect(roles.grant_app_role, sender=self, dispatch_uid="audit.grant_app_role")
