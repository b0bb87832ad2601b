"""Browser forms for accounts."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model

from governance.accounts.models import Role, Scope
from governance.accounts.services import MAX_TOKEN_DAYS

User = get_user_model()


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses it, e.g. “GitHub Actions: credit-scoring”.")
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[Scope.READ],
        help_text="Give a CI token only what the pipeline needs.",
    )
    team = forms.ModelChoiceField(
        queryset=None,
        required=False,
        empty_label="All my teams",
        help_text="Restrict the token to one team's models.",
    )
    expires_in_days = forms.IntegerField(min_value=1, max_value=MAX_TOKEN_DAYS, initial=90, label="Expires in (days)")

    def __init__(self, *args, teams=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = teams


class MembershipAddForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices)

    def clean_username(self):
        username = self.cleaned_data["username"].strip()
        user = User.objects.filter(username=username, is_active=True).first()
        if user is None:
            raise forms.ValidationError(f"No active user named “{username}”.")
        self.user = user
        return username
