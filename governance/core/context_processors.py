"""Values every page of the browser UI can use (evaluated lazily: no query unless a template asks)."""

from django.utils.functional import SimpleLazyObject

from governance.accounts.permissions import can_anywhere


def charter(request):
    user = getattr(request, "user", None)
    if user is None:
        return {}

    def teams():
        from governance.accounts.selectors import team_list

        return list(team_list(user=user)) if user.is_authenticated else []

    return {
        "nav_teams": SimpleLazyObject(teams),
        "may_verify_audit": SimpleLazyObject(lambda: can_anywhere(user, "audit.verify")),
        "may_register_models": SimpleLazyObject(lambda: can_anywhere(user, "model.create")),
    }
