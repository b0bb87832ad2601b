from django import forms

from governance.core.jsoninput import FormJSONField
from governance.evaluations.models import EvaluationKind


class RunRequestForm(forms.Form):
    kind = forms.ChoiceField(choices=EvaluationKind.choices)
    data = forms.FileField(help_text="CSV or Parquet: the model's feature columns, the target, the sensitive columns.")
    target_column = forms.CharField(max_length=128, required=False)
    sensitive_features = forms.CharField(
        max_length=300, required=False, help_text="One to three column names, comma-separated (fairness)."
    )
    parameters = FormJSONField(required=False, initial=dict, help_text='Optional JSON, e.g. {"bootstrap": 200}.')
    retain_data = forms.BooleanField(required=False, help_text="Keep the data file after the run (deleted by default).")

    def clean_sensitive_features(self) -> list[str]:
        return [c.strip() for c in self.cleaned_data["sensitive_features"].split(",") if c.strip()]
