from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "governance.accounts"
    label = "accounts"

    def ready(self):
        from governance.accounts import schema  # noqa: F401  (registers the OpenAPI auth scheme)
