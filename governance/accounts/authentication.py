import hashlib

from django.db import connection
from django.db.models import CharField, OuterRef, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone
from rest_framework import authentication, exceptions

from governance.accounts.models import ApiToken, Membership
from governance.audit import context

TOKEN_PREFIX = "chr_"


def hash_token(raw: str) -> str:
    # Tokens carry 256 bits of randomness, so a fast hash is enough to make a stolen table useless.
    return hashlib.sha256(raw.encode()).hexdigest()


class TokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer chr_<prefix>_<secret>``."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace").split()
        if not header or header[0] not in (self.keyword, "Token"):
            return None
        if len(header) != 2 or not header[1].startswith(TOKEN_PREFIX):
            raise exceptions.AuthenticationFailed("Malformed token header: expected 'Bearer chr_…'.")
        raw = header[1]
        prefix = raw[len(TOKEN_PREFIX) :].split("_", 1)[0]
        token = _token_with_roles(prefix)
        if token is None or not _same(token.token_hash, hash_token(raw)):
            raise exceptions.AuthenticationFailed("Invalid API token.")
        if not token.is_active:
            raise exceptions.AuthenticationFailed("This API token has expired or was revoked.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The owner of this API token is inactive.")
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        user = token.user
        if token.role_pairs is not None:  # the roles came with the token: no second query for them
            user._charter_roles = _roles(token.role_pairs)
        user._charter_token = token
        context.set_actor(user, token_id=token.pk)
        return user, token

    def authenticate_header(self, request):
        return self.keyword


def _token_with_roles(prefix: str) -> ApiToken | None:
    """The token, its owner and (on PostgreSQL) the owner's roles per team, in one query: every API
    request authenticates, so this is the hottest read there is."""
    tokens = ApiToken.objects.select_related("user").filter(prefix=prefix)
    if connection.vendor == "postgresql":
        from django.contrib.postgres.expressions import ArraySubquery

        pairs = Membership.objects.filter(user_id=OuterRef("user_id")).values_list(
            Concat(Cast("team_id", CharField()), Value(":"), "role", output_field=CharField())
        )
        tokens = tokens.annotate(role_pairs=ArraySubquery(pairs))
    token = tokens.first()
    if token is not None and not hasattr(token, "role_pairs"):
        token.role_pairs = None
    return token


def _roles(pairs: list[str]) -> dict[int, frozenset[str]]:
    found: dict[int, set[str]] = {}
    for pair in pairs:
        team_id, _, role = pair.partition(":")
        found.setdefault(int(team_id), set()).add(role)
    return {team_id: frozenset(roles) for team_id, roles in found.items()}


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a, b)
