"""Values every page of the browser UI can use (evaluated lazily: no query unless a template asks)."""

from django.utils.functional import SimpleLazyObject

from governance.accounts.models import Role
from governance.accounts.permissions import roles_by_team


def _may_verify_audit(user) -> bool:
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    return any(roles & {Role.AUDITOR, Role.ADMIN} for roles in roles_by_team(user).values())


def charter(request):
    user = getattr(request, "user", None)
    if user is None:
        return {}

    def teams():
        from governance.accounts.selectors import team_list

        return list(team_list(user=user)) if user.is_authenticated else []

    return {
        "nav_teams": SimpleLazyObject(teams),
        "may_verify_audit": SimpleLazyObject(lambda: _may_verify_audit(user)),
    }
