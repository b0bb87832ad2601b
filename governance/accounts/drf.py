from rest_framework.permissions import SAFE_METHODS, BasePermission

from governance.accounts.models import Scope
from governance.accounts.permissions import require_scope, token_scopes
from governance.core.errors import NotPermitted


class TokenScopePermission(BasePermission):
    """API tokens read only with the 'read' scope; writes are checked by the services' scopes.

    A view may name the scope an action needs (``token_scope_actions``, e.g. ``{"heartbeat": "host"}``):
    a token without it is refused before the input is read. A token with the 'host' scope reaches only
    the actions that name it: every other endpoint refuses it, whatever it asks."""

    def has_permission(self, request, view) -> bool:
        needed = getattr(view, "token_scope_actions", {}).get(getattr(view, "action", None))
        if needed is not None:
            require_scope(request.user, needed)
            return True
        held = token_scopes(request.user)
        if held is not None and Scope.HOST in held:
            raise NotPermitted(
                "This API token has the 'host' scope: it registers its compute host and sends its heartbeats, "
                "and can do nothing else.",
                code="token_scope_missing",
            )
        if request.method in SAFE_METHODS:
            require_scope(request.user, "read")
        return True
