from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "governance.audit"
    label = "audit"

    def ready(self):
        from governance.audit import signals  # noqa: F401
