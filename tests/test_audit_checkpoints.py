"""Checkpoints of the audit chain: signed with Ed25519, exported outside the database, checkable without
Charter with the published public key (openssl or a few lines of Python, as the README shows)."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from governance.audit import services, signing
from governance.audit.models import ChainHead, Checkpoint

pytestmark = [pytest.mark.usefixtures("fast_passwords")]


@pytest.fixture
def exported(users, make_model):
    """One checkpoint, exported by the command; its file's content."""
    for i in range(3):
        make_model(f"model-{i}")
    call_command("audit_checkpoint", stdout=io.StringIO())
    [path] = sorted(settings.AUDIT_CHECKPOINT_DIR.glob("checkpoint-*.json"))
    return json.loads(path.read_text())


def _published_key() -> dict:
    response = Client().get("/api/v1/audit/public-key/")  # nobody signed in: the key is public
    assert response.status_code == 200, response.content
    return response.json()


def test_an_exported_checkpoint_verifies_with_the_published_key_in_a_few_lines_of_python(exported):
    published = _published_key()
    assert published["algorithm"] == "ed25519" and published["key_id"] == exported["key_id"]
    head = ChainHead.objects.get(id=1)
    assert (exported["seq"], exported["hash"]) == (head.seq, head.hash)
    assert exported["message"] == f"charter-audit-checkpoint:v2|{head.seq}|{head.hash}|{exported['signed_at']}"
    # what an auditor runs, with nothing of Charter's
    key = serialization.load_pem_public_key(published["public_key_pem"].encode())
    key.verify(base64.b64decode(exported["signature"]), exported["message"].encode())
    forged = exported["message"].replace(f"|{head.seq}|", f"|{head.seq + 1}|")
    with pytest.raises(InvalidSignature):
        key.verify(base64.b64decode(exported["signature"]), forged.encode())


def test_an_exported_checkpoint_verifies_with_openssl(exported, tmp_path):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl binary here")
    published = _published_key()
    (tmp_path / "key.pem").write_text(published["public_key_pem"])
    (tmp_path / "message").write_bytes(exported["message"].encode())
    (tmp_path / "signature").write_bytes(base64.b64decode(exported["signature"]))
    verify = [openssl, "pkeyutl", "-verify", "-pubin", "-inkey", "key.pem", "-rawin", "-in", "message", "-sigfile"]
    ok = subprocess.run([*verify, "signature"], cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0 and "Signature Verified Successfully" in ok.stdout, ok.stdout + ok.stderr
    (tmp_path / "message").write_bytes(exported["message"].replace("|", "|0", 1).encode())
    assert subprocess.run([*verify, "signature"], cwd=tmp_path, capture_output=True).returncode != 0
    der = subprocess.run(
        [openssl, "pkey", "-pubin", "-in", "key.pem", "-outform", "DER"], cwd=tmp_path, capture_output=True
    ).stdout
    digest = subprocess.run([openssl, "dgst", "-sha256", "-r"], input=der, capture_output=True).stdout.split()[0]
    assert digest.decode() == published["key_id"]


def test_the_audit_log_page_publishes_the_key(login, users, exported):
    page = login(users.viewer).get(reverse("audit-log")).content.decode()
    published = _published_key()
    assert published["key_id"] in page
    assert published["public_key_pem"].strip().splitlines()[1] in page
    assert f"Newest checkpoint: #{exported['seq']}" in page


def test_a_head_is_signed_once_and_its_file_written_again_if_missing(exported):
    path = settings.AUDIT_CHECKPOINT_DIR / f"checkpoint-{exported['seq']:012d}.json"
    path.unlink()
    call_command("audit_checkpoint", stdout=io.StringIO())
    assert Checkpoint.objects.count() == 1
    assert json.loads(path.read_text()) == exported
    assert services.verify().ok


def test_a_checkpoint_signed_with_another_key_is_refused(users, make_model, settings, tmp_path):
    make_model("model")
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    settings.AUDIT_SIGNING_KEY_FILE = str(stranger)
    call_command("audit_checkpoint", stdout=io.StringIO())
    settings.AUDIT_SIGNING_KEY_FILE = ""  # back to this deployment's key
    result = services.verify()
    assert not result.ok and "is signed by another key" in result.reason
    assert result.first_broken_seq == ChainHead.objects.get(id=1).seq


def test_checkpoints_from_before_ed25519_stay_verifiable(users, make_model):
    """HMAC-SHA256 checkpoints (rows marked so by migration 0004, files without an ``algorithm``) are
    still read and checked."""
    make_model("model")
    head = ChainHead.objects.get(id=1)
    legacy = signing.legacy_hmac(head.seq, head.hash)
    cp = Checkpoint.objects.create(seq=head.seq, hash=head.hash, algorithm=signing.HMAC_SHA256, signature=legacy)
    settings.AUDIT_CHECKPOINT_DIR.mkdir(parents=True)
    path = settings.AUDIT_CHECKPOINT_DIR / f"checkpoint-{head.seq:012d}.json"
    path.write_text(json.dumps({"seq": cp.seq, "hash": cp.hash, "signature": legacy, "created_at": "2025-01-01"}))
    result = services.verify()
    assert result.ok and result.checkpoints_checked == 1, result  # the row and its file: one checkpoint
    path.write_text(json.dumps({"seq": cp.seq, "hash": "f" * 64, "signature": legacy, "created_at": "2025-01-01"}))
    result = services.verify()
    assert not result.ok and result.first_broken_seq == head.seq and "invalid signature" in result.reason


def test_the_signing_key_is_generated_once_readable_by_its_owner_only(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.AUDIT_SIGNING_KEY_FILE = ""
    first = signing.key_id()
    path = tmp_path / "audit_signing_key.pem"
    assert path.stat().st_mode & 0o777 == 0o600
    assert signing.key_id() == first and list(tmp_path.iterdir()) == [path]


def test_a_configured_key_file_that_is_missing_is_an_error_not_a_new_key(settings, tmp_path):
    settings.AUDIT_SIGNING_KEY_FILE = str(tmp_path / "missing.pem")
    with pytest.raises(ImproperlyConfigured, match="missing.pem, which does not exist"):
        services.checkpoint_create()
    assert not (tmp_path / "missing.pem").exists()
