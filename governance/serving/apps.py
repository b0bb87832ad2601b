from django.apps import AppConfig


def _recover_lost_actions() -> dict:
    from governance.serving import services

    return services.actions_recover_lost()


class ServingConfig(AppConfig):
    name = "governance.serving"
    label = "serving"

    def ready(self):
        from governance.core import leases

        # deployment actions whose worker died: re-queued, or failed, by beat's lease sweep
        leases.register_recovery("serving", _recover_lost_actions)
