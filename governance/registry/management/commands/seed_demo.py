"""Demo data: two teams, one user per role, three real scikit-learn models with history.

Everything goes through the same services the UI and API call, inside one ``cli`` audit
context, so the demo's audit trail is a real one. Models are trained here on generated data
or on datasets shipped with scikit-learn; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from dataclasses import dataclass, field

import joblib
import numpy as np
import pandas as pd
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.test.utils import override_settings
from sklearn.datasets import load_iris, make_classification
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from governance.accounts.models import Team
from governance.accounts.services import membership_add, team_create
from governance.approvals import services as approvals
from governance.approvals.rules import DEFAULT_CHECKLIST
from governance.core.context import audit_context
from governance.core.errors import DomainError
from governance.registry.services import card_save, model_create, version_create, version_transition
from governance.serving.services import probe_set
from workers.artifacts import inspect_artifact
from workers.deploy import run_action
from workers.evaluations import run_evaluation

User = get_user_model()

DEMO_PASSWORD_DEFAULT = "charter-demo"
SEED = 7
DEMO_REQUESTS = {"staging": 12, "production": 40}  # predictions sent to each live release after seeding

# username -> (role in every demo team, first name, last name, what they do)
DEMO_USERS: dict[str, tuple[str, str, str, str]] = {
    "admin": ("admin", "Alex", "Morgan", "site administrator"),
    "author": ("author", "Priya", "Natarajan", "data scientist"),
    "reviewer": ("reviewer", "Jonas", "Weber", "model risk reviewer"),
    "approver": ("approver", "Maria", "Santos", "head of model risk"),
    "operator": ("operator", "Kenji", "Tanaka", "ML platform engineer"),
    "auditor": ("auditor", "Fatima", "Haddad", "compliance officer"),
    "viewer": ("viewer", "Sam", "Lee", "product manager"),
}

CREDIT_FEATURES = ["income", "debt_ratio", "age", "months_employed", "late_payments", "credit_lines"]
# Fairness is evaluated and gated over sex; age is a model input and a legitimate risk factor under the
# credit policy, so results by age band are reported (performance sliced by age band), not gated.
CREDIT_SENSITIVE = ["sex"]
CREDIT_TARGET = "default"
CHURN_FEATURES = [
    "tenure_months", "monthly_spend", "support_tickets", "logins_last_30d", "plan_changes", "discount_share",
    "late_invoices", "seats", "feature_adoption", "nps_last", "days_since_login", "contract_months_left",
]  # fmt: skip


def credit_rules() -> dict:
    """The credit team's policy: the high-risk default with evidence gates over Charter's evaluations."""
    from governance.approvals.rules import default_rules

    rules = default_rules("high")
    rules["gates"] += [
        {"kind": "evaluation", "evaluation": "performance"},
        {"kind": "metric", "metric": "roc_auc", "min": 0.7},
        {"kind": "fairness", "features": CREDIT_SENSITIVE, "dp_ratio_min": 0.8, "eo_diff_max": 0.2},
    ]
    rules["auto_evaluations"] = ["fairness", "performance"]
    return rules


# --- data -----------------------------------------------------------------------------------


def credit_table(rows: int = 3000, seed: int = SEED) -> pd.DataFrame:
    """A synthetic consumer-credit table with a sensitive attribute and a built-in income gap.

    Income depends on ``sex`` (a historical pay gap) and default depends on income, so a model
    that never sees ``sex`` still treats the groups differently: what a fairness review is for.
    """
    rng = np.random.default_rng(seed)
    sex = rng.choice(["female", "male"], size=rows, p=[0.48, 0.52])
    age = np.clip(rng.normal(41, 12, rows), 18, 80).round().astype(int)
    income = rng.lognormal(np.log(42_000) + np.where(sex == "male", 0.15, 0.0) + 0.006 * (age - 40), 0.45).round(-2)
    months_employed = np.minimum(rng.gamma(2.0, 12 + (age - 18) * 1.2), (age - 16) * 12).round().astype(int)
    debt_ratio = rng.beta(2.2, 5.0, rows).round(3)
    late_payments = rng.poisson(0.3 + 1.5 * debt_ratio)
    credit_lines = 1 + rng.poisson(3.0, rows)
    logit = (
        -1.75
        - 1.3 * np.log(income / 42_000)
        + 2.0 * (debt_ratio - 0.3)
        + 1.6 * (debt_ratio > 0.45)  # affordability cliff: what a linear model cannot see
        + 0.4 * late_payments
        + 0.9 * ((late_payments >= 2) & (income < 38_000))
        - 0.006 * (months_employed - 78)
        - 0.015 * (age - 41)
        + 0.08 * (credit_lines - 4)
    )
    default = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    age_band = pd.cut(age, bins=[0, 25, 35, 50, 65, 200], labels=["18-25", "26-35", "36-50", "51-65", "66+"])
    return pd.DataFrame(
        {
            "income": income,
            "debt_ratio": debt_ratio,
            "age": age,
            "months_employed": months_employed,
            "late_payments": late_payments,
            "credit_lines": credit_lines,
            "sex": sex,
            "age_band": age_band.astype(str),
            CREDIT_TARGET: default,
        }
    )


def churn_table(rows: int = 2000, seed: int = 11) -> pd.DataFrame:
    X, y = make_classification(
        n_samples=rows, n_features=len(CHURN_FEATURES), n_informative=6, n_redundant=2, weights=[0.8],
        flip_y=0.03, random_state=seed,
    )  # fmt: skip
    frame = pd.DataFrame(X.round(4), columns=CHURN_FEATURES)
    frame["churned"] = y
    return frame


# --- training -------------------------------------------------------------------------------


@dataclass
class Trained:
    estimator: object
    features: list[str]
    metrics: dict[str, float]
    fingerprint: str
    hyperparameters: dict = field(default_factory=dict)
    probe_row: list[float] | None = None  # one hold-out row, for the probe request of its deployments

    def probe(self) -> dict:
        """An Open Inference Protocol request with that row (MLServer's scikit-learn runtime takes one tensor)."""
        row = self.probe_row or []
        return {"inputs": [{"name": "predict", "shape": [1, len(row)], "datatype": "FP64", "data": row}]}

    def artifact(self, name: str) -> SimpleUploadedFile:
        buffer = io.BytesIO()
        joblib.dump(self.estimator, buffer)
        return SimpleUploadedFile(name, buffer.getvalue(), content_type="application/octet-stream")


def json_safe_params(estimator) -> dict:
    """``get_params`` without nested estimators, callables or NaN: what JSON can hold faithfully."""
    params = {}
    for key, value in sorted(estimator.get_params(deep=True).items()):
        if value is None or isinstance(value, bool | int | str):
            params[key] = value
        elif isinstance(value, float) and math.isfinite(value):
            params[key] = float(value)
    return params


def preprocessing_fingerprint(features: list[str], estimator) -> str:
    """Digest of what the model expects as input: feature order and any fitted scaling."""
    spec: dict = {"features": features, "scaler": None}
    scaler = getattr(estimator, "named_steps", {}).get("scaler")
    if scaler is not None:
        spec["scaler"] = {
            "mean": [round(float(v), 10) for v in scaler.mean_],
            "scale": [round(float(v), 10) for v in scaler.scale_],
        }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def fit_and_score(estimator, X_train, X_test, y_train, y_test) -> Trained:
    estimator.fit(X_train, y_train)
    predicted = estimator.predict(X_test)
    proba = estimator.predict_proba(X_test)
    multiclass = proba.shape[1] > 2
    metrics = {
        "accuracy": accuracy_score(y_test, predicted),
        "f1": f1_score(y_test, predicted, average="macro" if multiclass else "binary"),
        "roc_auc": roc_auc_score(y_test, proba if multiclass else proba[:, 1], multi_class="ovr"),
    }
    features = list(X_train.columns)
    probe_row = [float(v) for v in X_test.iloc[0].tolist()]
    return Trained(
        estimator=estimator,
        features=features,
        metrics={k: round(float(v), 4) for k, v in metrics.items()},
        fingerprint=preprocessing_fingerprint(features, estimator),
        hyperparameters=json_safe_params(estimator),
        probe_row=probe_row,
    )


def train_all(var_dir) -> dict[str, list[Trained]]:
    credit = credit_table()
    train_idx, test_idx = train_test_split(
        credit.index, test_size=0.25, stratify=credit[CREDIT_TARGET], random_state=SEED
    )
    credit["split"] = "train"
    credit.loc[test_idx, "split"] = "test"
    demo_dir = var_dir / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    credit.to_csv(demo_dir / "credit.csv", index=False)

    Xc, yc = credit[CREDIT_FEATURES], credit[CREDIT_TARGET]
    credit_split = (Xc.loc[train_idx], Xc.loc[test_idx], yc.loc[train_idx], yc.loc[test_idx])
    credit_models = [
        Pipeline([("scaler", StandardScaler()), ("classifier", LogisticRegression(C=1.0, max_iter=1000))]),
        GradientBoostingClassifier(n_estimators=100, max_depth=3, learning_rate=0.05, subsample=0.8, random_state=SEED),
        GradientBoostingClassifier(n_estimators=300, max_depth=2, learning_rate=0.05, subsample=0.9, random_state=SEED),
    ]

    churn = churn_table()
    Xh, yh = churn[CHURN_FEATURES], churn["churned"]
    churn_split = train_test_split(Xh, yh, test_size=0.25, stratify=yh, random_state=SEED)
    churn_models = [
        RandomForestClassifier(n_estimators=100, max_depth=8, random_state=SEED, n_jobs=1),
        RandomForestClassifier(
            n_estimators=200, min_samples_leaf=3, class_weight="balanced", random_state=SEED, n_jobs=1
        ),
    ]

    iris = load_iris(as_frame=True)
    iris_split = train_test_split(iris.data, iris.target, test_size=0.3, stratify=iris.target, random_state=SEED)

    return {
        "credit-scoring": [fit_and_score(m, *credit_split) for m in credit_models],
        "churn-predictor": [fit_and_score(m, *churn_split) for m in churn_models],
        "iris-classifier": [fit_and_score(DecisionTreeClassifier(max_depth=3, random_state=SEED), *iris_split)],
    }


# --- model cards ----------------------------------------------------------------------------


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def credit_card(number: int, trained: Trained, kind: str) -> dict[str, str]:
    m = trained.metrics
    return {
        "model_details": (
            f"credit-scoring v{number}: {kind} trained by the Credit Risk data science team on the 2024 "
            "application book. Owner: Priya Natarajan. Questions: credit-risk-ds@acme.example."
        ),
        "intended_use": (
            "Estimates the probability that a consumer loan applicant defaults within 12 months, as one input "
            "to an underwriter's decision. Not for automated rejection, pricing, marketing or employment decisions."
        ),
        "factors": (
            "Performance is reported by sex and by age band (18-25, 26-35, 36-50, 51-65, 66+). Sex and age band "
            "are not model inputs; age is, because it is a legitimate risk factor under the credit policy."
        ),
        "metrics": (
            "ROC AUC for ranking quality, F1 and accuracy at a 0.5 threshold. The decision threshold used by "
            "underwriting is set separately and monitored monthly."
        ),
        "evaluation_data": (
            "A stratified 25% hold-out of the application table (750 applications), never seen in training; "
            "dvc://github.com/acme/credit-data@v1.2#data/holdout.csv."
        ),
        "training_data": (
            f"2,250 applications with {', '.join(CREDIT_FEATURES)}; target: default within 12 months. "
            "Personal identifiers are removed before the data reaches the training pipeline."
        ),
        "quantitative_analyses": (
            f"Hold-out: ROC AUC {m['roc_auc']:.3f}, F1 {m['f1']:.3f}, accuracy {_pct(m['accuracy'])}. "
            "Selection and error rates by sex are attached as fairness evidence; performance by age band as a "
            "sliced performance evaluation."
        ),
        "ethical_considerations": (
            "Income differs by sex in the training data, so scores can differ by sex even though sex is not an "
            "input. Demographic parity and equalised odds differences are reviewed before every release."
        ),
        "caveats_and_recommendations": (
            "Not validated for small-business lending or applicants with no credit history. Re-evaluate if the "
            "applicant mix drifts (PSI > 0.2 on income or debt ratio)."
        ),
    }


def churn_card(number: int, trained: Trained) -> dict[str, str]:
    m = trained.metrics
    return {
        "model_details": f"churn-predictor v{number}: random forest over 12 account-activity features, Customer Insights.",
        "intended_use": (
            "Ranks subscription accounts by their risk of cancelling in the next 90 days so that account managers "
            "can prioritise outreach. Not used to change prices or terms for individual customers."
        ),
        "factors": "Plan size (seats) and contract length; results are reported for small and large accounts separately.",
        "metrics": "ROC AUC and F1 on the churned class; precision at the top 10% of accounts for the outreach list.",
        "evaluation_data": "A stratified 25% hold-out of the Q4 account snapshot (500 accounts).",
        "training_data": "Account activity snapshot, lakefs://customer-insights/main/churn/2024-q4/train.parquet.",
        "quantitative_analyses": (
            f"Hold-out: ROC AUC {m['roc_auc']:.3f}, F1 {m['f1']:.3f}, accuracy {_pct(m['accuracy'])}."
        ),
        "ethical_considerations": "Uses no personal data beyond account activity; no protected attributes are available.",
        "caveats_and_recommendations": "Retrain each quarter; the churn base rate moves with pricing changes.",
    }


def iris_card(trained: Trained) -> dict[str, str]:
    m = trained.metrics
    return {
        "model_details": "iris-classifier v1: depth-3 decision tree on the four iris flower measurements.",
        "intended_use": "A teaching example for the platform's onboarding; classifies iris flowers into three species.",
        "metrics": "Accuracy and macro F1 over the three species; one-vs-rest ROC AUC.",
        "training_data": "Fisher's iris data as shipped with scikit-learn (150 flowers, 50 per species).",
        "quantitative_analyses": (
            f"30% hold-out: accuracy {_pct(m['accuracy'])}, macro F1 {m['f1']:.3f}, ROC AUC {m['roc_auc']:.3f}."
        ),
        # factors, evaluation data, ethics and caveats left empty: the card is visibly incomplete.
    }


# --- the command ----------------------------------------------------------------------------


def _as_worker(task, *args, actor):
    """Run a worker task's body here, now, under the audit context the worker would give it (source
    task, on behalf of ``actor``): the same code and the same trail as when the worker runs it."""
    with audit_context(source="task", actor=actor):
        return task.run(*args)


class Command(BaseCommand):
    help = "Load demo teams, users, models, versions, model cards and lifecycle history. Does nothing if present."

    def add_arguments(self, parser):
        parser.add_argument(
            "--without-serving", action="store_true",
            help="Do not deploy anything: the versions the demo would put live stay approved (for when the "
            "environments' MLServers are not running).",
        )  # fmt: skip

    def handle(self, *args, **options):
        self.serving = not options.get("without_serving")
        if Team.objects.filter(name="Credit Risk").exists():
            self.stdout.write("Demo data already present.")
            return
        password = os.environ.get("DEMO_PASSWORD", DEMO_PASSWORD_DEFAULT)
        var_dir = settings.VAR_DIR
        self.stdout.write("Training demo models (scikit-learn, generated and bundled data)...")
        trained = train_all(var_dir)
        try:
            # All or nothing: a half-seeded database would pass the "already present" check next time.
            # The demo's review notifications stay in the app: no mail goes to the demo users.
            with override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"), transaction.atomic():
                users = self._users(password)
                with audit_context(source="cli", actor=users["admin"]):
                    versions = self._seed(users, trained)
                self._demo_traffic()
        except DomainError as exc:
            raise CommandError(f"Seeding failed: {exc.detail}") from exc
        self._summary(versions, var_dir, password)

    def _users(self, password: str) -> dict:
        users = {}
        for username, (_role, first, last, _job) in DEMO_USERS.items():
            user, created = User.objects.get_or_create(
                username=username,
                defaults={"email": f"{username}@charter.example", "first_name": first, "last_name": last},
            )
            if created:
                user.set_password(password)
            if username == "admin":
                user.is_superuser = user.is_staff = True
            user.save()
            users[username] = user
        return users

    def _seed(self, users: dict, trained: dict[str, list[Trained]]) -> list:
        admin, author, reviewer, approver, operator = (
            users[n] for n in ("admin", "author", "reviewer", "approver", "operator")
        )
        credit_team = team_create(
            actor=admin,
            name="Credit Risk",
            description="Consumer lending risk models: scoring, limits and collections.",
        )
        insights_team = team_create(
            actor=admin, name="Customer Insights", description="Retention, segmentation and customer analytics models."
        )
        for team in (credit_team, insights_team):
            for username, (role, *_rest) in DEMO_USERS.items():
                membership_add(actor=admin, team=team, user=users[username], role=role)
        # Roles are cached on the user object; the seed's memberships must be visible to later checks.
        for user in users.values():
            user.__dict__.pop("_charter_roles", None)

        def walk(version, *steps):
            """Take each step the way people do: review steps through approval requests and decisions."""
            for actor, stage, reason in steps:
                if stage == "in_review":
                    approvals.request_review(
                        actor=actor, version=version, environments=["staging", "production"], comment=reason
                    )
                elif stage == "approved":
                    for key, _text in DEFAULT_CHECKLIST:
                        approvals.checklist_tick(
                            actor=reviewer, version=version, item=key, note="Checked for the demo."
                        )
                    open_request = version.approval_requests.get(status="open")
                    for person in (reviewer, approver):
                        approvals.request_decide(actor=person, request=open_request, decision="approve", comment=reason)
                elif stage in ("changes_requested", "rejected"):
                    decision = "request_changes" if stage == "changes_requested" else "reject"
                    open_request = version.approval_requests.get(status="open")
                    approvals.request_decide(actor=actor, request=open_request, decision=decision, comment=reason)
                elif stage.startswith("live in "):
                    self._deploy(actor, version, stage.removeprefix("live in "), reason)
                else:
                    version = version_transition(actor=actor, version=version, to=stage, reason=reason)
                version.refresh_from_db()
            return version

        def register(model, number, item: Trained, **fields):
            if model.name == "credit-scoring":
                fields.setdefault("training_profile", self._credit_profile())
            version = version_create(
                actor=author, model=model, artifact=item.artifact(f"{model.name}-v{number}.joblib"), framework="sklearn",
                artifact_format="sklearn-joblib", preprocessing_fingerprint=item.fingerprint,
                hyperparameters=item.hyperparameters, metrics=item.metrics, **fields,
            )  # fmt: skip
            # The inspection is evidence: done now, as the worker would do it, so that no review below is
            # frozen before it (the worker's own run of the queued task then finds it done and stops).
            _as_worker(inspect_artifact, version.pk, actor=author)
            version.refresh_from_db()
            if item.probe_row is not None:  # one real row: what each deployment is checked with
                probe_set(actor=author, version=version, payload=item.probe())
            return version

        versions = []

        # credit-scoring: a full history, one version in production, one awaiting review.
        credit = model_create(
            actor=author, team=credit_team, name="credit-scoring",
            description="Probability of default for consumer loan applications.",
            use_case="Underwriting support for consumer loans up to 25,000 EUR", risk_tier="high",
            business_kpis=[
                {"name": "Default rate of approved loans", "target": 4.0, "unit": "%"},
                {"name": "Approval rate", "target": 62.0, "unit": "%"},
                {"name": "Manual review share", "target": 15.0, "unit": "%"},
            ],
            owners=[author],
        )  # fmt: skip
        c1, c2, c3 = trained["credit-scoring"]
        data_v12 = "dvc://github.com/acme/credit-data@v1.2#data/train.csv"
        data_v13 = "dvc://github.com/acme/credit-data@v1.3#data/train.csv"
        v1 = register(
            credit, 1, c1, description="Baseline: standardised logistic regression.", training_data_ref=data_v12,
            evaluation_data_ref="dvc://github.com/acme/credit-data@v1.2#data/holdout.csv",
            preprocessing_ref="git://github.com/acme/credit-features@3f2c1a9#features/credit.py",
            tags=["baseline", "logistic-regression", "interpretable"],
        )  # fmt: skip
        card_save(actor=author, version=v1, sections=credit_card(1, c1, "logistic regression"), comment="First card.")
        v1 = walk(
            v1,
            (author, "in_review", "Baseline ready for model risk review."),
            (approver, "approved", "Card complete; AUC and group error rates within policy."),
            (operator, "live in production", "Initial production rollout."),
        )
        # After v1 the credit team adopted its own policy: the tier defaults plus evidence gates fed by
        # Charter's evaluations. v2 is the first version reviewed under it.
        credit_policy = approvals.policy_create(
            actor=admin, team=credit_team, name="Credit decisions",
            description="High-risk default plus fairness over sex and a measured ROC AUC.",
            rules=credit_rules(), comment="Fairness and performance evidence for underwriting models.",
        )  # fmt: skip
        approvals.policy_assign(actor=admin, policy=credit_policy, model=credit)
        holdout = self._credit_holdout()
        v2 = register(
            credit, 2, c2, description="Gradient boosting, 100 trees of depth 3.", training_data_ref=data_v13,
            evaluation_data_ref="dvc://github.com/acme/credit-data@v1.3#data/holdout.csv",
            preprocessing_ref="git://github.com/acme/credit-features@8d41e07#features/credit.py",
            tags=["gradient-boosting", "candidate"],
        )  # fmt: skip
        first_draft = credit_card(2, c2, "gradient boosting (100 trees, depth 3)")
        first_draft["quantitative_analyses"] = ""
        card_save(actor=author, version=v2, sections=first_draft, comment="Card for the boosting candidate.")
        # Its evidence is complete before anyone is asked to review it: the evaluations run here, now, with
        # the worker's code; an approval frozen before they finished would stop counting when they did.
        self._evaluate(author, v2, holdout, retain=True, now=True)
        v2 = walk(
            v2,
            (author, "in_review", "Boosting improves AUC over the baseline."),
            (reviewer, "changes_requested", "Quantitative analyses are empty: add results by sex and age band."),
        )
        card_save(
            actor=author, version=v2,
            sections={"quantitative_analyses": credit_card(2, c2, "")["quantitative_analyses"]},
            comment="Added hold-out results and per-group analyses as requested.",
        )  # fmt: skip
        v2 = walk(
            v2,
            (author, "in_review", "Per-group analyses added."),
            (approver, "approved", "Requested analyses present; improvement over v1 confirmed."),
            (operator, "live in staging", "Staging check before production."),
            (operator, "live in production", "Replaces v1 in production."),
        )
        v1 = walk(v1, (operator, "deprecated", "Superseded by v2 in production."))
        # v3's registration runs the policy's auto_evaluations (fairness and performance again, on the data
        # v2's runs retained); with what the author queues here, the demo's worker runs them after the review
        # was requested: results that arrive before anyone decided join the freeze without a stale notice.
        v3 = register(
            credit, 3, c3, description="Gradient boosting, 300 shallower trees with a lower learning rate.",
            training_data_ref=data_v13, evaluation_data_ref="dvc://github.com/acme/credit-data@v1.3#data/holdout.csv",
            preprocessing_ref="git://github.com/acme/credit-features@8d41e07#features/credit.py",
            tags=["gradient-boosting", "candidate"],
        )  # fmt: skip
        sections = credit_card(3, c3, "gradient boosting (300 trees, depth 2)")
        sections["ethical_considerations"] = ""
        card_save(actor=author, version=v3, sections=sections, comment="Card for the shallower boosting candidate.")
        self._evaluate(author, v3, holdout, retain=False, now=False)
        v3 = walk(v3, (author, "in_review", "Smoother score distribution; please review."))
        versions += [v1, v2, v3]

        # churn-predictor: one version live, the next still a draft.
        churn = model_create(
            actor=author, team=insights_team, name="churn-predictor",
            description="90-day cancellation risk for subscription accounts.",
            use_case="Prioritising account-manager outreach", risk_tier="limited",
            business_kpis=[
                {"name": "Retained revenue from outreach", "target": 250000, "unit": "EUR/quarter"},
                {"name": "Precision at top 10%", "target": 0.6, "unit": "ratio"},
            ],
            owners=[author],
        )  # fmt: skip
        h1, h2 = trained["churn-predictor"]
        churn_data = "lakefs://customer-insights/main/churn/2024-q4/train.parquet"
        w1 = register(
            churn, 1, h1, description="Random forest, 100 trees, depth 8.", training_data_ref=churn_data,
            tags=["random-forest"],
        )  # fmt: skip
        card_save(actor=author, version=w1, sections=churn_card(1, h1), comment="First card.")
        w1 = walk(
            w1,
            (author, "in_review", "Ready for review."),
            (approver, "approved", "Limited-risk use; card and metrics acceptable."),
            (operator, "live in production", "Production rollout."),
        )
        w2 = register(
            churn, 2, h2, description="Random forest, 200 trees, balanced class weights.",
            training_data_ref="lakefs://customer-insights/main/churn/2025-q1/train.parquet",
            tags=["random-forest", "class-weights"],
        )  # fmt: skip
        draft = churn_card(2, h2)
        card_save(
            actor=author, version=w2,
            sections={k: draft[k] for k in ("model_details", "intended_use", "training_data", "metrics")},
            comment="Work in progress.",
        )  # fmt: skip
        versions += [w1, w2]

        # iris-classifier: a teaching model that review turned down.
        iris = model_create(
            actor=author, team=insights_team, name="iris-classifier",
            description="Species of iris flowers from four measurements.",
            use_case="Platform onboarding example", risk_tier="minimal",
            business_kpis=[{"name": "Accuracy", "target": 95.0, "unit": "%"}], owners=[author],
        )  # fmt: skip
        (i1,) = trained["iris-classifier"]
        x1 = register(
            iris, 1, i1, description="Decision tree of depth 3.", training_data_ref="sklearn://datasets/load_iris",
            tags=["example", "decision-tree"],
        )  # fmt: skip
        card_save(actor=author, version=x1, sections=iris_card(i1), comment="Card for the onboarding example.")
        x1 = walk(
            x1,
            (author, "in_review", "Onboarding example."),
            (reviewer, "rejected", "Toy data that does not represent any production traffic; keep it out of serving."),
        )
        versions.append(x1)
        self._read_closed_news()
        return versions

    def _deploy(self, operator, version, environment: str, reason: str) -> None:
        """Put the version live the way an operator does: a deployment action, executed now by the
        worker's own task code against the environment's real MLServer (the run command started it)."""
        from governance.serving.models import ActionStatus, Environment
        from governance.serving.services import action_request

        if not self.serving:
            return
        requested = action_request(
            actor=operator, environment=Environment.objects.get(name=environment), version=version, kind="deploy",
            reason=reason,
        )  # fmt: skip
        _as_worker(run_action, requested.action.pk, actor=operator)
        action = requested.action
        action.refresh_from_db()
        if action.status != ActionStatus.SUCCEEDED:
            raise CommandError(
                f"Deploying {version} to {environment} {action.status}: {action.error_message} "
                "(is the environment's MLServer running? scripts/run.sh starts them; or seed with --without-serving)"
            )

    def _demo_traffic(self) -> None:
        """A little traffic to what went live, counted by the serving watch as in production (its first
        reading is the baseline), so the serving pages show each release's request figures at once."""
        from governance.serving import selectors
        from governance.serving.models import Deployment
        from governance.serving.services import release_of
        from workers.deploy import driver, watch_live

        if not self.serving:
            return
        _as_worker(watch_live, actor=None)
        for deployment in Deployment.objects.filter(until__isnull=True).select_related(
            "environment__backend", "version__model__team"
        ):
            payload = selectors.probe_payload(version=deployment.version, environment=deployment.environment)
            backend, name = driver(deployment.environment.backend), release_of(deployment.version).name
            for _ in range(DEMO_REQUESTS.get(deployment.environment.name, 10)):
                backend.predict(name, payload)
        _as_worker(watch_live, actor=None)

    def _read_closed_news(self) -> None:
        """The demo's history happened: its people have read the news of the reviews that are over. What
        still asks someone to act (the review in progress) stays unread."""
        from governance.approvals.models import ApprovalRequest, RequestStatus
        from governance.notifications.models import Notification
        from governance.notifications.services import notification_mark_read

        still_open = [r.get_absolute_url() for r in ApprovalRequest.objects.filter(status=RequestStatus.OPEN)]
        unread = Notification.objects.filter(read_at__isnull=True).exclude(url__in=still_open)
        for notification in unread.select_related("recipient"):
            notification_mark_read(user=notification.recipient, notification=notification)

    def _credit_frame(self):
        return pd.read_csv(settings.VAR_DIR / "demo" / "credit.csv")

    def _credit_profile(self) -> dict:
        from workers.engines.data_quality import profile

        frame = self._credit_frame()
        return profile(frame[frame["split"] == "train"].drop(columns=["split"]))

    def _credit_holdout(self) -> bytes:
        frame = self._credit_frame()
        return frame[frame["split"] == "test"].drop(columns=["split"]).to_csv(index=False).encode()

    def _evaluate(self, actor, version, holdout: bytes, *, retain: bool, now: bool) -> None:
        """Real evaluations of the version on the hold-out split: queued for the demo's worker, and with
        ``now`` also run here at once by the worker's task code (the worker then skips them as done)."""
        from governance.evaluations.services import run_request

        plans = [
            ("fairness", CREDIT_SENSITIVE, {"bootstrap": 200}),
            ("performance", [], {"slice_column": "age_band"}),
            ("explainability", [], {"lime_rows": 3}),
            ("data_quality", [], {}),
        ]
        for kind, sensitive, parameters in plans:
            requested = run_request(
                actor=actor, version=version, kind=kind, data=SimpleUploadedFile("credit-holdout.csv", holdout),
                target_column=CREDIT_TARGET if kind != "data_quality" else "", sensitive_features=sensitive,
                parameters=parameters, retain_data=retain,
            )  # fmt: skip
            if now:
                outcome = _as_worker(run_evaluation, requested.run.pk, actor=actor)
                if outcome != "succeeded":
                    requested.run.refresh_from_db()
                    raise CommandError(
                        f"The demo's {kind} evaluation of {version} {outcome}: {requested.run.error_message}"
                    )

    def _summary(self, versions, var_dir, password: str) -> None:
        self.stdout.write(self.style.SUCCESS("Demo data loaded."))
        self.stdout.write(f"  {'model':<18} {'ver':>3}  {'stage':<18} {'card':>5}  {'auc':>6}  artifact")
        for version in versions:
            version.refresh_from_db()
            self.stdout.write(
                f"  {version.model.name:<18} {version.number:>3}  {version.stage:<18} {version.card_completeness:>4}%"
                f"  {version.metrics.get('roc_auc', 0):>6.3f}  {version.artifact_sha256[:12]}"
            )
        self.stdout.write(f"  Credit data for fairness work: {var_dir / 'demo' / 'credit.csv'}")
        self.stdout.write(f"  Users: {', '.join(DEMO_USERS)} (password: {password})")
