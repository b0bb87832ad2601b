from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db import transaction
from django.dispatch import receiver

from governance.audit import services
from governance.audit.actions import AuditAction
from governance.core import context


@receiver(user_logged_in)
def _audit_login(sender, request, user, **kwargs):
    context.set_actor(user)
    with transaction.atomic():
        services.record(action=AuditAction.USER_LOGIN, obj=user, object_type="auth.user", actor=user)


@receiver(user_login_failed)
def _audit_login_failed(sender, credentials, request=None, **kwargs):
    if context.current() is None:
        return
    with transaction.atomic():
        services.record(
            action=AuditAction.USER_LOGIN_FAILED,
            object_type="auth.user",
            object_id="",
            changes={"username": str(credentials.get("username", ""))[:150]},
        )
