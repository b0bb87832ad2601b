"""Issue 14, point 2: an evidence bundle per version that a regulator keeps and checks without Charter.

One zip (``GET /api/v1/versions/<id>/bundle/`` and a button on the version page): the signed manifest,
the model card as Hugging Face Markdown, Model Card Toolkit JSON and PDF, the registered metadata,
training profile and artifact digest, every evaluation with its charts as PNG, the reviews with their
policy revision, decisions, ticks and gate, the deployment history's note, the version's audit events
with a checkpoint signed at the download's own event, and ``verify.py``, which checks all of it with the
standard library alone. One changed byte in any file, or one changed field of an audit event, makes
``verify.py`` fail and name it. Anyone who can see the version may download it; the download is audited.

The bundle the content and tampering tests read is built once for the module, on a version evaluated in
every kind by the real engines (run in-process with the worker's task body) and reviewed twice (changes
requested, then approved with the checklist ticked), inside a transaction rolled back afterwards.
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
import yaml
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import override_settings
from django.urls import reverse

from governance.accounts import services as accounts
from governance.accounts.models import Membership, Role
from governance.approvals import rules as R
from governance.approvals import services as approvals
from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from governance.evaluations.models import EvaluationKind
from governance.registry import bundle_verify
from governance.registry import services as registry
from governance.registry.models import CARD_SECTIONS
from tests.conftest import PASSWORD, assert_error

# every test may read the database: the module's bundle is built in the test database, which pytest-django
# creates only when a selected test is marked
# every kind but the benchmark, which runs only on a registered host's own worker (tests/test_benchmark_e2e.py)
IN_PROCESS_KINDS = [kind for kind in EvaluationKind if kind != EvaluationKind.BENCHMARK]
pytestmark = [pytest.mark.usefixtures("fast_passwords"), pytest.mark.django_db]
User = get_user_model()

SECTIONS = {
    key: f"{title} of the credit model: written out in full, with an ü, a € and a “quote” for the PDF."
    for key, title, _ in CARD_SECTIONS
}
SECTIONS["intended_use"] = "Retail credit limit decisions, reviewed by a person. Not for employment screening."
# Every file of a bundle, by pattern: each pattern matches at least one file, and every file matches one.
FILE_PATTERNS = [
    "manifest.json", "manifest.sig", "README.txt", "verify.py", "public_key.pem",
    "model_card/model_card.md", "model_card/model_card.mct.json", "model_card/model_card.pdf",
    "model_card/revisions.json", "metadata.json", "training_profile.json", "artifact.json",
    "evaluations/*-explainability/evaluation.json", "evaluations/*-fairness/evaluation.json",
    "evaluations/*-performance/evaluation.json", "evaluations/*-robustness/evaluation.json",
    "evaluations/*-data_quality/evaluation.json", "evaluations/*/charts/*.png",
    "approvals/requests.json", "approvals/checklist.json", "approvals/gate_now.json", "deployments.json",
    "audit/events.json", "audit/checkpoint.json",
]  # fmt: skip
PLAIN_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable


def _storages(root: Path) -> dict:
    from django.conf import settings

    return {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        "artifacts": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": root / "a"}},
        "evaluation_data": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": root / "d"},
        },
    }


@pytest.fixture(scope="module")
def evidence(tmp_path_factory, django_db_setup, django_db_blocker):
    """A bundle of a version with a full card, every kind of evaluation and two reviews, as zip bytes."""
    from django.core.files.storage import storages
    from django.db import connection

    root = tmp_path_factory.mktemp("bundle")
    with (
        django_db_blocker.unblock(),
        override_settings(
            STORAGES=_storages(root),
            AUDIT_CHECKPOINT_DIR=root / "checkpoints",
            TASK_LEASE_SECONDS=600,
            PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        ),  # fmt: skip
        mock.patch("governance.celery.app.send_task", lambda *a, **k: None),  # the fixture runs the tasks itself
    ):
        assert connection.settings_dict["NAME"].startswith("test_"), connection.settings_dict["NAME"]
        for alias in ("artifacts", "evaluation_data"):
            storages._storages.pop(alias, None)
        try:
            with transaction.atomic():
                made = _evidence(root)
                transaction.set_rollback(True)
        finally:
            for alias in ("artifacts", "evaluation_data"):
                storages._storages.pop(alias, None)
    return made


def _evidence(root: Path) -> SimpleNamespace:
    from governance.registry.bundle import version_bundle
    from tests.test_charts_browser import _evaluate, _frame, _version

    superuser = User.objects.create_superuser("root", "root@example.com", PASSWORD)
    with audit_context(source="cli", actor=superuser):
        team = accounts.team_create(actor=superuser, name="Credit Risk")
    users = SimpleNamespace(superuser=superuser)
    for role in Role.values:
        user = User.objects.create_user(role, f"{role}@example.com", PASSWORD)
        Membership.objects.create(user=user, team=team, role=role)
        setattr(users, role, user)
    with audit_context(source="cli", actor=users.author):
        model = registry.model_create(actor=users.author, team=team, name="credit-scoring", use_case="retail credit")
    train, holdout = _frame(300, seed=1), _frame(240, seed=2)
    version = _version(model, users, 1.0, train)
    with audit_context(source="cli", actor=users.author):
        version = registry.version_update(actor=users.author, version=version, metrics={"accuracy": 0.91, "roc_auc": 0.88},
                                          training_data_ref="dvc://credit@v3#train.csv")  # fmt: skip
        registry.card_save(
            actor=users.author, version=version, sections=dict(SECTIONS, caveats_and_recommendations="x")
        )
        registry.card_save(actor=users.author, version=version, sections=SECTIONS, comment="complete")
    runs = {kind: _evaluate(version, users, kind, holdout) for kind in IN_PROCESS_KINDS}

    def act(user, call, **kw):
        with audit_context(source="cli", actor=user):
            return call(actor=user, **kw)

    first = act(users.author, approvals.request_review, version=version, environments=["production"], comment="v1")
    act(users.reviewer, approvals.request_decide, request=first, decision="request_changes",
        comment="Say what the model must not be used for.")  # fmt: skip
    second = act(users.author, approvals.request_review, version=version, environments=["production"],
                 comment="Out-of-scope uses added.")  # fmt: skip
    for i, (item, _) in enumerate(R.DEFAULT_CHECKLIST):
        act(users.reviewer if i % 2 else users.approver, approvals.checklist_tick, version=version, item=item,
            note=f"checked {item}")  # fmt: skip
    act(users.reviewer, approvals.request_decide, request=second, decision="approve", comment="Evidence is complete.")
    act(
        users.approver, approvals.request_decide, request=second, decision="approve", comment="Approved for production."
    )
    version.refresh_from_db()
    assert version.stage == "approved", version.stage

    with audit_context(source="api", actor=users.viewer):
        built = version_bundle(user=users.viewer, version=version)
    data = built.file.read()
    path = root / "bundle.zip"
    path.write_bytes(data)
    from governance.audit import signing

    # plain values: the rows are rolled back once the module's bundle is built
    return SimpleNamespace(
        zip=data, path=path, root=root, key_id=signing.key_id(), event_seq=built.event_seq,
        version=SimpleNamespace(pk=version.pk, number=version.number, artifact_sha256=version.artifact_sha256,
                                artifact_size=version.artifact_size, training_profile=version.training_profile),
        runs={kind: SimpleNamespace(pk=run.pk, result=run.result, figures=run.figures, result_digest=run.result_digest)
              for kind, run in runs.items()},
    )  # fmt: skip


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def _verify(script: Path, target: Path, *extra: str) -> subprocess.CompletedProcess:
    """verify.py under a plain python3, isolated (-I) and without site-packages (-S): the standard library only."""
    return subprocess.run([PLAIN_PYTHON, "-I", "-S", str(script), str(target), *extra], capture_output=True,
                          text=True, timeout=120, cwd=script.parent)  # fmt: skip


@pytest.fixture(scope="module")
def verifier(evidence) -> Path:
    """The verify.py of the untouched bundle: an auditor's own copy, run against tampered bundles."""
    script = evidence.root / "verifier" / "verify.py"
    script.parent.mkdir(exist_ok=True)
    script.write_bytes(_members(evidence.zip)["verify.py"])
    return script


# --- what the bundle holds -----------------------------------------------------------------------


def test_the_bundle_holds_every_file_of_the_evidence_and_the_manifest_hashes_each(evidence):
    files = _members(evidence.zip)
    for pattern in FILE_PATTERNS:
        assert fnmatch.filter(files, pattern), f"no file matches {pattern}: {sorted(files)}"
    assert not [n for n in files if not any(fnmatch.fnmatch(n, p) for p in FILE_PATTERNS)]
    manifest = json.loads(files["manifest.json"])
    version = evidence.version
    assert manifest["format"] == "charter-evidence-bundle/1" and manifest["charter_version"] == "0.1.0"
    assert manifest["version"] == {"id": version.pk, "number": version.number, "stage": "approved"}
    assert manifest["model"]["name"] == "credit-scoring" and manifest["artifact_sha256"] == version.artifact_sha256
    assert manifest["generated_at"].endswith("Z") and manifest["generated_by"] == "viewer"
    assert set(manifest["files"]) == set(files) - {"manifest.json", "manifest.sig"}
    for name, entry in manifest["files"].items():
        assert entry == {"sha256": hashlib.sha256(files[name]).hexdigest(), "size": len(files[name])}, name
    assert manifest["not_recomputable"] == {}  # every stored digest reproduces: verify.py checks them all
    artifact = json.loads(files["artifact.json"])
    assert artifact["sha256"] == version.artifact_sha256 and artifact["size"] == version.artifact_size
    metadata = json.loads(files["metadata.json"])
    assert metadata["version"]["metrics"] == {"accuracy": 0.91, "roc_auc": 0.88}
    assert metadata["version"]["training_data_ref"] == "dvc://credit@v3#train.csv"
    assert json.loads(files["training_profile.json"])["profile"] == version.training_profile != {}
    deployments = json.loads(files["deployments.json"])
    assert deployments["deployments"] == [] and deployments["actions"] == []  # never deployed
    assert "live" in deployments["note"]


def test_every_evaluation_is_its_stored_result_and_its_charts_are_png_images(evidence):
    files = _members(evidence.zip)
    manifest = json.loads(files["manifest.json"])
    for kind, run in evidence.runs.items():
        folder = f"evaluations/{run.pk}-{kind}"
        stored = json.loads(files[f"{folder}/evaluation.json"])
        assert stored["result"] == run.result and stored["result_digest"] == run.result_digest
        assert stored["figures"] == run.figures and stored["status"] == "succeeded"
        charts = [n for n in files if n.startswith(f"{folder}/charts/")]
        skipped = [s for s in manifest["charts"]["skipped"] if s["evaluation"] == run.pk]
        from governance.evaluations.presenters import flatten_figures

        assert len(charts) + len(skipped) == len(flatten_figures(run.figures)) > 0, (kind, charts, skipped)
        assert charts, f"no chart of the {kind} run was drawn"
        for name in charts:
            assert files[name].startswith(b"\x89PNG\r\n\x1a\n") and len(files[name]) > 5000, name
    assert manifest["charts"]["skipped"] == []  # the engines' bars, lines, heatmaps, boxes and point clouds all draw


def test_an_unknown_chart_type_is_listed_as_skipped_with_its_reason_never_dropped():
    from governance.registry.bundle_charts import Unrenderable, render_png

    with pytest.raises(Unrenderable, match="trace type sankey is not drawn offline"):
        render_png({"data": [{"type": "sankey", "node": {}}], "layout": {}})
    with pytest.raises(Unrenderable, match="could not be drawn"):
        render_png({"data": [{"type": "bar", "x": ["a", "b"], "y": [1]}], "layout": {}})
    assert render_png({"data": [{"type": "bar", "x": ["a"], "y": [1]}], "layout": {}}).startswith(b"\x89PNG")


def test_the_model_card_is_hugging_face_markdown_model_card_toolkit_json_and_a_pdf(evidence):
    files = _members(evidence.zip)
    markdown = files["model_card/model_card.md"].decode()
    assert markdown.startswith("---\n")
    front = yaml.safe_load(markdown.split("---\n")[1])
    assert front["library_name"] == "sklearn" and "charter" in front["tags"]
    [index] = front["model-index"]
    assert index["name"] == "credit-scoring"
    registered, *evaluated = index["results"]
    assert registered["task"]["type"] == "tabular-classification"
    assert {(m["type"], m["value"], m["name"]) for m in registered["metrics"]} == {
        ("accuracy", 0.91, "Accuracy"), ("roc_auc", 0.88, "ROC AUC"),
    }  # fmt: skip
    performance = evidence.runs[EvaluationKind.PERFORMANCE]
    [result] = [r for r in evaluated if r["dataset"]["type"] == "charter-evaluation-performance"]
    assert {m["type"]: m["value"] for m in result["metrics"]}["accuracy"] == performance.result["summary"]["accuracy"]
    for key, title, _ in CARD_SECTIONS:
        assert f"## {title}\n\n{SECTIONS[key]}\n" in markdown

    mct = json.loads(files["model_card/model_card.mct.json"])
    assert set(mct) == {
        "schema_version",
        "model_details",
        "model_parameters",
        "quantitative_analysis",
        "considerations",
    }
    assert (
        mct["model_details"]["name"] == "credit-scoring"
        and mct["model_details"]["overview"] == SECTIONS["model_details"]
    )
    assert mct["model_details"]["version"]["name"] == f"v{evidence.version.number}"
    assert mct["considerations"]["use_cases"] == [{"description": SECTIONS["intended_use"]}]
    assert {"type": "accuracy", "value": 0.91} in mct["quantitative_analysis"]["performance_metrics"]
    assert mct["quantitative_analysis"]["graphics"]["collection"][0]["image"]  # base64 PNG, as the schema says
    revisions = json.loads(files["model_card/revisions.json"])["revisions"]
    assert [r["revision"] for r in revisions] == [1, 2] and revisions[-1]["sections"] == SECTIONS


def test_the_pdf_opens_and_its_text_holds_every_section_title_and_text(evidence):
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(_members(evidence.zip)["model_card/model_card.pdf"]))
    text = " ".join(" ".join(page.extract_text().split()) for page in reader.pages)
    assert f"Model card: credit-scoring v{evidence.version.number}" in text
    for key, title, _ in CARD_SECTIONS:
        assert title in text, title
        assert " ".join(SECTIONS[key].split()) in text, key


def test_the_reviews_carry_their_policy_revision_decisions_comments_ticks_and_gate(evidence):
    files = _members(evidence.zip)
    document = json.loads(files["approvals/requests.json"])
    first, second = document["requests"]
    assert "as the person saw it when deciding" in document["gate_result_at_decision"]
    for decision in [*first["decisions"], *second["decisions"]]:  # the gate each person decided on
        assert set(decision["gate_at_decision"]) == set(second["environments"] if decision in second["decisions"]
                                                        else first["environments"]), decision  # fmt: skip
        assert all(g["verdict"] in {"pass", "fail", "pending"} for g in decision["gate_at_decision"].values())
    assert (first["status"], second["status"]) == ("changes_requested", "approved")
    [changes] = first["decisions"]
    assert (changes["decision"], changes["decided_by"]) == ("request_changes", "reviewer")
    assert changes["comment"] == "Say what the model must not be used for."
    assert [(d["decided_by"], d["comment"]) for d in second["decisions"]] == [
        ("reviewer", "Evidence is complete."), ("approver", "Approved for production."),
    ]  # fmt: skip
    for decision in second["decisions"]:
        assert decision["bound_to"] == {
            "artifact_sha256": second["artifact_sha256"],
            "evidence_digest": second["evidence_digest"],
            "freeze": second["freeze"],
        }
        assert decision["bound_to_current_freeze"] is True
    revision = second["policy"]["revision"]
    assert second["policy"]["risk_tier"] == "limited" and revision["rules"]["environments"]["production"]
    assert second["evidence"]["card"]["revision"] == 2
    ticks = json.loads(files["approvals/checklist.json"])["ticks"]
    assert {t["item"] for t in ticks} == {item for item, _ in R.DEFAULT_CHECKLIST}
    assert {t["ticked_by"] for t in ticks} == {"reviewer", "approver"}
    gate = json.loads(files["approvals/gate_now.json"])
    assert gate["production"]["verdict"] == "pass" and gate["production"]["request_id"] == second["id"]


def test_the_audit_events_are_the_versions_in_canonical_form_up_to_the_bundle_with_its_checkpoint(evidence):
    files = _members(evidence.zip)
    events = json.loads(files["audit/events.json"])["events"]
    checkpoint = json.loads(files["audit/checkpoint.json"])
    actions = [e["action"] for e in events]
    for action in (
        "version.create",
        "card.save",
        "evaluation.request",
        "evaluation.succeed",
        "review.request",
        "review.decide",
        "review.changes_requested",
        "checklist.tick",
        "review.approved",
        "version.transition",
    ):
        assert action in actions, action  # fmt: skip
    assert actions[-1] == "version.bundle" and events[-1]["seq"] == evidence.event_seq
    assert (checkpoint["seq"], checkpoint["hash"]) == (events[-1]["seq"], events[-1]["hash"])
    for event in events:  # the canonical fields hash to the hash the chain stored
        assert bundle_verify.event_hash(event) == event["hash"], event["seq"]
    public = files["public_key.pem"].decode()
    assert bundle_verify.public_key_from_pem(public)[1] == evidence.key_id == checkpoint["key_id"]


# --- verify.py --------------------------------------------------------------------------------------


def test_verify_py_is_standard_library_only():
    tree = ast.parse(Path(bundle_verify.__file__).read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported - {"__future__"} <= sys.stdlib_module_names, imported - sys.stdlib_module_names


def test_verify_py_passes_under_a_plain_isolated_python_for_the_zip_and_its_folder(evidence, verifier):
    done = _verify(verifier, evidence.path, "--key-id", evidence.key_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VERIFIED: every check passed." in done.stdout
    assert "manifest.json carries a valid Ed25519 signature" in done.stdout
    assert f"the checkpoint covers the last event, #{evidence.event_seq}" in done.stdout
    assert "5 evaluation results hash to their result_digest" in done.stdout
    folder = evidence.root / "unzipped"
    with zipfile.ZipFile(evidence.path) as archive:
        archive.extractall(folder)
    done = _verify(folder / "verify.py", folder, "--key-id", evidence.key_id)
    assert done.returncode == 0 and "VERIFIED" in done.stdout, done.stdout + done.stderr
    other_key = _verify(verifier, evidence.path, "--key-id", "0" * 64)
    assert other_key.returncode == 1 and "public_key.pem: has key id" in other_key.stdout


@pytest.mark.parametrize("pattern", FILE_PATTERNS)
def test_one_changed_byte_in_any_file_fails_verification_naming_that_file(evidence, verifier, tmp_path, pattern):
    members = _members(evidence.zip)
    for name in fnmatch.filter(members, pattern):
        for at in {0, len(members[name]) // 2, len(members[name]) - 2}:  # the last byte is often a newline
            content = bytearray(members[name])
            content[at] ^= 0x01
            tampered = tmp_path / f"{name.replace('/', '_')}-{at}.zip"
            tampered.write_bytes(_zip({**members, name: bytes(content)}))
            done = _verify(verifier, tampered, "--key-id", evidence.key_id)
            assert done.returncode == 1, (name, at, done.stdout)
            assert "NOT VERIFIED" in done.stdout and f"FAIL  {name}" in done.stdout, (name, at, done.stdout)


def test_a_file_added_to_the_zip_fails_verification_naming_it(evidence, verifier, tmp_path):
    tampered = tmp_path / "added.zip"
    tampered.write_bytes(_zip({**_members(evidence.zip), "evaluations/extra.json": b"{}"}))
    done = _verify(verifier, tampered)
    assert (
        done.returncode == 1 and "FAIL  evaluations/extra.json: is in the bundle but not in the manifest" in done.stdout
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("actor_label", "someone-else"), ("action", "review.approved"), ("created_at", "2020-01-01T00:00:00.000000Z"),
     ("changes", '{"after":{}}'), ("team_id", 999), ("actor_id", None), ("prev_hash", "f" * 64), ("hash", "e" * 64)],
)  # fmt: skip
def test_one_changed_audit_event_field_fails_verification_naming_the_event(evidence, verifier, tmp_path, field, value):
    """The events file is re-hashed into the manifest, so the file check passes: the chain check names the event."""
    members = _members(evidence.zip)
    document = json.loads(members["audit/events.json"])
    event = document["events"][len(document["events"]) // 2]
    assert event[field] != value
    event[field] = value
    events = (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()
    manifest = json.loads(members["manifest.json"])
    manifest["files"]["audit/events.json"] = {"sha256": hashlib.sha256(events).hexdigest(), "size": len(events)}
    tampered = tmp_path / "event.zip"
    tampered.write_bytes(_zip({**members, "audit/events.json": events, "manifest.json": json.dumps(manifest).encode()}))
    done = _verify(verifier, tampered, "--key-id", evidence.key_id)
    assert done.returncode == 1, done.stdout
    assert f"FAIL  audit event #{event['seq']} (" in done.stdout, done.stdout
    assert "audit/events.json: was changed" not in done.stdout  # the chain caught it, not the file's digest


def test_the_pure_python_ed25519_agrees_with_rfc_8032_and_with_cryptography():
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    # RFC 8032, section 7.1, test 1 (the empty message)
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    signature = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe2465"
        "5141438e7a100b"
    )
    assert bundle_verify.ed25519_verify(public, b"", signature)
    assert not bundle_verify.ed25519_verify(public, b"\x00", signature)
    for size in (0, 1, 33, 1000):
        key = Ed25519PrivateKey.generate()
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        message = os.urandom(size)
        signed = key.sign(message)
        assert bundle_verify.ed25519_verify(raw, message, signed)
        for i in (0, 31, 32, 63):
            forged = bytearray(signed)
            forged[i] ^= 0x04
            assert not bundle_verify.ed25519_verify(raw, message, bytes(forged))


# --- who may download it, and the record of it -----------------------------------------------------


@pytest.fixture
def carded_version(users, version):
    with audit_context(source="cli", actor=users.author):
        registry.card_save(actor=users.author, version=version, sections=SECTIONS)
    return version


def test_anyone_who_sees_the_version_downloads_it_and_another_team_gets_a_404(api, users, carded_version):
    url = f"/api/v1/versions/{carded_version.pk}/bundle/"
    refused = api.as_user(users.outsider).get(url, HTTP_ACCEPT="application/zip")
    assert_error(refused, 404)
    assert_error(api.as_user(users.viewer).get("/api/v1/versions/999999/bundle/", HTTP_ACCEPT="application/zip"), 404)
    assert not AuditEvent.objects.filter(action="version.bundle").exists()
    for role, accept in (("viewer", "application/zip"), ("auditor", "*/*"), ("author", "application/json"),
                         ("superuser", "application/zip, application/json;q=0.5")):  # fmt: skip
        response = api.as_user(getattr(users, role)).get(url, HTTP_ACCEPT=accept)
        assert response.status_code == 200, (role, response.content[:300])
        assert response["Content-Type"] == "application/zip"
        assert (
            response["Content-Disposition"]
            == f'attachment; filename="credit-scoring-v{carded_version.number}-evidence.zip"'
        )
        body = b"".join(response.streaming_content)
        assert hashlib.sha256(_members(body)["manifest.json"]).hexdigest() == response["X-Bundle-Manifest-SHA256"]
        event = AuditEvent.objects.filter(action="version.bundle").order_by("-seq").first()
        assert (event.actor, event.object_type, event.object_id) == (getattr(users, role), "registry.modelversion",
                                                                     str(carded_version.pk))  # fmt: skip
        assert event.request_id == response["X-Request-ID"] and event.source == "api"
        assert json.loads(_members(body)["audit/events.json"])["events"][-1]["seq"] == event.seq


def test_a_read_token_downloads_it_and_the_bundle_verifies(api, users, carded_version, tmp_path):
    with audit_context(source="cli", actor=users.viewer):
        _, secret = accounts.token_create(actor=users.viewer, name="auditor-export", scopes=["read"])
    response = api.with_token(secret).get(f"/api/v1/versions/{carded_version.pk}/bundle/")
    assert response.status_code == 200, response.content[:300]
    path = tmp_path / "bundle.zip"
    path.write_bytes(b"".join(response.streaming_content))
    script = tmp_path / "verify.py"
    script.write_bytes(_members(path.read_bytes())["verify.py"])
    done = _verify(script, path)
    assert done.returncode == 0, done.stdout
    assert "key id" in done.stdout and "--key-id" in done.stdout  # unpinned: it says what to compare


def test_the_version_page_offers_the_bundle_and_the_button_downloads_it(login, users, carded_version):
    client = login(users.viewer)
    page = client.get(reverse("version-detail", args=[carded_version.pk])).content.decode()
    url = reverse("version-bundle", args=[carded_version.pk])
    assert f'href="{url}"' in page and "Evidence bundle" in page
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert "model_card/model_card.pdf" in _members(b"".join(response.streaming_content))
    event = AuditEvent.objects.get(action="version.bundle")
    assert event.source == "ui" and event.actor == users.viewer
    assert login(users.outsider).get(url).status_code == 404


def test_the_schema_documents_the_bundle_as_a_zip_and_its_refusals():
    from django.core.management import call_command

    out = io.StringIO()
    call_command("spectacular", "--validate", stdout=out)
    operation = yaml.safe_load(out.getvalue())["paths"]["/api/v1/versions/{id}/bundle/"]["get"]
    assert operation["responses"]["200"]["content"] == {
        "application/zip": {"schema": {"type": "string", "format": "binary"}}
    }
    assert {"401", "403", "404", "429"} <= set(operation["responses"])


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_in_chromium_the_version_pages_button_downloads_a_bundle_that_verifies(live_server, users, carded_version,
                                                                               tmp_path):  # fmt: skip
    from playwright.sync_api import sync_playwright

    from tests.test_approvals_browser import _sign_in
    from tests.test_run_command import CHROMIUM, CHROMIUM_FLAGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = _sign_in(browser, live_server.url, "viewer")
        page.goto(f"{live_server.url}{reverse('version-detail', args=[carded_version.pk])}")
        button = page.get_by_role("link", name="Evidence bundle")
        assert button.is_visible()
        with page.expect_download() as info:
            button.click()
        download = info.value
        assert download.suggested_filename == f"credit-scoring-v{carded_version.number}-evidence.zip"
        path = tmp_path / download.suggested_filename
        download.save_as(path)
        browser.close()
    members = _members(path.read_bytes())
    assert {"manifest.json", "model_card/model_card.pdf", "audit/events.json", "verify.py"} <= set(members)
    script = tmp_path / "verify.py"
    script.write_bytes(members["verify.py"])
    done = _verify(script, path)
    assert done.returncode == 0 and "VERIFIED" in done.stdout, done.stdout
    event = AuditEvent.objects.get(action="version.bundle")
    assert (event.actor, event.source) == (users.viewer, "ui")


def test_every_figure_builder_of_the_engines_draws_offline():
    """The traces of workers/engines/figures.py, each kind and option, become PNG images."""
    import numpy as np

    from governance.registry.bundle_charts import render_png
    from workers.engines import figures

    rng = np.random.default_rng(0)
    specs = [
        figures.bar(["a", "b", "c"], [0.2, 0.5, None], title="bars", ci=[(0.1, 0.3), (0.4, 0.6), (None, None)],
                    reference=(0.4, "limit")),
        figures.bar(["x", "y"], [1.0, 2.0], title="horizontal", horizontal=True, reference=(1.5, "limit")),
        figures.grouped_bars(["f", "m"], {"tpr": [0.8, 0.9], "fpr": [0.1, 0.2]}, title="grouped",
                             ci={"tpr": [(0.7, 0.9), (0.8, 1.0)]}),
        figures.heatmap([[5, 1], [2, 7]], x=["0", "1"], y=["0", "1"], title="confusion", text=[["5", "1"], ["2", "7"]]),
        figures.lines([{"name": "roc", "x": [0, 0.5, 1], "y": [0, 0.8, 1]}], title="roc", diagonal=True, square=True),
        figures.beeswarm(["a", "b"], rng.normal(size=(50, 2)), rng.uniform(size=(50, 2)), title="bees",
                         value_title="SHAP"),
        figures.dependence(rng.normal(size=40), rng.normal(size=40), feature="a", value_title="SHAP",
                           colour=rng.uniform(size=40), colour_feature="b"),
        {"data": [{"type": "box", "orientation": "h", "y": ["a", "b"], "lowerfence": [-2, -1], "q1": [-1, -0.5],
                   "median": [0, 0], "q3": [1, 0.5], "upperfence": [2, 1]}],
         "layout": {"yaxis": {"autorange": "reversed", "type": "category"}}},
    ]  # fmt: skip
    for spec in specs:
        png = render_png(spec)
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000, spec["layout"].get("title")


def test_verify_py_refuses_what_is_not_a_bundle(verifier, tmp_path):
    text = tmp_path / "notes.zip"
    text.write_text("not a zip")
    done = _verify(verifier, text)
    assert done.returncode == 1 and "cannot be read as a zip" in done.stdout
    empty = tmp_path / "empty.zip"
    empty.write_bytes(_zip({}))
    done = _verify(verifier, empty)
    assert done.returncode == 1 and "FAIL  manifest.json: missing" in done.stdout
    assert _verify(verifier, tmp_path / "absent.zip").returncode == 2  # a wrong command line
