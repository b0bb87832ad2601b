"""Values every page of the browser UI can use (evaluated lazily: no query unless a template asks):
the user's teams and what they may do anywhere, which the accounts app knows (core imports no app)."""

from django.utils.functional import SimpleLazyObject

from governance.accounts.capabilities import Capability
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
        "may_verify_audit": SimpleLazyObject(lambda: can_anywhere(user, Capability.AUDIT_VERIFY)),
        "may_register_models": SimpleLazyObject(lambda: can_anywhere(user, Capability.MODEL_CREATE)),
    }
