import hashlib
import re

from django.utils import timezone
from rest_framework import authentication, exceptions

from governance.accounts import selectors
from governance.accounts.models import ApiToken
from governance.core import context

TOKEN_PREFIX = "chr_"


def hash_token(raw: str) -> str:
    # Tokens carry 256 bits of randomness, so a fast hash is enough to make a stolen table useless.
    return hashlib.sha256(raw.encode()).hexdigest()


_PREFIX = re.compile(r"[0-9a-f]{12}")


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
        # Prefixes are 12 lowercase hex digits; anything else (NUL, other text) is no token of ours,
        # and must not reach the lookup (PostgreSQL refuses NUL in text: a 500, not a 401).
        token = selectors.token_by_prefix(prefix) if _PREFIX.fullmatch(prefix) else None
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
        user._charter_token = token
        context.set_actor(user, token_id=token.pk)
        return user, token

    def authenticate_header(self, request):
        return self.keyword


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a, b)
