"""The number of reviews awaiting the signed-in person, for the top bar (lazy: one query when shown)."""

from django.utils.functional import SimpleLazyObject


def reviews(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def awaiting() -> int:
        from governance.approvals.selectors import request_awaiting

        return request_awaiting(user=user).count()

    return {"reviews_awaiting": SimpleLazyObject(awaiting)}
