"""The parameters each kind of evaluation takes, validated strictly (pydantic) before a run is queued."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from governance.core.errors import ValidationFailed


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    preprocessing_fingerprint: Annotated[str, Field(max_length=128)] | None = Field(
        default=None,
        description="Fingerprint of the preprocessing that produced this data (the serving pipeline's), "
        "compared by the preprocessing_fingerprint gate with the one registered for training.",
    )


class ExplainabilityParams(_Params):
    sample_rows: int = Field(
        default=200, ge=1, le=2000,
        description="Rows returned with their SHAP attributions, all of them up to 2000 (every row when the data "
        "has fewer); Kernel SHAP explains at least this many rows. LIME explains lime_rows rows.",
    )  # fmt: skip
    lime_rows: int = Field(default=5, ge=0, le=50)
    max_evals: int = Field(default=2000, ge=100, le=50_000, description="Budget of the model-agnostic explainers.")
    background_size: int = Field(default=50, ge=5, le=500, description="k-means background for Kernel/Permutation.")


SampleWeightColumn = Annotated[str, Field(min_length=1, max_length=128)] | None
SAMPLE_WEIGHT_HELP = (
    "A column of the data holding one non-negative, finite weight per row: the metrics are weighted by it, as "
    "scikit-learn's and fairlearn's sample_weight, and it is not a model feature."
)


class FairnessParams(_Params):
    bootstrap: int = Field(default=200, ge=0, le=2000, description="Resamples for the per-group intervals.")
    min_group_size: int = Field(
        default=30, ge=1, le=100_000, description="Smaller groups are reported but left out of the disparities."
    )
    positive_label: Any = Field(default=1, description="The favourable outcome.")
    sample_weight_column: SampleWeightColumn = Field(default=None, description=SAMPLE_WEIGHT_HELP)


class PerformanceParams(_Params):
    slice_column: Annotated[str, Field(max_length=128)] | None = None
    positive_label: Any = Field(
        default=None, description="The positive class of a binary model (default: the larger of its two classes)."
    )
    sample_weight_column: SampleWeightColumn = Field(default=None, description=SAMPLE_WEIGHT_HELP)


class RobustnessParams(_Params):
    noise_levels: list[Annotated[float, Field(ge=0, le=10)]] = Field(default=[0.01, 0.05, 0.1], max_length=10)
    missing_share: float = Field(default=0.1, ge=0, le=1)


class DataQualityParams(_Params):
    pass


HostName = Annotated[str, Field(min_length=1, max_length=60, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")]


class BenchmarkParams(_Params):
    """The limits are the engine's (workers/engines/benchmark.py), which checks them again on the host."""

    host: HostName = Field(description="The registered compute host to run on (GET /api/v1/hosts/).")
    batch_sizes: list[Annotated[int, Field(ge=1, le=65_536)]] = Field(
        default=[1, 8, 64], min_length=1, max_length=16, description="Rows per predict call, each measured."
    )
    warmup: int = Field(default=20, ge=0, le=10_000, description="Calls per batch size before timing starts.")
    min_calls: int = Field(default=100, ge=1, le=1_000_000)
    max_calls: int = Field(default=20_000, ge=1, le=1_000_000)
    time_budget_seconds: float = Field(default=10.0, gt=0, le=600, description="Per batch size, warm-up excluded.")
    p95_ci_width: float = Field(
        default=0.05, gt=0, le=1, description="Stop once the p95's 95% interval is this narrow (share of the p95)."
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="after")
    def _calls_in_order(self):
        if self.min_calls > self.max_calls:
            raise ValueError("min_calls must not exceed max_calls")
        if len(set(self.batch_sizes)) != len(self.batch_sizes):
            raise ValueError("batch_sizes must not repeat a size")
        return self


PARAMS = {
    "explainability": ExplainabilityParams,
    "fairness": FairnessParams,
    "performance": PerformanceParams,
    "robustness": RobustnessParams,
    "data_quality": DataQualityParams,
    "benchmark": BenchmarkParams,
}
NEEDS_TARGET = {"fairness", "performance", "robustness"}
NEEDS_SENSITIVE = {"fairness"}
# the fairness engine analyses each sensitive feature and their intersection (up to three features)
MAX_SENSITIVE_FEATURES = 3


def parse(kind: str, document: Any) -> dict:
    """The validated parameters with their defaults filled in, as plain JSON."""
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ValidationFailed("The parameters must be a JSON object.", code="invalid_parameters")
    try:
        return PARAMS[kind].model_validate(document).model_dump(mode="json")
    except ValidationError as exc:
        fields = {".".join(str(p) for p in ("parameters", *e["loc"])): e["msg"] for e in exc.errors(include_url=False)}
        first = next(iter(fields.items()))
        raise ValidationFailed(
            f"Invalid parameters for a {kind.replace('_', ' ')} evaluation: {first[0]}: {first[1]}.",
            code="invalid_parameters",
            fields=fields,
        ) from None
