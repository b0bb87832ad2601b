from django.apps import AppConfig


class EvaluationsConfig(AppConfig):
    name = "governance.evaluations"
    label = "evaluations"
