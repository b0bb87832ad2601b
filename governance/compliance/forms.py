"""Browser forms of the compliance app; the services check everything again."""

from __future__ import annotations

from django import forms

from governance.compliance import evidence, services

MAX_DAYS = 3660


class RecordForm(forms.Form):
    until = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The period's last day (UTC); the live versions are read at its end. Default: today.",
    )  # fmt: skip
    days = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_DAYS, initial=30,
        help_text="How many days the period covers, ending with that day (1 for a single date).",
    )  # fmt: skip


class _Content(forms.Form):
    title = forms.CharField(max_length=services.LIMITS["title"])
    summary = forms.CharField(
        max_length=services.LIMITS["summary"], widget=forms.Textarea(attrs={"rows": 3}),
        help_text="A short paraphrase in your own words: never copy the official text.",
    )  # fmt: skip
    evidence = forms.MultipleChoiceField(
        choices=evidence.choices(), widget=forms.CheckboxSelectMultiple,
        help_text="The item is covered for a version when every piece ticked here is.",
    )  # fmt: skip
    comment = forms.CharField(
        max_length=services.LIMITS["comment"], required=False, help_text="Why (kept with the revision)."
    )


class MappingItemForm(_Content):
    reference = forms.CharField(
        max_length=services.LIMITS["reference"], help_text='The official reference number, e.g. "Art. 10".'
    )
    field_order = ["reference", "title", "summary", "evidence", "comment"]


class MappingRevisionForm(_Content):
    active = forms.BooleanField(required=False, label="Listed in reports", help_text="Untick to withdraw the item.")
    based_on = forms.IntegerField(widget=forms.HiddenInput, min_value=1)
    field_order = ["title", "summary", "evidence", "active", "comment", "based_on"]
