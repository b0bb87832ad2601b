"""Browser forms for webhooks. They only parse input; the services validate the rest."""

from __future__ import annotations

from django import forms

from governance.notifications.models import EventKind


class WebhookForm(forms.Form):
    url = forms.CharField(
        max_length=500,
        label="Endpoint URL",
        widget=forms.TextInput(attrs={"placeholder": "https://hooks.example.com/charter", "autocomplete": "off"}),
        help_text="Charter POSTs signed JSON here (http:// or https://).",
    )
    events = forms.MultipleChoiceField(
        choices=EventKind.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=EventKind.values,
        help_text="“Send test” pings it whatever you choose here.",
    )
    secret = forms.CharField(
        required=False,
        strip=False,
        max_length=200,
        label="Signing secret",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
        help_text="Leave blank to generate one. It is shown once, after creation.",
    )
