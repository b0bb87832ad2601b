from rest_framework.permissions import SAFE_METHODS, BasePermission

from governance.accounts.permissions import require_scope


class TokenScopePermission(BasePermission):
    """API tokens read only with the 'read' scope; writes are checked by the services' scopes."""

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            require_scope(request.user, "read")
        return True
