"""The unread-notification count for the top bar (lazy: no query unless a template asks)."""

from django.utils.functional import SimpleLazyObject


def notifications(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def unread() -> int:
        from governance.notifications.selectors import unread_count

        return unread_count(user=user)

    return {"unread_notifications": SimpleLazyObject(unread)}
