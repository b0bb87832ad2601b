"""Browser forms for the registry. They only parse input; the services decide and validate the rest."""

from __future__ import annotations

import json

from django import forms
from django.contrib.auth import get_user_model

from governance.registry import validation
from governance.registry.models import CARD_SECTIONS, ArtifactFormat, Framework, RiskTier, Stage

User = get_user_model()


def _json_field_value(raw: str, *, what: str, example: str):
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise forms.ValidationError(
            f"{what} must be valid JSON, e.g. {example} ({exc.msg}, line {exc.lineno})."
        ) from None


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


class VersionUploadForm(forms.Form):
    artifact = forms.FileField(help_text="The serialised model. It is stored by its sha256 and never changed.")
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
