"""Ed25519 signatures over checkpoints of the audit chain, with a key the database never sees.

A checkpoint signs one line, ``charter-audit-checkpoint:v2|<seq>|<hash>|<signed_at>``: the chain head
(the newest event's sequence number and hash) at a moment. Anyone holding the public key (published
on the audit log page and at ``GET /api/v1/audit/public-key/``) checks an exported checkpoint without
Charter: with ``openssl pkeyutl -verify -rawin`` or a few lines of Python (README, "Audit log").

Checkpoints made before this (HMAC-SHA256 with a key derived from SECRET_KEY) stay readable:
``legacy_hmac`` recomputes them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

ED25519 = "ed25519"
HMAC_SHA256 = "hmac-sha256"  # checkpoints written before Ed25519
MESSAGE_PREFIX = "charter-audit-checkpoint:v2"
KEY_FILE_NAME = "audit_signing_key.pem"


def message(*, seq: int, digest: str, signed_at: str) -> bytes:
    """The exact bytes a checkpoint's signature covers."""
    return f"{MESSAGE_PREFIX}|{seq}|{digest}|{signed_at}".encode()


def key_path() -> Path:
    return Path(settings.AUDIT_SIGNING_KEY_FILE or Path(settings.VAR_DIR) / KEY_FILE_NAME)


def private_key() -> Ed25519PrivateKey:
    if settings.AUDIT_SIGNING_KEY:
        return _load(settings.AUDIT_SIGNING_KEY.encode(), "AUDIT_SIGNING_KEY")
    path = key_path()
    if not path.exists():
        if settings.AUDIT_SIGNING_KEY_FILE:
            raise ImproperlyConfigured(f"AUDIT_SIGNING_KEY_FILE names {path}, which does not exist.")
        _generate(path)
    return _load(path.read_bytes(), str(path))


def _load(pem: bytes, where: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"{where} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured(f"{where} holds a {type(key).__name__}; audit checkpoints need an Ed25519 key.")
    return key


def _generate(path: Path) -> None:
    """Write a new key, readable by its owner only. Two processes starting at once (web and worker)
    both try; the hard link lets exactly one of them win, and both then read the winner's key."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
    finally:
        os.close(fd)
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()


def public_key() -> Ed25519PublicKey:
    return private_key().public_key()


def public_pem(key: Ed25519PublicKey | None = None) -> str:
    key = key or public_key()
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def key_id(key: Ed25519PublicKey | None = None) -> str:
    """sha256 of the public key's DER (SubjectPublicKeyInfo):
    ``openssl pkey -pubin -in key.pem -outform DER | sha256sum`` prints the same."""
    key = key or public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(data)).decode()


def verify(key: Ed25519PublicKey, data: bytes, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), data)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def legacy_hmac(seq: int, digest: str) -> str:
    """The HMAC-SHA256 signature of checkpoints written before Ed25519."""
    secret = settings.AUDIT_CHECKPOINT_KEY or settings.SECRET_KEY
    key = hashlib.sha256(("charter-audit-checkpoint:" + secret).encode()).digest()
    return hmac.new(key, f"{seq}|{digest}".encode(), hashlib.sha256).hexdigest()
