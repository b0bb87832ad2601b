from drf_spectacular.extensions import OpenApiAuthenticationExtension


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "governance.accounts.authentication.TokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "chr_<prefix>_<secret>",
            "description": "A scoped API token created under 'API tokens'; sent as `Authorization: Bearer chr_…`.",
        }
