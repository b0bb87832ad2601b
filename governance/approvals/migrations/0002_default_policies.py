"""One site-wide default policy per risk tier, so every model is governed from the start.

The rules are frozen here (not imported from ``rules.default_rules``) so that later edits of
the defaults in code never change what this migration created.
"""

from django.db import migrations

CHECKLIST = [
    ("accuracy-stability", "Accuracy and stability verified on data that resembles production."),
    ("infrastructure", "Infrastructure requirements (memory, GPU, latency, cost) assessed realistically."),
    ("preprocessing-consistency", "Preprocessing in serving is the same as in training."),
    ("rollback-plan", "Error handling and a rollback to a previous version are in place."),
    ("privacy-security", "Data security and privacy obligations are met."),
    ("monitoring-logging", "Performance monitoring and logging are set up."),
]


def _q(n, roles, days):
    return {"min_approvals": n, "roles": [{"role": r, "count": 1, "other_team": False} for r in roles],
            "expiry_days": days}  # fmt: skip


def _checklist():
    return [{"kind": "checklist", "item": k, "text": t, "environments": None} for k, t in CHECKLIST]


DEFAULTS = {
    "minimal": (
        "Minimal risk (default)",
        "One approver; the model card at least half complete.",
        {"environments": {"staging": _q(1, ["approver"], 365), "production": _q(1, ["approver"], 365)},
         "gates": [{"kind": "card_completeness", "min": 50, "environments": None}]},
    ),
    "limited": (
        "Limited risk (default)",
        "Production needs an approver and a reviewer; the card 70% complete; the six pre-deployment checks ticked.",
        {"environments": {"staging": _q(1, ["approver"], 180), "production": _q(2, ["approver", "reviewer"], 180)},
         "gates": [{"kind": "card_completeness", "min": 70, "environments": None}, *_checklist()]},
    ),
    "high": (
        "High risk (default)",
        "Production needs an approver and a reviewer, approvals expire after 90 days; the card 90% complete; "
        "the six pre-deployment checks ticked.",
        {"environments": {"staging": _q(1, ["approver"], 90), "production": _q(2, ["approver", "reviewer"], 90)},
         "gates": [{"kind": "card_completeness", "min": 90, "environments": None}, *_checklist()]},
    ),
    "unacceptable": (
        "Unacceptable risk (default)",
        "Prohibited uses: no version can be approved for any environment.",
        {"environments": {}, "gates": []},
    ),
}  # fmt: skip


def create(apps, schema_editor):
    Policy = apps.get_model("approvals", "Policy")
    PolicyRevision = apps.get_model("approvals", "PolicyRevision")
    for tier, (name, description, rules) in DEFAULTS.items():
        if Policy.objects.filter(team__isnull=True, risk_tier=tier).exists():
            continue
        policy = Policy.objects.create(name=name, description=description, risk_tier=tier, revision=1)
        PolicyRevision.objects.create(policy=policy, number=1, rules=rules, comment="Created with Charter's defaults.")


class Migration(migrations.Migration):
    dependencies = [("approvals", "0001_initial")]
    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
