"""The evidence bundle of a version: one zip a regulator or an auditor keeps and checks without Charter.

What it holds (``CONTENTS`` says it in the bundle's own README.txt):

- ``manifest.json``: the sha256 and size of every other file, the version, its model and artifact digest,
  when and by whom the bundle was made, the charts that could not be drawn and why; ``manifest.sig``:
  Charter's Ed25519 signature over the manifest's sha256 (the audit checkpoint key, message
  ``charter-evidence-bundle:v1|<sha256>``), so that one signature vouches for every byte;
- the model card as Markdown with Hugging Face front matter (``model-index``), as Model Card Toolkit
  JSON (schema 0.0.2) and as a PDF (fpdf2), and every revision of it;
- the registered metadata, the training-data profile and the artifact's digest and inspection;
- every evaluation run's stored record (aggregates only) and its charts as PNG images;
- the review requests with the policy revision each was judged under, their frozen evidence, the
  decisions with their comments and what each was bound to, the checklist ticks, and the gate now;
- the deployment history: where and when the version was live, and every deployment action about it;
- the version's audit events in the canonical form their hashes are computed over, and the signed
  checkpoint of the chain head at the bundle's own audit event;
- ``verify.py`` (``bundle_verify.py``): a standard-library script that checks all of the above.

Reads go through the apps' selectors, scoped to the user. The one write is the bundle's own audit event
(``version.bundle``), with a checkpoint signed at it in the same transaction: the bundle's last event is
then exactly the chain head a signed, exported checkpoint pins.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import json
import logging
import re
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import transaction
from django.http import FileResponse
from django.utils.text import slugify

from governance.approvals import selectors as approvals
from governance.audit import chain, checkpoints, signing
from governance.audit import selectors as audit_selectors
from governance.audit import services as audit
from governance.audit.actions import AuditAction
from governance.audit.models import Checkpoint
from governance.core.retry import retry_once
from governance.evaluations import measures
from governance.evaluations import selectors as evaluations
from governance.evaluations.presenters import flatten_figures
from governance.registry import bundle_charts, bundle_verify, selectors
from governance.registry.models import CARD_SECTIONS, ModelCard, ModelVersion

FORMAT = bundle_verify.BUNDLE_FORMAT
MESSAGE_PREFIX = bundle_verify.BUNDLE_MESSAGE_PREFIX
VERIFY_SCRIPT = Path(bundle_verify.__file__)
# What the Hugging Face Hub calls the libraries Charter registers (``library_name``).
HF_LIBRARIES = {"sklearn": "sklearn", "xgboost": "xgboost", "lightgbm": "lightgbm", "onnx": "onnx",
                "pytorch": "pytorch", "tensorflow": "tensorflow"}  # fmt: skip
# The evaluations whose summary is a result of the model on a dataset (explainability and data quality
# describe the model and the data instead): the card's ``model-index``.
MODEL_INDEX_KINDS = ("performance", "fairness", "robustness")
HF_TASKS = {"classification": ("tabular-classification", "Tabular classification"),
            "regression": ("tabular-regression", "Tabular regression")}  # fmt: skip
SERVING_RECORDS = (
    "Every span of time this version was live (or a canary) in an environment, with its traffic share, the action "
    "that put it there and the one that ended it, and every deployment action about it (deploy, canary, promote, "
    "rollback, retire), with the gate verdict the worker saw when it acted, the sha256 of the bytes it handed to the "
    "backend, and its outcome. Each action's request and outcome are also serving.action* events, whose hashes the "
    "audit chain covers."
)
GATE_AT_DECISION = (
    "Each decision's gate_at_decision is the gate per requested environment as the person saw it when deciding "
    "(empty for decisions made before Charter kept it); it is also in the decision's review.decide audit event. "
    "Each decision is bound to the artifact sha256, "
    "the evidence digest and the freeze number of the request when it was made (bound_to); the gate counts a "
    "decision only while that binding equals the request's current one (bound_to_current_freeze) and it has not "
    "expired. A request is closed as approved only at a moment its quorum was reached and every gate passed for "
    "each requested environment: its review.approved event in audit/events.json records that moment. "
    "gate_now.json is the gate's verdict when this bundle was made."
)


@dataclass
class Built:
    """A bundle written to a temporary file, positioned at its start."""

    file: IO[bytes]
    filename: str
    manifest_sha256: str
    event_seq: int


@dataclass
class _Files:
    """The bundle's files, in the order they are written, and what the manifest says about them."""

    data: dict[str, bytes] = field(default_factory=dict)
    skipped_charts: list[dict[str, Any]] = field(default_factory=list)
    not_recomputable: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, content: bytes | str) -> None:
        self.data[name] = content.encode() if isinstance(content, str) else content

    def add_json(self, name: str, value: Any) -> None:
        self.add(name, json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


# --- the one write ------------------------------------------------------------------------------


@retry_once
@transaction.atomic
def bundle_record(*, actor, version: ModelVersion) -> tuple[audit.Appended, Checkpoint]:
    """Record the download and sign a checkpoint at it. The chain head stays locked from the record to
    commit, so the checkpoint pins exactly this event; it is exported like every other checkpoint."""
    appended = audit.record(
        action=AuditAction.VERSION_BUNDLE, obj=version, actor=actor,
        changes={"format": FORMAT, "artifact_sha256": version.artifact_sha256},
    )  # fmt: skip
    return appended, checkpoints.create()


# --- building -----------------------------------------------------------------------------------


def version_bundle(*, user, version: ModelVersion) -> Built:
    """The evidence bundle of ``version`` (which the caller looked up through a selector for ``user``)."""
    version = (
        selectors.version_list(user=user).select_related("model__team", "created_by").get(pk=version.pk)
    )  # every column: the API's row leaves the training profile out
    files = _Files()
    card = selectors.card_current(version=version)
    cards = list(selectors.card_list(user=user, version=version).order_by("revision"))
    runs = list(evaluations.run_list(user=user).filter(version=version).order_by("id"))
    requests = list(
        approvals.request_list(user=user)
        .filter(version=version)
        .select_related("policy_revision__created_by", "policy_revision__decided_by", "assignment__policy")
        .order_by("id")
    )
    decisions = {request.pk: approvals.decision_list(request=request) for request in requests}
    appended, checkpoint = bundle_record(actor=user, version=version)
    generated_at = chain.format_ts(appended.created_at)

    charts = _evaluations(files, runs)
    _card_files(files, version=version, card=card, cards=cards, runs=runs, generated_at=generated_at, charts=charts)
    _registered(files, version)
    _approvals(files, version=version, requests=requests, decisions=decisions)
    files.add_json("deployments.json", _deployments(version))
    events = _events(user=user, version=version, upto=appended.seq)
    files.add_json("audit/events.json", {
        "line": "prev_hash|seq|created_at|actor_id|actor_label|source|request_id|action|object_type|object_id|"
                "team_id|changes",
        "hash": "sha256 of the line (UTF-8), hex; an empty field for a null actor_id or team_id",
        "events": events,
    })  # fmt: skip
    key = signing.private_key()
    public_key = key.public_key()
    files.add_json("audit/checkpoint.json", checkpoints.document(checkpoint))
    files.add("public_key.pem", signing.public_pem(public_key))
    files.add("verify.py", VERIFY_SCRIPT.read_bytes())
    files.add("README.txt", _readme(version, generated_at))

    manifest = _manifest(files, version=version, user=user, generated_at=generated_at, events=events,
                         appended=appended, checkpoint=checkpoint)  # fmt: skip
    manifest_bytes = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()
    digest = hashlib.sha256(manifest_bytes).hexdigest()
    signature = signing.sign(key, f"{MESSAGE_PREFIX}|{digest}".encode())
    sig = {"algorithm": signing.ED25519, "key_id": signing.key_id(public_key), "manifest_sha256": digest,
           "message": f"{MESSAGE_PREFIX}|{digest}", "signature": signature}  # fmt: skip

    out = tempfile.TemporaryFile()
    stamp = appended.created_at.astimezone(dt.UTC).timetuple()[:6]
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        first = {bundle_verify.MANIFEST: manifest_bytes, bundle_verify.SIGNATURE: (json.dumps(sig, indent=2) + "\n").encode(),
                 "README.txt": files.data["README.txt"], "verify.py": files.data["verify.py"]}  # fmt: skip
        for name, content in [*first.items(), *sorted((n, c) for n, c in files.data.items() if n not in first)]:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_STORED if name.endswith((".png", ".pdf")) else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, content)
    out.seek(0)
    filename = f"{slugify(version.model.name) or 'model'}-v{version.number}-evidence.zip"
    return Built(file=out, filename=filename, manifest_sha256=digest, event_seq=appended.seq)


def response(built: Built) -> FileResponse:
    """The bundle as a download, for the API and the page alike."""
    answer = FileResponse(built.file, as_attachment=True, filename=built.filename, content_type="application/zip")
    answer["X-Bundle-Manifest-SHA256"] = built.manifest_sha256
    return answer


def _manifest(files: _Files, *, version, user, generated_at: str, events: list, appended, checkpoint) -> dict:
    model = version.model
    return {
        "format": FORMAT,
        "charter_version": charter_version(),
        "generated_at": generated_at,
        "generated_by": user.get_username(),
        "version": {"id": version.pk, "number": version.number, "stage": version.stage},
        "model": {
            "id": model.pk,
            "name": model.name,
            "team": model.team.name,
            "team_id": model.team_id,
            "risk_tier": model.risk_tier,
        },  # fmt: skip
        "artifact_sha256": version.artifact_sha256,
        "audit": {
            "events": len(events),
            "first_seq": events[0]["seq"] if events else None,
            "last_seq": events[-1]["seq"] if events else None,
            "bundle_event": {"seq": appended.seq, "hash": appended.hash},
            "checkpoint": {"seq": checkpoint.seq, "hash": checkpoint.hash, "key_id": checkpoint.key_id},
        },
        "charts": {"skipped": files.skipped_charts},
        # digests Charter could not reproduce from the stored JSON when it built the bundle (verify.py
        # does not hold these files to them); the reason is given for each
        "not_recomputable": files.not_recomputable,
        "files": {
            name: {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}
            for name, content in files.data.items()
        },
    }


@functools.cache
def charter_version() -> str:
    with open(Path(settings.BASE_DIR) / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _username(user) -> str | None:
    return user.get_username() if user is not None else None


# --- the registered facts -----------------------------------------------------------------------


def _registered(files: _Files, version: ModelVersion) -> None:
    model = version.model
    files.add_json("metadata.json", {
        "model": {
            "id": model.pk, "name": model.name, "team": model.team.name, "description": model.description,
            "use_case": model.use_case, "risk_tier": model.risk_tier, "business_kpis": model.business_kpis,
            "owners": sorted(model.owners.values_list("username", flat=True)),
        },
        "version": {
            "id": version.pk, "number": version.number, "stage": version.stage, "description": version.description,
            "framework": version.framework, "artifact_format": version.artifact_format,
            "training_data_ref": version.training_data_ref, "evaluation_data_ref": version.evaluation_data_ref,
            "preprocessing_ref": version.preprocessing_ref, "preprocessing_fingerprint": version.preprocessing_fingerprint,
            "hyperparameters": version.hyperparameters, "metrics": version.metrics, "tags": version.tags,
            "card_completeness": version.card_completeness, "created_by": _username(version.created_by),
            "created_at": _iso(version.created_at), "stage_changed_at": _iso(version.stage_changed_at),
        },
    })  # fmt: skip
    files.add_json("training_profile.json", {
        "training_data_ref": version.training_data_ref,
        "profile": version.training_profile or None,
        "note": "" if version.training_profile else "No training-data profile was registered with this version.",
    })  # fmt: skip
    files.add_json("artifact.json", {
        "sha256": version.artifact_sha256, "size": version.artifact_size, "name": version.artifact_name,
        "framework": version.framework, "declared_format": version.artifact_format,
        "inspection": version.artifact_metadata or {},
        "integrity": {"last_checked_at": _iso(version.integrity_checked_at), "ok": version.integrity_ok,
                      "problem": version.integrity_problem},
    })  # fmt: skip


# --- evaluations and their charts ---------------------------------------------------------------


def _run_folder(run) -> str:
    return f"evaluations/{run.pk}-{run.kind}"


def _evaluations(files: _Files, runs: list) -> list[dict[str, Any]]:
    """Each run's record and charts; returns the drawn charts (for the card's graphics)."""
    drawn = []
    for run in runs:
        folder = _run_folder(run)
        name = f"{folder}/evaluation.json"
        files.add_json(name, {
            "id": run.pk, "kind": run.kind, "status": run.status, "parameters": run.parameters,
            "parameters_digest": run.parameters_digest, "data": {
                "name": run.data_name, "format": run.data_format, "sha256": run.data_sha256, "rows": run.data_rows,
                "target_column": run.target_column, "sensitive_features": run.sensitive_features,
                "retained": run.retain_data, "deleted_at": _iso(run.data_deleted_at),
            },
            "requested_by": _username(run.requested_by), "requested_at": _iso(run.requested_at),
            "started_at": _iso(run.started_at), "finished_at": _iso(run.finished_at),
            "artifact_sha256": run.artifact_sha256, "environment": run.environment, "result": run.result,
            "figures": run.figures, "result_digest": run.result_digest, "error_code": run.error_code,
            "error_message": run.error_message,
        })  # fmt: skip
        if run.status == "succeeded":
            recomputed = hashlib.sha256(
                chain.canonical_json([run.kind, run.artifact_sha256, run.result, run.figures]).encode()
            ).hexdigest()
            if recomputed != run.result_digest:
                files.not_recomputable[name] = (
                    "the stored result does not reproduce its result_digest byte for byte (PostgreSQL's jsonb "
                    "re-renders some numbers, such as floats of 1e16 and more, as integers)"
                )
        for i, figure in enumerate(flatten_figures(run.figures)):
            chart = f"{folder}/charts/{i + 1:02d}-{slugify(figure['key'].replace('/', '-')) or 'figure'}.png"
            try:
                png = bundle_charts.render_png(figure["spec"])
            except bundle_charts.Unrenderable as exc:
                files.skipped_charts.append({"evaluation": run.pk, "figure": figure["key"], "name": figure["name"],
                                             "reason": str(exc)})  # fmt: skip
                continue
            files.add(chart, png)
            drawn.append({"run": run, "name": figure["name"], "path": chart, "png": png})
    return drawn


# --- the model card -----------------------------------------------------------------------------


def _sections(card: ModelCard | None) -> list[tuple[str, str, str]]:
    """(key, title, text) of every section, in the card's order; unwritten sections have no text."""
    return [(key, title, ((card.sections.get(key) or "") if card else "").strip()) for key, title, _ in CARD_SECTIONS]


def _numeric(summary: Any) -> dict[str, float]:
    if not isinstance(summary, dict):
        return {}
    return {k: v for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _task(runs: list) -> tuple[str, str]:
    for run in reversed(runs):
        task = ((run.environment or {}).get("model") or {}).get("task") if isinstance(run.environment, dict) else None
        if task in HF_TASKS:
            return HF_TASKS[task]
    return ("other", "Not recorded")


def _model_index(version: ModelVersion, runs: list) -> list[dict[str, Any]]:
    """Hugging Face ``model-index`` results: the registered metrics, then each successful run's summary."""
    task_type, task_name = _task(runs)
    results = []
    registered = _numeric(version.metrics)
    if registered:
        results.append({
            "task": {"type": task_type, "name": task_name},
            "dataset": {"type": "charter-registered-metrics",
                        "name": version.evaluation_data_ref or "Metrics registered with the version"},
            "metrics": [{"type": k, "value": v, "name": measures.label(k)} for k, v in sorted(registered.items())],
        })  # fmt: skip
    for run in runs:
        if run.status != "succeeded" or run.kind not in MODEL_INDEX_KINDS:
            continue
        summary = _numeric((run.result or {}).get("summary"))
        if summary:
            results.append({
                "task": {"type": task_type, "name": task_name},
                "dataset": {"type": f"charter-evaluation-{run.kind}", "name": run.data_name or f"evaluation {run.pk}",
                            "revision": run.data_sha256},
                "metrics": [{"type": k, "value": summary[k], "name": measures.label(k)} for k in measures.ordered(summary)],
                "source": {"name": f"Charter evaluation run {run.pk} ({run.kind}), evaluations/{run.pk}-{run.kind}/"},
            })  # fmt: skip
    return results


def _card_files(files: _Files, *, version, card, cards: list, runs: list, generated_at: str, charts: list) -> None:
    sections = _sections(card)
    files.add("model_card/model_card.md", _card_markdown(version, card, sections, runs, generated_at))
    files.add_json("model_card/model_card.mct.json", _card_mct(version, card, sections, runs, charts))
    files.add("model_card/model_card.pdf", _card_pdf(version, card, sections, generated_at))
    files.add_json("model_card/revisions.json", {"revisions": [
        {"revision": c.revision, "sections": c.sections, "completeness": c.completeness, "comment": c.comment,
         "created_by": _username(c.created_by), "created_at": _iso(c.created_at)}
        for c in cards
    ]})  # fmt: skip


def _card_facts(version, card) -> list[tuple[str, str]]:
    model = version.model
    return [
        ("Model", f"{model.name} (team {model.team.name}, risk tier {model.risk_tier})"),
        ("Version", f"v{version.number}, {version.get_stage_display().lower()}"),
        ("Artifact sha256", version.artifact_sha256),
        ("Framework", version.get_framework_display()),
        ("Card", f"revision {card.revision}, {card.completeness}% complete" if card else "not written"),
    ]


def _card_markdown(version, card, sections, runs, generated_at: str) -> str:
    model = version.model
    front: dict[str, Any] = {}
    if version.framework in HF_LIBRARIES:
        front["library_name"] = HF_LIBRARIES[version.framework]
    front["tags"] = ["charter", f"risk-tier-{model.risk_tier}", *[str(t) for t in version.tags]]
    results = _model_index(version, runs)
    if results:
        front["model-index"] = [{"name": model.name, "results": results}]
    front["charter"] = {
        "model_id": model.pk, "version_id": version.pk, "version": version.number, "stage": version.stage,
        "team": model.team.name, "artifact_sha256": version.artifact_sha256,
        "card_revision": card.revision if card else None, "generated_at": generated_at,
    }  # fmt: skip
    lines = ["---", *yaml_block(front), "---", "",
             f"# {model.name} v{version.number}", ""]  # fmt: skip
    if model.description or version.description:
        lines += [version.description or model.description, ""]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {_cell(v)} |" for k, v in _card_facts(version, card)] + [""]
    for _, title, text in sections:
        lines += [f"## {title}", "", text or "_Not written._", ""]
    if results:
        lines += ["## Results", ""]
        for result in results:
            lines += [f"**{result['dataset']['name']}**", "", "| Metric | Value |", "|---|---|"]
            lines += [f"| {_cell(m['name'])} | {m['value']:g} |" for m in result["metrics"]] + [""]
    return "\n".join(lines)


def yaml_block(value: dict | list, indent: int = 0) -> list[str]:
    """Block-style YAML lines of JSON-like data (the card's front matter). Strings are written as JSON
    strings, which YAML reads as double-quoted scalars: nothing a card says can change the structure."""
    pad = " " * indent
    lines = []
    items = value.items() if isinstance(value, dict) else ((None, item) for item in value)
    for key, item in items:
        head = f"{pad}{_yaml_key(key)}:" if key is not None else f"{pad}-"
        if isinstance(item, dict | list) and item:
            inner = yaml_block(item, indent + 2)
            if key is None:  # a list item: its first line goes after the dash
                lines += [f"{head} {inner[0].lstrip()}", *inner[1:]]
            else:
                lines += [head, *inner]
        else:
            lines.append(f"{head} {_yaml_scalar(item)}")
    return lines


_PLAIN_KEY = re.compile(r"^[a-z][a-z0-9_-]*$")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})  # YAML 1.1 reads these


def _yaml_key(key: Any) -> str:
    text = str(key)
    return text if _PLAIN_KEY.match(text) and text not in _YAML_WORDS else _yaml_scalar(text)


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)  # null, true, false and numbers are spelled alike in JSON and YAML
    return json.dumps(str(value), ensure_ascii=False)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _card_mct(version, card, sections, runs: list, charts: list) -> dict[str, Any]:
    """The card in the Model Card Toolkit's JSON schema (v0.0.2): its top-level keys and definitions."""
    text = {key: body for key, _, body in sections}
    model = version.model
    metrics = [{"type": k, "value": v} for k, v in sorted(_numeric(version.metrics).items())]
    for run in runs:
        if run.status == "succeeded":
            summary = _numeric((run.result or {}).get("summary"))
            metrics += [{"type": k, "value": summary[k], "slice": f"evaluation {run.pk} ({run.kind}, {run.data_name})"}
                        for k in measures.ordered(summary)]  # fmt: skip
    data = []
    if version.training_data_ref or text["training_data"]:
        data.append({"name": version.training_data_ref or "training data", "description": text["training_data"]})
    if version.evaluation_data_ref or text["evaluation_data"]:
        data.append({"name": version.evaluation_data_ref or "evaluation data", "description": text["evaluation_data"]})
    return {
        "schema_version": "0.0.2",
        "model_details": {
            "name": model.name,
            "overview": text["model_details"] or model.description,
            "documentation": "\n\n".join(f"{title}\n\n{body}" for _, title, body in sections if body),
            "owners": [{"name": name} for name in sorted(model.owners.values_list("username", flat=True))]
            or [{"name": model.team.name}],
            "version": {"name": f"v{version.number}", "date": version.created_at.date().isoformat()},
        },
        "model_parameters": {
            "model_architecture": f"{version.get_framework_display()} ({version.get_artifact_format_display()})",
            "data": data,
        },
        "quantitative_analysis": {
            "performance_metrics": metrics,
            "graphics": {
                "description": text["quantitative_analyses"] or text["metrics"],
                "collection": [{"name": c["name"], "image": base64.b64encode(c["png"]).decode()} for c in charts],
            },
        },
        "considerations": {
            "users": [],
            "use_cases": [{"description": text["intended_use"]}] if text["intended_use"] else [],
            "limitations": [
                {"description": body} for body in (text["caveats_and_recommendations"], text["factors"]) if body
            ],  # fmt: skip
            "tradeoffs": [],
            "ethical_considerations": [{"name": text["ethical_considerations"]}]
            if text["ethical_considerations"]
            else [],
        },
    }


def _card_pdf(version, card, sections, generated_at: str) -> bytes:
    from fpdf import FPDF
    from matplotlib import get_data_path

    logging.getLogger("fontTools").setLevel(logging.WARNING)  # fpdf2's font subsetting logs each table at INFO

    fonts = Path(get_data_path()) / "fonts" / "ttf"  # DejaVu, shipped with matplotlib: text beyond Latin-1
    pdf = FPDF(format="A4")
    pdf.set_creation_date(dt.datetime.strptime(generated_at, chain.TS_FORMAT).replace(tzinfo=dt.UTC))
    pdf.set_title(f"Model card: {version.model.name} v{version.number}")
    pdf.set_creator("Charter")
    pdf.add_font("DejaVu", "", str(fonts / "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", str(fonts / "DejaVuSans-Bold.ttf"))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    width = pdf.epw
    pdf.set_font("DejaVu", "B", 16)
    pdf.multi_cell(width, 8, f"Model card: {version.model.name} v{version.number}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 9)
    for label, value in _card_facts(version, card):
        pdf.multi_cell(width, 5, f"{label}: {value}", new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(width, 5, f"Generated by Charter at {generated_at}", new_x="LMARGIN", new_y="NEXT")
    for _, title, text in sections:
        pdf.ln(4)
        pdf.set_font("DejaVu", "B", 13)
        pdf.multi_cell(width, 7, title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("DejaVu", "", 10)
        pdf.multi_cell(width, 5, text or "Not written.", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


# --- reviews ------------------------------------------------------------------------------------


def _approvals(files: _Files, *, version, requests: list, decisions: dict[int, list]) -> None:
    documents = []
    for request in requests:
        revision = request.policy_revision
        policy = revision.policy
        evidence_digest = hashlib.sha256(chain.canonical_json(request.evidence).encode()).hexdigest()
        if evidence_digest != request.evidence_digest:
            files.not_recomputable[f"approvals/requests.json#{request.pk}"] = (
                "the stored evidence does not reproduce its evidence_digest byte for byte (PostgreSQL's jsonb "
                "re-renders some numbers, such as floats of 1e16 and more, as integers)"
            )
        assignment = request.assignment
        documents.append({
            "id": request.pk, "status": request.status, "environments": request.environments,
            "comment": request.comment, "requested_by": _username(request.requested_by),
            "requested_at": _iso(request.requested_at), "closed_at": _iso(request.closed_at),
            "approved_at": _iso(request.approved_at), "artifact_sha256": request.artifact_sha256,
            "evidence_digest": request.evidence_digest, "evidence": request.evidence, "freeze": request.freeze,
            "frozen_at": _iso(request.frozen_at), "stale_reason": request.stale_reason,
            "policy": {
                "id": policy.pk, "name": policy.name, "team_id": policy.team_id, "risk_tier": policy.risk_tier,
                "revision": {
                    "number": revision.number, "rules": revision.rules, "state": revision.state,
                    "comment": revision.comment, "loosens": revision.loosens, "based_on": revision.based_on,
                    "created_by": _username(revision.created_by), "created_at": _iso(revision.created_at),
                    "decided_by": _username(revision.decided_by), "decided_at": _iso(revision.decided_at),
                    "decision_comment": revision.decision_comment,
                },
            },
            "policy_assignment": None if assignment is None else {
                "id": assignment.pk, "policy": assignment.policy.name if assignment.policy_id else None,
                "state": assignment.state, "loosens": assignment.loosens,
            },
            "decisions": [
                {
                    "id": d.pk, "decision": d.decision, "comment": d.comment, "decided_by": _username(d.decided_by),
                    "decided_at": _iso(d.decided_at), "expires_at": _iso(d.expires_at),
                    "team_roles": d.team_roles, "other_team_roles": d.other_team_roles,
                    "gate_at_decision": d.gate,
                    "bound_to": {"artifact_sha256": d.artifact_sha256, "evidence_digest": d.evidence_digest,
                                 "freeze": d.freeze},
                    "bound_to_current_freeze": (d.artifact_sha256, d.evidence_digest, d.freeze)
                    == (request.artifact_sha256, request.evidence_digest, request.freeze),
                }
                for d in decisions[request.pk]
            ],
        })  # fmt: skip
    files.add_json("approvals/requests.json", {"gate_result_at_decision": GATE_AT_DECISION, "requests": documents})
    ticks = version.checklist_ticks.select_related("ticked_by").order_by("item")
    files.add_json("approvals/checklist.json", {"ticks": [
        {"item": t.item, "note": t.note, "ticked_by": _username(t.ticked_by), "ticked_at": _iso(t.ticked_at),
         "through_token": t.token_name or None}
        for t in ticks
    ], "note": "Current ticks; every tick and untick is an audit event (checklist.tick, checklist.untick)."})  # fmt: skip
    from governance.serving.selectors import environment_names

    verdicts = approvals.gate_checks(version=version, environments=environment_names())
    files.add_json("approvals/gate_now.json", {environment: v.as_dict() for environment, v in verdicts.items()})


# --- the audit trail ----------------------------------------------------------------------------

EVENT_FIELDS = (
    "seq", "prev_hash", "hash", "created_at", "actor_id", "actor_label", "source", "request_id", "action",
    "object_type", "object_id", "team_id", "changes",
)  # fmt: skip


def _events(*, user, version, upto: int) -> list[dict[str, Any]]:
    """The version's trail (``audit.selectors.version_trail``: its own events and those of its cards,
    review requests, decisions and evaluation runs) up to the bundle's own event, oldest first, each
    with exactly the fields its hash is computed over (``chain.canonical_line``)."""
    rows = audit_selectors.version_trail(user=user, version=version).filter(seq__lte=upto).order_by("seq")
    events = []
    for row in rows.values(*EVENT_FIELDS).iterator(chunk_size=2000):
        row["created_at"] = chain.format_ts(row["created_at"])
        events.append(row)
    return events


def _readme(version, generated_at: str) -> str:
    return f"""Charter evidence bundle: {version.model.name} v{version.number} (version id {version.pk})
Generated {generated_at} (UTC).

Check it without Charter (Python 3.7 or later, standard library only):

    python3 verify.py <this zip>            # or the folder it unzips to
    python3 verify.py <this zip> --key-id <the key id Charter publishes at /api/v1/audit/public-key/>

Contents
  manifest.json, manifest.sig   sha256 of every file; Charter's Ed25519 signature over the manifest
  public_key.pem                the key that signs the manifest and the audit checkpoint
  model_card/                   the model card: Markdown (Hugging Face front matter and model-index),
                                Model Card Toolkit JSON, PDF, and every revision
  metadata.json                 the registered model and version
  training_profile.json         the training-data profile registered with the version
  artifact.json                 the artifact's sha256, size, inspection and last integrity check
  evaluations/<id>-<kind>/      each evaluation run as stored (aggregates only) and its charts (PNG);
                                charts that could not be drawn are listed in manifest.json with the reason
  approvals/                    review requests with their policy revision, frozen evidence and decisions;
                                checklist ticks; the deployment gate when the bundle was made
  deployments.json              where and when the version was live, and every deployment action about it
  audit/events.json             the version's audit events in the canonical form their hashes cover
  audit/checkpoint.json         the signed checkpoint of the audit chain at this bundle's own event
  verify.py                     the checker
"""


def _deployments(version: ModelVersion) -> dict[str, Any]:
    from governance.serving.models import Deployment, DeploymentAction

    def iso(value):
        return value.isoformat() if value else None

    spans = Deployment.objects.filter(version=version).select_related("environment").order_by("since", "id")
    actions = DeploymentAction.objects.filter(version=version).select_related("environment", "requested_by")
    return {
        "version": version.pk, "stage": version.stage, "note": SERVING_RECORDS,
        "deployments": [
            {"id": d.pk, "environment": d.environment.name, "state": d.state, "traffic_percent": d.traffic_percent,
             "since": iso(d.since), "until": iso(d.until), "action": d.action_id, "ended_by_action": d.ended_by_action_id,
             "approval_request": d.approval_request_id, "policy_revision": d.policy_revision_id}
            for d in spans
        ],
        "actions": [
            {"id": a.pk, "kind": a.kind, "environment": a.environment.name, "status": a.status,
             "requested_by": a.requested_by.get_username() if a.requested_by else None,
             "requested_at": iso(a.requested_at), "finished_at": iso(a.finished_at), "reason": a.reason,
             "gate": a.gate, "artifact_sha256": a.artifact_sha256, "error_code": a.error_code,
             "error_message": a.error_message, "rolled_back_to": a.rolled_back_to_id, "steps": a.steps}
            for a in actions.order_by("requested_at", "id")
        ],
    }  # fmt: skip
