"""The host list's filters, shared by the API (``?status=stale&label=gpu=h100``) and the hosts page."""

from __future__ import annotations

import django_filters
from django import forms
from drf_spectacular.utils import extend_schema_field

from governance.core import filters as core_filters
from governance.hosts import selectors
from governance.hosts.models import Host, HostStatus
from governance.hosts.services import LABEL_KEY_RE, LABEL_VALUE_RE

LABEL_HELP = "key=value, several separated by commas (every one must match), e.g. gpu=h100,env=prod."


_PAIR = f"{LABEL_KEY_RE.pattern[1:-1]}={LABEL_VALUE_RE.pattern[1:-1]}"
SELECTOR_PATTERN = f"^{_PAIR}(,{_PAIR})*$"


class LabelSelectorField(forms.CharField):
    """``gpu=h100,env=prod`` as ``[("gpu", "h100"), ("env", "prod")]``: every pair must match."""

    def to_python(self, value):
        text = super().to_python(value)
        if not text:
            return None
        pairs = []
        for pair in text.split(","):
            key, sep, label = pair.partition("=")
            if not sep or not LABEL_KEY_RE.match(key) or not LABEL_VALUE_RE.match(label):
                raise forms.ValidationError(f"Not a label selector: {pair[:80]!r}. Use {LABEL_HELP}", code="invalid")
            pairs.append((key, label))
        return pairs


@extend_schema_field({"type": "string", "maxLength": 2000, "pattern": SELECTOR_PATTERN, "example": "gpu=h100"})
class LabelFilter(django_filters.Filter):
    field_class = LabelSelectorField

    def filter(self, qs, value):
        return selectors.with_labels(qs, value) if value else qs


class HostFilter(core_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=HostStatus.choices, help_text="online, stale or offline, as of now.")
    label = LabelFilter(help_text=LABEL_HELP, max_length=2000)

    class Meta:
        model = Host
        fields = ["status", "label"]
