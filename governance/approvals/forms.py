"""Browser forms of the approvals app. They check shapes only; the services decide everything else."""

from __future__ import annotations

import json

from django import forms

from governance.approvals.models import DecisionKind
from governance.core import jsoninput
from governance.core.errors import DomainError, ValidationFailed
from governance.registry.models import RiskTier

QUEUE_TABS = [("awaiting", "Awaiting my review"), ("open", "All open"), ("closed", "Closed")]
AGE_CHOICES = [("", "Any age"), ("1", "Older than 1 day"), ("3", "Older than 3 days"), ("7", "Older than 7 days"),
               ("14", "Older than 14 days"), ("30", "Older than 30 days")]  # fmt: skip


class QueueFilterForm(forms.Form):
    tab = forms.ChoiceField(choices=QUEUE_TABS, required=False)
    team = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    risk_tier = forms.ChoiceField(choices=[("", "Any tier"), *RiskTier.choices], required=False)
    older_than = forms.TypedChoiceField(choices=AGE_CHOICES, coerce=int, required=False, empty_value=None)

    def __init__(self, *args, teams=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].choices = [("", "All teams"), *((t.pk, t.name) for t in teams)]


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=DecisionKind.choices, widget=forms.RadioSelect)
    # Required for a rejection or a request for changes: the service says so, and the page shows it here.
    comment = forms.CharField(
        max_length=4000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "Why? Required to reject or to request changes."}),
    )


class ProposalDecisionForm(forms.Form):
    comment = forms.CharField(max_length=300, required=False)


class WithdrawForm(forms.Form):
    reason = forms.CharField(max_length=1000, required=False)


class ReviewRequestForm(forms.Form):
    environments = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple, help_text="Only the environments the model's policy approves for."
    )
    comment = forms.CharField(
        max_length=4000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "What changed, what reviewers should look at."}),
    )

    def __init__(self, *args, environments=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["environments"].choices = list(environments)
        if len(environments) == 1:
            self.fields["environments"].initial = [environments[0][0]]


class ChecklistTickForm(forms.Form):
    item = forms.SlugField(max_length=64)
    ticked = forms.TypedChoiceField(
        choices=[("1", "tick"), ("0", "untick")], coerce=lambda v: v == "1", required=False, empty_value=True
    )
    note = forms.CharField(max_length=500, required=False)
    next = forms.CharField(max_length=500, required=False)


RULES_EXAMPLE = """{
  "environments": {
    "staging": {"min_approvals": 1, "roles": [{"role": "approver"}], "expiry_days": 90},
    "production": {"min_approvals": 2, "roles": [{"role": "approver"}, {"role": "reviewer"}], "expiry_days": 90}
  },
  "gates": [
    {"kind": "card_completeness", "min": 80},
    {"kind": "metric", "metric": "accuracy", "min": 0.85},
    {"kind": "checklist", "item": "rollback-plan", "text": "Error handling and rollback are in place."}
  ]
}"""


class PolicyForm(forms.Form):
    team = forms.ModelChoiceField(
        queryset=None,
        required=False,
        label="Scope",
        help_text="A team policy is assigned to that team's models; a site-wide one can be a risk tier's default.",
    )
    risk_tier = forms.ChoiceField(
        choices=[("", "None (assigned to models one by one)"), *RiskTier.choices],
        required=False,
        label="Default for risk tier",
        help_text="Site-wide policies only.",
    )
    name = forms.CharField(max_length=120)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    rules = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 18, "class": "mono", "spellcheck": "false", "placeholder": RULES_EXAMPLE}),
        help_text="JSON: the quorum per environment and the gates. Checked in full when you save.",
    )
    comment = forms.CharField(
        max_length=300, required=False, help_text="Why the rules change (kept with the revision and in the audit log)."
    )

    def __init__(self, *args, teams=None, site_wide: bool = False, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if editing:
            del self.fields["team"]
            del self.fields["risk_tier"]
            return
        self.fields["team"].queryset = teams
        self.fields["team"].required = not site_wide
        self.fields["team"].empty_label = "Site-wide (every team)" if site_wide else None
        if not site_wide:
            del self.fields["risk_tier"]

    def clean_rules(self):
        raw = self.cleaned_data["rules"].strip()
        try:
            value = jsoninput.loads(raw)
        except jsoninput.UnusableJSON as exc:
            raise forms.ValidationError(f"The rules: {exc.problem.message}", code=exc.problem.code) from None
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"The rules must be valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})."
            ) from None
        if not isinstance(value, dict):
            raise forms.ValidationError('The rules must be a JSON object: {"environments": …, "gates": […]}.')
        return value


def rules_error_on_field(exc: DomainError) -> DomainError:
    """The rules parser names each bad field (``rules.gates.0.min``); list them all under the textarea."""
    if not exc.fields:
        return exc
    rules = [f"{path}: {msg}" for path, msg in exc.fields.items() if path == "rules" or path.startswith("rules.")]
    if not rules:
        return exc
    others = {path: msg for path, msg in exc.fields.items() if not (path == "rules" or path.startswith("rules."))}
    return ValidationFailed(exc.detail, code=exc.code, fields={**others, "rules": rules})
