"""Values every page of the browser UI can use (evaluated lazily: no query unless a template asks)."""

from django.utils.functional import SimpleLazyObject

from governance.accounts.permissions import CAPABILITIES, roles_by_team


def user_may_verify_audit(user) -> bool:
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    return any(roles & CAPABILITIES["audit.verify"] for roles in roles_by_team(user).values())


def user_may_register_models(user) -> bool:
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    return any(roles & CAPABILITIES["model.create"] for roles in roles_by_team(user).values())


def charter(request):
    user = getattr(request, "user", None)
    if user is None:
        return {}

    def teams():
        from governance.accounts.selectors import team_list

        return list(team_list(user=user)) if user.is_authenticated else []

    return {
        "nav_teams": SimpleLazyObject(teams),
        "may_verify_audit": SimpleLazyObject(lambda: user_may_verify_audit(user)),
        "may_register_models": SimpleLazyObject(lambda: user_may_register_models(user)),
    }
