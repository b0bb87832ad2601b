from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "governance.accounts"
    label = "accounts"

    def ready(self):
        from governance.accounts import lockout, schema  # noqa: F401  (the lockout's audit receiver; the OpenAPI auth scheme)
