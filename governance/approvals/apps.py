from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "governance.approvals"
    label = "approvals"

    def ready(self):
        # Connects the evidence_changed receiver (re-freeze) in every process: the web, the worker,
        # management commands and a bare shell, not only where something imported the services.
        from governance.approvals import services  # noqa: F401
