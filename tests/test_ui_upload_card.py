"""The new-version form keeps a valid upload across a form error; a new version's card starts from the last one."""

from __future__ import annotations

import hashlib
import re
import time
from types import SimpleNamespace

import pytest
from django.core import signing
from django.urls import reverse

from governance.core.context import audit_context
from governance.registry import artifacts
from governance.registry import forms as registry_forms
from governance.registry import services as registry
from governance.registry.models import ModelCard, ModelVersion
from tests.conftest import make_artifact

pytestmark = pytest.mark.django_db

BYTES = b"\x80\x04kept-model-bytes" * 10
SHA = hashlib.sha256(BYTES).hexdigest()
VALID = {"framework": "sklearn", "artifact_format": "sklearn-joblib"}


def _token(response) -> str | None:
    found = re.search(r'name="staged_artifact" value="([^"]+)"', response.content.decode())
    return found.group(1) if found else None


def _fail_once(client, model, **extra):
    """A first try whose metrics are wrong, with a valid file: the file is kept."""
    response = client.post(
        reverse("version-upload", args=[model.pk]),
        {"artifact": make_artifact(BYTES, name="scorer.joblib"), "metrics": '{"auc": "high"}', **VALID, **extra},
    )
    assert response.status_code == 400 and "names to numbers" in response.content.decode()
    return response


def test_a_valid_upload_is_kept_across_a_form_error(login, users, model):
    client = login(users.author)
    first = _fail_once(client, model)
    body = first.content.decode()
    assert "Kept from your last try" in body and "scorer.joblib" in body and f"{len(BYTES)}\xa0bytes" in body
    assert "Choose the artifact file again" not in body
    assert artifacts.storage().exists(artifacts.path_for(SHA))  # staged where registration puts it
    token = _token(first)
    assert token and not ModelVersion.objects.filter(model=model).exists()
    # The second try sends no file: the token stands for it.
    second = client.post(
        reverse("version-upload", args=[model.pk]), {"staged_artifact": token, "metrics": '{"auc": 0.8}', **VALID}
    )
    version = ModelVersion.objects.get(model=model)
    assert second.status_code == 302 and second["Location"] == reverse("version-detail", args=[version.pk])
    assert version.artifact_sha256 == SHA and version.artifact_size == len(BYTES)
    assert version.artifact_name == "scorer.joblib" and version.metrics == {"auc": 0.8}


def test_a_kept_upload_survives_a_second_error_and_a_new_file_replaces_it(login, users, model):
    client = login(users.author)
    token = _token(_fail_once(client, model))
    again = client.post(
        reverse("version-upload", args=[model.pk]), {"staged_artifact": token, "hyperparameters": "{oops", **VALID}
    )
    assert again.status_code == 400 and _token(again) == token and "Kept from your last try" in again.content.decode()
    other = b"\x80\x04another-model"
    replaced = client.post(
        reverse("version-upload", args=[model.pk]),
        {"staged_artifact": token, "artifact": make_artifact(other, name="new.joblib"), **VALID},
    )
    assert replaced.status_code == 302
    assert ModelVersion.objects.get(model=model).artifact_sha256 == hashlib.sha256(other).hexdigest()


def test_an_invalid_file_is_not_kept_and_the_hint_names_it(login, users, model):
    client = login(users.author)
    response = client.post(
        reverse("version-upload", args=[model.pk]),
        {"artifact": make_artifact(BYTES, name="scorer.joblib"), "artifact_sha256": "0" * 64, **VALID},
    )
    body = response.content.decode()
    assert response.status_code == 400 and "not the" in body and _token(response) is None
    assert "Choose the artifact file again: browsers do not keep a chosen file after an error." in body
    assert f"You had chosen <strong>scorer.joblib</strong> ({len(BYTES)}\xa0bytes)" in body
    assert not artifacts.storage().exists(artifacts.path_for(SHA))
    # no file at all: the field asks for one (the input is required again)
    empty = client.post(reverse("version-upload", args=[model.pk]), VALID)
    assert empty.status_code == 400 and "Choose the artifact file." in empty.content.decode()
    assert re.search(r'<input type="file" name="artifact"[^>]* required', empty.content.decode())


def test_the_declared_digest_is_checked_against_the_kept_file(login, users, model):
    client = login(users.author)
    token = _token(_fail_once(client, model))
    response = client.post(
        reverse("version-upload", args=[model.pk]), {"staged_artifact": token, "artifact_sha256": "a" * 64, **VALID}
    )
    assert response.status_code == 400 and f"The kept file&#x27;s sha256 is {SHA}" in response.content.decode()
    ok = client.post(
        reverse("version-upload", args=[model.pk]), {"staged_artifact": token, "artifact_sha256": SHA, **VALID}
    )
    assert ok.status_code == 302


def _refused(client, model, token: str, message: str):
    response = client.post(reverse("version-upload", args=[model.pk]), {"staged_artifact": token, **VALID})
    body = response.content.decode()
    assert response.status_code == 400, response.status_code
    assert message in body and "Choose the artifact file again" in body
    assert not ModelVersion.objects.filter(model=model).exists()


def test_forged_foreign_expired_or_moved_tokens_are_form_errors(login, users, model, make_model, monkeypatch):
    token = _token(_fail_once(login(users.admin), model))  # the admin's kept upload
    author = login(users.author)
    # someone else's token: a valid signature, but not for this person
    _refused(author, model, token, "The kept file could not be used")
    # forged: the author's id in an unsigned (or re-signed with another key) payload
    payload = {"u": users.author.pk, "m": model.pk, "s": SHA, "z": len(BYTES), "n": "x"}
    _refused(author, model, signing.dumps(payload, key="not-the-secret", salt=registry_forms.STAGED_SALT), "could not")
    _refused(author, model, signing.dumps(payload, salt="another-purpose"), "could not be used")
    _refused(author, model, token[:-3] + "abc", "could not be used")
    _refused(author, model, "garbage", "could not be used")
    # the author's own token for another model
    other = make_model("other-model")
    own = _token(_fail_once(author, other))
    _refused(author, model, own, "could not be used")
    # expired: an hour later
    real = time.time
    monkeypatch.setattr(signing, "time", SimpleNamespace(time=lambda: real() + registry_forms.STAGED_MAX_AGE + 5))
    _refused(author, other, own, "has expired")
    monkeypatch.undo()
    # the bytes left the store
    artifacts.storage().delete(artifacts.path_for(SHA))
    _refused(author, other, own, "no longer stored")


def test_someone_who_may_not_register_gets_nothing_kept(login, users, model):
    response = login(users.viewer).post(
        reverse("version-upload", args=[model.pk]),
        {"artifact": make_artifact(BYTES), "metrics": '{"auc": "high"}', **VALID},
    )
    assert response.status_code == 400 and _token(response) is None
    assert not artifacts.storage().exists(artifacts.path_for(SHA))


# --- a new version's card starts from the previous card ------------------------------------


def _save_card(version, actor, **sections):
    with audit_context(source="cli", actor=actor):
        return registry.card_save(actor=actor, version=version, sections=sections)


def test_card_editor_of_a_new_version_starts_from_the_newest_earlier_card(login, users, model, make_version):
    v1, v2 = make_version(model), make_version(model)
    _save_card(v1, users.author, intended_use="Scores loan applications for the credit committee.")
    _save_card(
        v1,
        users.author,
        intended_use="Scores loan applications (revised).",
        caveats_and_recommendations="Not for minors.",
    )
    v3 = make_version(model)
    client = login(users.author)
    url = reverse("card-edit", args=[v3.pk])
    page = client.get(url)
    assert page.context["prefilled_from"].version == v1 and page.context["prefilled_from"].revision == 2
    assert page.context["form"]["intended_use"].value() == "Scores loan applications (revised)."
    body = page.content.decode()
    assert "Prefilled from" in body and "v1</a>’s card (revision 2); review every section before saving." in body
    assert not ModelCard.objects.filter(version=v3).exists()  # opening the editor saves nothing
    # v2's editor starts from v1 too; once v2 has its own card, v3 starts from v2's
    assert client.get(reverse("card-edit", args=[v2.pk])).context["prefilled_from"].version == v1
    _save_card(v2, users.author, intended_use="Version two's own card text, long enough.")
    assert client.get(url).context["prefilled_from"].version == v2
    # saving is the author's explicit act, and the saved card is v3's own revision 1
    saved = client.post(url, {"intended_use": "Version two's own card text, long enough.", "comment": "from v2"})
    assert saved.status_code == 302
    card = ModelCard.objects.get(version=v3)
    assert card.revision == 1 and card.created_by == users.author and card.sections["caveats_and_recommendations"] == ""
    # a version with its own card edits that card, and v1 has nothing earlier to start from
    assert client.get(url).context["prefilled_from"] is None
    assert client.get(reverse("card-edit", args=[v1.pk])).context["prefilled_from"] is None


def test_card_prefill_respects_visibility(users, model, make_version):
    from governance.registry import selectors

    v1, v2 = make_version(model), make_version(model)
    _save_card(v1, users.author, intended_use="Scores loan applications for the credit committee.")
    assert selectors.card_to_start_from(user=users.viewer, version=v2).version == v1
    assert selectors.card_to_start_from(user=users.outsider, version=v2) is None
