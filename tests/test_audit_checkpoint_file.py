"""Issue 14, signed checkpoints made useful: ``audit_verify --checkpoint FILE`` holds the log against
one signed checkpoint kept apart from Charter (a copy, or the one in an export's trailer) and says
which it is: intact, a tail removed, or a tail rewritten. The beat task signs into the configured
checkpoint storage (a django-storages storage, like the artifacts'), which verification reads back.

The insider here has the tables' owner rights and also deletes the checkpoint rows and the files in
Charter's own checkpoint storage: after that the log agrees with everything Charter still holds,
and only the copy kept apart tells.
"""

from __future__ import annotations

import io
import json
import shutil

import pytest
from django.core.files.storage import storages
from django.core.management import CommandError, call_command

from governance.audit import roles, services
from governance.audit.models import AuditEvent, Checkpoint
from tests.test_audit_integrity import _move_head_to_the_log_end, _rehash_from, _sql, tamper

pytestmark = [pytest.mark.usefixtures("fast_passwords")]


@pytest.fixture(scope="module", autouse=True)
def _as_the_owner(django_db_setup):
    with roles.as_owner():
        yield


@pytest.fixture
def kept_copy(users, make_model, settings, tmp_path):
    """A dozen events, a checkpoint of them copied somewhere Charter cannot reach, then more events."""
    for i in range(6):
        make_model(f"model-{i}")
    call_command("audit_checkpoint", stdout=io.StringIO())
    cp = Checkpoint.objects.get()
    copy = tmp_path / "kept-apart" / "checkpoint.json"
    copy.parent.mkdir()
    shutil.copy(settings.AUDIT_CHECKPOINT_DIR / f"checkpoint-{cp.seq:012d}.json", copy)
    make_model("after-the-checkpoint")
    return copy, cp


def verify_with(path) -> str:
    out = io.StringIO()
    call_command("audit_verify", "--checkpoint", str(path), stdout=out)
    return out.getvalue()


def erase_what_charter_holds(settings) -> None:
    """The rest of the insider's work: checkpoint rows and exported files gone, the head at the new end."""
    _sql("DELETE FROM audit_checkpoint")
    shutil.rmtree(settings.AUDIT_CHECKPOINT_DIR)
    _move_head_to_the_log_end()
    assert services.verify().ok, "nothing Charter still holds disagrees with the log"


def test_an_intact_chain_agrees_with_the_kept_checkpoint(kept_copy, api, users):
    copy, cp = kept_copy
    assert "agrees with the log" in verify_with(copy)
    # the checkpoint of an export's trailer is such a file too
    body = b"".join(api.as_user(users.auditor).get("/api/v1/audit-events/export/?format=jsonl").streaming_content)
    trailer = json.loads(body.splitlines()[-1])["trailer"]
    from_export = copy.with_name("from-export.json")
    from_export.write_text(json.dumps(trailer["checkpoint"]))
    assert trailer["checkpoint"]["seq"] == cp.seq
    assert "agrees with the log" in verify_with(from_export)


def test_a_truncated_tail_is_told_from_an_intact_chain(kept_copy, settings):
    copy, cp = kept_copy
    tamper("DELETE FROM audit_auditevent WHERE seq >= %s", [cp.seq - 1])
    erase_what_charter_holds(settings)
    with pytest.raises(CommandError, match=rf"BROKEN at event #{cp.seq - 1}\b.*covers #{cp.seq}: the tail was removed"):
        verify_with(copy)


def test_a_rewritten_tail_is_told_from_an_intact_chain(kept_copy, settings):
    copy, cp = kept_copy
    tamper("UPDATE audit_auditevent SET actor_label = 'mallory' WHERE seq = %s", [cp.seq - 2])
    _rehash_from(cp.seq - 2)
    erase_what_charter_holds(settings)
    with pytest.raises(CommandError, match=rf"BROKEN at event #{cp.seq}\b.*differs from the signed .*rewritten"):
        verify_with(copy)


def test_a_kept_checkpoint_edited_to_fit_a_rewrite_is_refused(kept_copy, settings):
    copy, cp = kept_copy
    tamper("UPDATE audit_auditevent SET actor_label = 'mallory' WHERE seq = %s", [cp.seq])
    _rehash_from(cp.seq)
    erase_what_charter_holds(settings)
    document = json.loads(copy.read_text())
    document["hash"] = AuditEvent.objects.get(seq=cp.seq).hash
    copy.write_text(json.dumps(document))
    with pytest.raises(CommandError, match="has an invalid signature"):
        verify_with(copy)


def test_a_file_that_is_no_checkpoint_is_a_clear_error(kept_copy, tmp_path):
    not_json = tmp_path / "notes.txt"
    not_json.write_text("hello")
    for path, message in [(not_json, "is not a checkpoint"), (tmp_path / "missing.json", "cannot be read")]:
        with pytest.raises(CommandError, match=message):
            verify_with(path)
    with pytest.raises(CommandError, match="not both"):
        call_command("audit_verify", "--checkpoint", str(not_json), "--checkpoint-dir", str(tmp_path))


def test_the_beat_task_signs_into_the_configured_storage_and_verification_reads_it_back(
    users, make_model, settings, tmp_path
):
    """``STORAGES["audit_checkpoints"]`` is where checkpoints go when it is set (S3 in production, through
    django-storages); here a filesystem storage of its own, apart from AUDIT_CHECKPOINT_DIR."""
    from governance.celery import app
    from workers.audit import checkpoint_chain

    location = tmp_path / "bucket"
    settings.STORAGES = {
        **settings.STORAGES,
        "audit_checkpoints": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": location},
        },
    }
    storages._storages.pop("audit_checkpoints", None)
    try:
        assert app.conf.beat_schedule["audit-checkpoint"]["task"] == checkpoint_chain.name
        for i in range(3):
            make_model(f"model-{i}")
        signed = checkpoint_chain()
        [exported] = sorted(location.glob("checkpoint-*.json"))
        assert json.loads(exported.read_text())["seq"] == signed["seq"]
        assert not settings.AUDIT_CHECKPOINT_DIR.exists()
        assert services.verify().checkpoints_checked == 1
        tamper("DELETE FROM audit_auditevent WHERE seq >= %s", [signed["seq"]])
        _sql("DELETE FROM audit_checkpoint")
        _move_head_to_the_log_end()
        result = services.verify()
        assert not result.ok and "the tail was removed" in result.reason and exported.name in result.reason
    finally:
        storages._storages.pop("audit_checkpoints", None)
