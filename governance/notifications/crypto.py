"""Webhook secrets at rest: Fernet, with a key derived from ``SECRET_KEY``.

A database dump alone does not reveal the secrets. Keys derived from ``SECRET_KEY_FALLBACKS``
still decrypt, so rotating ``SECRET_KEY`` the Django way does not break existing webhooks.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


def _fernet_key(secret_key: str) -> bytes:
    return base64.urlsafe_b64encode(hashlib.sha256(("charter-webhook-secret:" + secret_key).encode()).digest())


def _fernet() -> MultiFernet:
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet([Fernet(_fernet_key(k)) for k in keys])


def encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


class SecretUnreadable(Exception):
    """The stored secret was encrypted under a key this deployment no longer has."""


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("The webhook secret cannot be decrypted with SECRET_KEY or its fallbacks.") from None
