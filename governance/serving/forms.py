from __future__ import annotations

from django import forms

from governance.core.filters import as_utc, instant_problem
from governance.core.jsoninput import FormJSONField


class InstantField(forms.DateTimeField):
    """A browser's ``datetime-local`` value (read in UTC, Charter's time zone) or an ISO 8601 instant
    with an offset; an offset or a date PostgreSQL cannot store is the field's error, never a 500."""

    input_formats = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]

    def to_python(self, value):
        if isinstance(value, str) and ("\x00" in value or len(value) > 64):
            raise forms.ValidationError("Enter a date and time, e.g. 2026-03-01T09:30.", code="invalid")
        try:
            value = super().to_python(value)
        except OverflowError:
            raise forms.ValidationError("The date is out of range.", code="out_of_range") from None
        if value is None:
            return None
        if problem := instant_problem(value):
            raise forms.ValidationError(problem, code="out_of_range")
        return as_utc(value)


class TimelineForm(forms.Form):
    at = InstantField(
        required=False,
        label="Live at",
        help_text="A date and time in UTC; empty means now.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}, format="%Y-%m-%dT%H:%M:%S"),
    )


class ActionConfirmForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        required=False,
        label="Reason",
        help_text="Kept with the action and in the audit log.",
        widget=forms.Textarea(attrs={"rows": 3, "maxlength": 500}),
    )


class ProbeForm(forms.Form):
    payload = FormJSONField(
        label="Probe request",
        help_text='An Open Inference Protocol v2 request body: {"inputs": [{"name", "shape", "datatype", "data"}]}. '
        "Each deployment of this version answers it before it counts as healthy.",
        widget=forms.Textarea(attrs={"rows": 6, "class": "mono", "spellcheck": "false"}),
    )
