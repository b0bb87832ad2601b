from django.apps import AppConfig


def _recover_lost_runs() -> dict:
    from governance.evaluations import services

    return services.runs_recover_lost()


class EvaluationsConfig(AppConfig):
    name = "governance.evaluations"
    label = "evaluations"

    def ready(self):
        from governance.core import leases

        # runs whose worker died: re-queued, or failed, by beat's lease sweep
        leases.register_recovery("evaluations", _recover_lost_runs)
