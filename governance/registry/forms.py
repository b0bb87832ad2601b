"""Browser forms for the registry. They only parse input; the services decide and validate the rest."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django import forms
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.files import File

from governance.core import jsoninput
from governance.registry import artifacts, validation
from governance.registry.models import CARD_SECTIONS, ArtifactFormat, Framework, RiskTier, Stage

User = get_user_model()


def _json_field_value(raw: str, *, what: str, example: str):
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        return jsoninput.loads(raw)
    except json.JSONDecodeError as exc:
        raise forms.ValidationError(
            f"{what} must be valid JSON, e.g. {example} ({exc.msg}, line {exc.lineno})."
        ) from None
    except jsoninput.UnusableJSON as exc:
        raise forms.ValidationError(f"{what}: {exc.problem.message}", code=exc.problem.code) from None


class ModelCreateForm(forms.Form):
    team = forms.ModelChoiceField(queryset=None, empty_label=None)
    name = forms.CharField(max_length=120, help_text="Unique within the team, e.g. “credit-scoring”.")
    use_case = forms.CharField(max_length=200, required=False, help_text="The decision or product it serves.")
    risk_tier = forms.ChoiceField(
        choices=RiskTier.choices,
        initial=RiskTier.LIMITED,
        help_text="As classified by your risk framework (EU AI Act tiers).",
    )
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    owners = forms.CharField(
        required=False,
        help_text="Usernames, separated by commas. Owners must be members of the team.",
    )
    business_kpis = forms.CharField(
        required=False,
        label="Business KPIs",
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Approval rate | ≥ 62 | %\nDefault rate | ≤ 3.5 | %"}),
        help_text="One per line: name | target | unit (target and unit optional).",
    )

    def __init__(self, *args, teams=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = teams

    def clean_owners(self):
        names = [n.strip() for n in self.cleaned_data["owners"].split(",") if n.strip()]
        found = list(User.objects.filter(username__in=names))
        missing = sorted(set(names) - {u.username for u in found})
        if missing:
            raise forms.ValidationError(f"Unknown user(s): {', '.join(missing)}.")
        return found

    def clean_business_kpis(self):
        kpis = []
        for number, line in enumerate(self.cleaned_data["business_kpis"].splitlines(), start=1):
            if not line.strip():
                continue
            parts = [p.strip() for p in line.split("|")]
            if not parts[0] or len(parts) > 3:
                raise forms.ValidationError(f"Line {number}: write “name | target | unit”.")
            if len(parts[0]) > 100:
                raise forms.ValidationError(f"Line {number}: the KPI name is longer than 100 characters.")
            kpi = {"name": parts[0]}
            if len(parts) > 1 and parts[1]:
                kpi["target"] = parts[1][:100]
            if len(parts) > 2 and parts[2]:
                kpi["unit"] = parts[2][:40]
            kpis.append(kpi)
        return kpis


# An upload kept across a form error: its bytes are already in the artifact store (by sha256), and
# the form carries a signed token naming them. The token is bound to the person and the model and
# expires, so it cannot register bytes someone else uploaded, even knowing their digest.
STAGED_SALT = "charter.registry.staged-artifact"
STAGED_MAX_AGE = 60 * 60  # seconds
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class StagedArtifact:
    sha256: str
    size: int
    name: str
    token: str


def staged_artifact_token(*, user, model, sha256: str, size: int, name: str) -> StagedArtifact:
    payload = {"u": user.pk, "m": model.pk, "s": sha256, "z": size, "n": name[-255:]}
    return StagedArtifact(sha256, size, name[-255:], signing.dumps(payload, salt=STAGED_SALT))


def staged_artifact_read(token: str, *, user, model) -> StagedArtifact:
    """The kept upload a token names, if it is this person's, for this model, fresh and still stored."""
    again = "choose the artifact file again."
    try:
        data = signing.loads(token, salt=STAGED_SALT, max_age=STAGED_MAX_AGE)
    except signing.SignatureExpired:
        raise forms.ValidationError(
            f"The file kept from your last try has expired (it is kept for an hour): {again}", code="staged_expired"
        ) from None
    except signing.BadSignature:
        data = None
    valid = (
        isinstance(data, dict)
        and user is not None
        and model is not None
        and data.get("u") == user.pk
        and data.get("m") == model.pk
        and isinstance(data.get("s"), str)
        and _SHA256.match(data["s"])
        and isinstance(data.get("z"), int)
        and isinstance(data.get("n"), str)
    )
    if not valid:
        raise forms.ValidationError(f"The kept file could not be used: {again}", code="staged_invalid")
    if not artifacts.storage().exists(artifacts.path_for(data["s"])):
        raise forms.ValidationError(f"The kept file is no longer stored: {again}", code="staged_missing")
    return StagedArtifact(data["s"], data["z"], data["n"], token)


class VersionUploadForm(forms.Form):
    artifact = forms.FileField(
        required=False,  # a kept upload (``staged_artifact``) stands in for it; ``clean`` asks for one of them
        help_text="The serialised model. It is stored by its sha256 and never changed.",
    )
    staged_artifact = forms.CharField(required=False, max_length=2000, widget=forms.HiddenInput)
    artifact_sha256 = forms.RegexField(
        regex=r"^[0-9a-fA-F]{64}$",
        required=False,
        label="Expected sha256",
        help_text="Optional: the upload is refused unless its digest matches.",
    )
    framework = forms.ChoiceField(choices=Framework.choices, initial=Framework.SKLEARN)
    artifact_format = forms.ChoiceField(
        choices=ArtifactFormat.choices, initial=ArtifactFormat.SKLEARN_JOBLIB, label="Format"
    )
    description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), required=False, help_text="What changed and why."
    )
    training_data_ref = forms.CharField(
        max_length=500,
        required=False,
        label="Training data",
        help_text="e.g. dvc://repo@rev#data/train.parquet or lakefs://repo/branch/path",
    )
    evaluation_data_ref = forms.CharField(max_length=500, required=False, label="Evaluation data")
    preprocessing_ref = forms.CharField(max_length=500, required=False, label="Preprocessing")
    preprocessing_fingerprint = forms.CharField(max_length=128, required=False)
    metrics = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "class": "mono", "placeholder": '{"accuracy": 0.91, "auc": 0.87}'}),
        help_text="A JSON object of metric names to numbers.",
    )
    hyperparameters = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "class": "mono", "placeholder": '{"C": 1.0, "max_iter": 300}'}),
        help_text="A JSON object.",
    )
    tags = forms.CharField(required=False, help_text="Separated by commas, e.g. baseline, quarterly-retrain.")

    def __init__(self, *args, user=None, model=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user, self.model = user, model
        self.staged: StagedArtifact | None = None  # the kept upload the form stands on, once cleaned or kept
        self.previous_file: tuple[str, int] | None = None  # the file chosen before an error, when not kept
        self.fields["artifact"].widget.attrs["required"] = not (self.data.get("staged_artifact") or "")

    def clean(self):
        cleaned = super().clean()
        self.staged = None
        token = cleaned.get("staged_artifact") or ""
        if cleaned.get("artifact"):
            return cleaned  # a newly chosen file replaces a kept one
        if not token:
            if not self.has_error("artifact"):
                self.add_error("artifact", forms.ValidationError("Choose the artifact file.", code="required"))
            return cleaned
        try:
            self.staged = staged_artifact_read(token, user=self.user, model=self.model)
        except forms.ValidationError as exc:
            self.add_error("artifact", exc)
            self.fields["artifact"].widget.attrs["required"] = True
            return cleaned
        declared = (cleaned.get("artifact_sha256") or "").lower()
        if declared and declared != self.staged.sha256:
            self.add_error(
                "artifact_sha256",
                f"The kept file's sha256 is {self.staged.sha256}, not the {declared} you declared.",
            )
        return cleaned

    @contextmanager
    def artifact_file(self) -> Iterator:
        """The file to register: the chosen upload, or the kept one opened from the artifact store."""
        upload = self.cleaned_data.get("artifact")
        if upload or self.staged is None:
            yield upload
            return
        with artifacts.storage().open(artifacts.path_for(self.staged.sha256), "rb") as fh:
            yield File(fh, name=self.staged.name)

    def clean_metrics(self):
        value = _json_field_value(self.cleaned_data["metrics"], what="Metrics", example='{"accuracy": 0.91}')
        if value is None:
            return {}
        if problem := validation.metrics_problem(value):
            raise forms.ValidationError(problem)
        return value

    def clean_hyperparameters(self):
        value = _json_field_value(self.cleaned_data["hyperparameters"], what="Hyperparameters", example='{"C": 1.0}')
        if value is None:
            return {}
        if problem := validation.hyperparameters_problem(value):
            raise forms.ValidationError(problem)
        return value

    def clean_tags(self):
        tags = list(dict.fromkeys(t.strip() for t in self.cleaned_data["tags"].split(",") if t.strip()))
        if problem := validation.tags_problem(tags):
            raise forms.ValidationError(problem)
        return tags


class TransitionForm(forms.Form):
    to = forms.ChoiceField(choices=Stage.choices, widget=forms.HiddenInput)
    reason = forms.CharField(
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "Reason (kept in the audit log)"}),
    )


class RetierForm(forms.Form):
    risk_tier = forms.ChoiceField(choices=RiskTier.choices, label="New risk tier")
    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "Why the tier changes (kept in the audit log)"}),
    )


def _normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").strip().split("\n"))


class CardForm(forms.Form):
    comment = forms.CharField(max_length=300, required=False, help_text="What this revision changes (optional).")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        fields = {}
        for key, title, help_text in CARD_SECTIONS:
            fields[key] = forms.CharField(
                label=title,
                help_text=help_text,
                required=False,
                max_length=20000,
                strip=False,
                widget=forms.Textarea(attrs={"rows": 5}),
            )
        fields["comment"] = self.fields["comment"]
        self.fields = fields

    def changed_sections(self, previous: dict | None) -> dict[str, str]:
        """The sections whose text differs from the current revision (browsers send CRLF line ends)."""
        out = {}
        for key, _, _ in CARD_SECTIONS:
            text = _normalise(self.cleaned_data.get(key, ""))
            if previous is None or text != _normalise(previous.get(key) or ""):
                out[key] = text
        return out

    def section_fields(self):
        return [self[key] for key, _, _ in CARD_SECTIONS]
