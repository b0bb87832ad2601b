"""The deployment gate: may this version be served in this environment, and if not, why not.

``evaluate`` is a pure function over what ``selectors.gate_inputs`` loaded; it returns one
line per gate and per quorum rule, each passed / failed / missing. Evidence that does not
exist yet is "missing", never "passed". The verdict is ``fail`` when any line failed,
``pending`` when something is missing, and ``pass`` only when every line passed.

Whatever the policy says, the version's own state can forbid serving it: a rejected,
deprecated or retired version, or one whose stored artifact bytes failed their last integrity
check. Each such reason is a failed line of its own, first among the gates.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from governance.approvals import rules as R
from governance.approvals.models import DecisionKind, RequestStatus
from governance.registry.artifacts import PROBLEMS as ARTIFACT_PROBLEMS
from governance.registry.models import NEVER_SERVED_STAGES, Stage

PASSED, FAILED, MISSING = "passed", "failed", "missing"


@dataclass(frozen=True)
class Line:
    kind: str
    label: str
    status: str
    detail: str
    link: str = ""
    item: str = ""  # the checklist item's key, for checklist gates


@dataclass(frozen=True)
class Verdict:
    version_id: int
    environment: str
    verdict: str  # pass | fail | pending
    summary: str
    policy: dict[str, Any]
    request_id: int | None
    gates: list[Line] = field(default_factory=list)
    quorum: list[Line] = field(default_factory=list)
    checked_at: dt.datetime | None = None

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["checked_at"] = self.checked_at.isoformat() if self.checked_at else None
        return out


@dataclass
class Inputs:
    """Everything the gate looks at, loaded by the selector (no queries in here)."""

    version: Any
    environment: str
    policy: Any
    revision: Any
    rules: R.Rules
    request: Any | None  # the newest request covering the environment
    decisions: list  # of that request
    ticks: dict[str, Any]  # checklist item -> tick
    card_exists: bool
    evidence_digest: str  # the version's current one
    rollback_candidates: list  # earlier versions of the model approved for and served in the environment
    runs: list  # the version's successful evaluation runs, newest first
    now: dt.datetime
    urls: dict[str, str] = field(default_factory=dict)


def evaluate(inputs: Inputs) -> Verdict:
    env = inputs.environment
    gates = _version_lines(inputs)
    gates += [_gate_line(g, inputs) for g in inputs.rules.gates_for(env)] if env in inputs.rules.environments else []
    quorum = _quorum_lines(inputs)
    lines = gates + quorum
    if any(line.status == FAILED for line in lines):
        verdict = "fail"
    elif any(line.status == MISSING for line in lines):
        verdict = "pending"
    else:
        verdict = "pass"
    failed = sum(line.status == FAILED for line in lines)
    missing = sum(line.status == MISSING for line in lines)
    summary = {
        "pass": f"Version {inputs.version.number} may be served in {env}: every gate and quorum rule passed.",
        "fail": f"Version {inputs.version.number} may not be served in {env}: {failed} check(s) failed"
        + (f" and {missing} still missing." if missing else "."),
        "pending": f"Version {inputs.version.number} is not yet approved for {env}: {missing} check(s) still missing.",
    }[verdict]
    return Verdict(
        version_id=inputs.version.pk,
        environment=env,
        verdict=verdict,
        summary=summary,
        policy={"id": inputs.policy.pk, "name": inputs.policy.name, "revision": inputs.revision.number},
        request_id=inputs.request.pk if inputs.request is not None else None,
        gates=gates,
        quorum=quorum,
        checked_at=inputs.now,
    )


# --- the version's own state -----------------------------------------------------------------

STAGE_LINE, INTEGRITY_LINE = "stage", "artifact_integrity"

_NEVER_SERVED = {
    Stage.REJECTED: "its review rejected it",
    Stage.DEPRECATED: "it was deprecated",
    Stage.RETIRED: "it was retired",
}
assert set(_NEVER_SERVED) == NEVER_SERVED_STAGES


def _version_lines(inputs: Inputs) -> list[Line]:
    """Failed lines for what forbids serving the version whatever its approvals say; none when nothing does."""
    version, lines = inputs.version, []
    if version.stage in NEVER_SERVED_STAGES:
        lines.append(
            Line(STAGE_LINE, f"Version {version.number} may be served", FAILED,
                 f"Version {version.number} is {Stage(version.stage).label.lower()}: {_NEVER_SERVED[version.stage]}, "
                 "and such a version is never served again.")
        )  # fmt: skip
    if version.integrity_ok is False:
        problem = ARTIFACT_PROBLEMS.get(version.integrity_problem, "The stored artifact failed its integrity check.")
        when = f" (checked {version.integrity_checked_at:%Y-%m-%d %H:%M} UTC)" if version.integrity_checked_at else ""
        lines.append(
            Line(INTEGRITY_LINE, "Stored artifact matches its sha256", FAILED,
                 f"{problem}{when} [{version.integrity_problem or 'integrity_check_failed'}] Restore the artifact's "
                 "bytes, or register a new version.")
        )  # fmt: skip
    return lines


# --- gates ------------------------------------------------------------------------------------


def _gate_line(gate, inputs: Inputs) -> Line:
    return _GATES[gate.kind](gate, inputs)


def _card(gate: R.CardCompletenessGate, inputs: Inputs) -> Line:
    label = f"Model card at least {gate.min}% complete"
    value = inputs.version.card_completeness
    link = inputs.urls.get("card", "")
    if not inputs.card_exists:
        return Line(gate.kind, label, MISSING, "The version has no model card yet.", link)
    if value >= gate.min:
        return Line(gate.kind, label, PASSED, f"The card is {value}% complete.", link)
    return Line(gate.kind, label, FAILED, f"The card is {value}% complete; the policy asks for {gate.min}%.", link)


def _metric(gate: R.MetricGate, inputs: Inputs) -> Line:
    bounds = " and ".join(
        text for text in (f">= {gate.min:g}" if gate.min is not None else "", f"<= {gate.max:g}" if gate.max is not None else "") if text
    )  # fmt: skip
    label = f"{gate.metric} {bounds}"
    # Charter's own performance evaluation on the current artifact wins over what was registered
    run = _newest(inputs, "performance", lambda r: gate.metric in (r.result.get("metrics") or {}))
    if run is not None:
        value, source, link = run.result["metrics"][gate.metric], f"performance evaluation #{run.pk}", _url(run)
    else:
        metrics = inputs.version.metrics or {}
        if gate.metric not in metrics:
            return Line(
                gate.kind, label, MISSING, f"No '{gate.metric}' metric is recorded or evaluated for this version."
            )
        value, source, link = metrics[gate.metric], "registered metrics", ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Line(gate.kind, label, FAILED, f"The recorded '{gate.metric}' is not a number: {value!r}.", link)
    low_ok = gate.min is None or value >= gate.min
    high_ok = gate.max is None or value <= gate.max
    status = PASSED if low_ok and high_ok else FAILED
    return Line(gate.kind, label, status, f"{gate.metric} = {value:.4g} ({source}).", link)


def _url(run) -> str:
    return run.get_absolute_url()


def _newest(inputs: Inputs, kind: str, accept=lambda run: True):
    """The newest successful run of that kind on the version's current artifact."""
    for run in inputs.runs:
        if run.kind == kind and run.artifact_sha256 == inputs.version.artifact_sha256 and accept(run):
            return run
    return None


def _evaluation(gate: R.EvaluationGate, inputs: Inputs) -> Line:
    name = gate.evaluation.replace("_", " ")
    label = f"A {name} evaluation" + (" of the current artifact" if gate.newer_than_artifact else "")
    if gate.newer_than_artifact:
        run = _newest(inputs, gate.evaluation)
    else:
        run = next((r for r in inputs.runs if r.kind == gate.evaluation), None)
    if run is None:
        return Line(gate.kind, label, MISSING, f"No {name} evaluation has succeeded on this version's artifact yet.")
    return Line(gate.kind, label, PASSED, f"Run #{run.pk} finished on {run.finished_at:%Y-%m-%d %H:%M}.", _url(run))


# The confidence of the disparity intervals a fairness gate judges with ``judge: bound``.
FAIRNESS_GATE_CONFIDENCE = 0.95
_LEFT_OUT_NAMED = 5
# measure: (its name in a sentence, the name of the problem, the rates it compares)
_FAIRNESS_MEASURES = {
    "demographic_parity_ratio": ("demographic-parity ratio", "demographic parity", ("selection_rate",)),
    "equalized_odds_difference": ("equalized-odds difference", "equalized odds", ("recall", "false_positive_rate")),
}


def _fairness(gate: R.FairnessGate, inputs: Inputs) -> Line:
    """The policy's thresholds on the disparities of the newest fairness run over exactly the gate's
    features, recomputed from its stored per-group numbers with the policy's minimum group size (the
    engine's rule: small groups and undefined rates left out), judged on the estimate or on the
    interval's unfavourable bound as the policy says. A result without per-group numbers is judged
    on its stored disparities, and only on the estimate."""
    bound = gate.judge == "bound"
    checks = [
        (key, threshold, side)
        for key, threshold, side in (
            ("demographic_parity_ratio", gate.dp_ratio_min, "min"),
            ("equalized_odds_difference", gate.eo_diff_max, "max"),
        )
        if threshold is not None
    ]
    parts = [
        f"{_FAIRNESS_MEASURES[key][0]}{(' lower' if side == 'min' else ' upper') + ' bound' if bound else ''} "
        f"{'>=' if side == 'min' else '<='} {threshold:g}"
        for key, threshold, side in checks
    ]
    label = f"Fairness over {', '.join(gate.features)}: " + " and ".join(parts or ["reported"])
    run = _newest(inputs, "fairness", lambda r: sorted(r.sensitive_features) == sorted(gate.features))
    if run is None:
        return Line(gate.kind, label, MISSING, f"No fairness evaluation over {', '.join(gate.features)} has run yet.")
    judged = fairness_recomputed(run.result or {}, gate)
    if judged is None:
        if bound and checks:
            return Line(
                gate.kind, label, FAILED,
                f"Run #{run.pk} keeps no per-group numbers, so there is no interval to judge; run the fairness "
                "evaluation again.", _url(run),
            )  # fmt: skip
        values, intervals = (run.result or {}).get("overall") or {}, {}
        scope = "its stored disparities (the result keeps no per-group sizes, so no group could be left out)"
    else:
        values, intervals = judged["disparities"], judged["disparity_ci"]
        scope = f"groups of at least {gate.min_group_size} rows"
    how = f"the unfavourable bound of the {FAIRNESS_GATE_CONFIDENCE:.0%} interval" if bound else "the estimate"
    problems, found = [], []
    for key, threshold, side in checks:
        name, problem, rates = _FAIRNESS_MEASURES[key]
        estimate = values.get(key)
        value = (intervals.get(key) or [None, None])[0 if side == "min" else 1] if bound else estimate
        if value is None:
            too_few = judged is not None and any(judged["compared"].get(m, 0) < 2 for m in rates)
            why = f"fewer than two groups of at least {gate.min_group_size} rows to compare" if too_few else "undefined"
            found.append(f"no {name} ({why})")
        elif bound:
            found.append(f"{name} {'lower' if side == 'min' else 'upper'} bound {value:.3f} (estimate {estimate:.3f})")
        else:
            found.append(f"{name} {value:.3f}")
        if value is None or (value < threshold if side == "min" else value > threshold):
            problems.append(problem)
    detail = f"Run #{run.pk}, judged on {how} over {scope}: {', '.join(found) or 'no threshold set'}"
    if judged is not None:
        detail += _left_out_text(judged, {m for key, _, _ in checks for m in _FAIRNESS_MEASURES[key][2]})
    detail += f"; outside the threshold: {', '.join(problems)}." if problems else "."
    return Line(gate.kind, label, FAILED if problems else PASSED, detail, _url(run))


def fairness_recomputed(result: dict, gate: R.FairnessGate) -> dict | None:
    """The disparities of the run's primary analysis (the intersection of its features) over the groups
    the policy supports; ``None`` when the result keeps no per-group numbers."""
    report = result.get("report") if isinstance(result.get("report"), dict) else {}
    primary = report.get("primary")
    analysis = next((a for a in report.get("analyses") or [] if isinstance(a, dict) and a.get("name") == primary), None)
    if analysis is None:
        return None
    from workers.engines import fairness as fairness_engine  # here: the engine loads pandas, which no page needs

    return fairness_engine.disparities_from_stored(
        analysis, min_group_size=gate.min_group_size, confidence=FAIRNESS_GATE_CONFIDENCE
    )


def _left_out_text(judged: dict, rates: set[str]) -> str:
    """'; left out: group X (n=1 < 30), …' and the groups left out of a rate's comparison for want of a
    denominator, for the rates the gate reads."""

    def names(items: list[str]) -> str:
        more = len(items) - _LEFT_OUT_NAMED
        return ", ".join(items[:_LEFT_OUT_NAMED]) + (f" and {more} more" if more > 0 else "")

    text = ""
    if judged["left_out"]:
        text += "; left out: " + names([f"group {e['group']} ({e['reason']})" for e in judged["left_out"]])
    for rate, groups in judged["undefined_left_out"].items():
        if rate in rates and groups:
            from workers.engines import fairness as fairness_engine

            what = fairness_engine.RATE_NAMES[rate]
            text += (
                f"; {what} undefined (no {fairness_engine.DENOMINATOR_NAMES[rate]}), so left out of the {what} "
                f"comparison: {names([f'group {g}' for g in groups])}"
            )
    return text


# --- hardware benchmarks ------------------------------------------------------------------------
# A benchmark run's result is workers.engines.benchmark's document (per batch size, latency in ms and
# the GPU block its sampler filled; "device" says where the model ran); its environment carries the
# registered compute host the worker ran on ({"compute_host": {"name", "labels", "queue"}}).

BENCHMARK = "benchmark"
_REQUEST_BENCHMARK = "POST /api/v1/evaluations/ with kind benchmark and parameters.host"


def _compute_host(run) -> tuple[str, dict[str, str]]:
    """The name and labels of the registered host a benchmark ran on, as its worker recorded them (the
    name asked for in the parameters when the record has none)."""
    environment = run.environment if isinstance(run.environment, dict) else {}
    host = environment.get("compute_host") if isinstance(environment.get("compute_host"), dict) else {}
    name = host.get("name") or (run.parameters or {}).get("host") or ""
    labels = host.get("labels")
    if isinstance(labels, list):  # ["gpu=h100", ...]
        labels = dict(str(label).partition("=")[::2] for label in labels)
    return str(name), ({str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {})


def on_host_class(run, host_class: str) -> bool:
    """Whether a benchmark ran on a host of the class: a ``key=value`` label the host carried, or its name."""
    name, labels = _compute_host(run)
    key, is_label, value = host_class.partition("=")
    return labels.get(key) == value if is_label else name == host_class


def _host_text(run) -> str:
    name = _compute_host(run)[0] or ((run.result or {}).get("host") or {}).get("hostname") or "an unnamed host"
    return str(name)


def _class_text(host_class: str) -> str:
    return f"a host labelled {host_class}" if "=" in host_class else f"the host {host_class}"


def _ask(host_class: str | None, what: str) -> str:
    """How to produce the missing benchmark."""
    host = "a GPU host" if host_class is None else _class_text(host_class).removeprefix("the host ")
    return f" Run one: {_REQUEST_BENCHMARK} naming {host} (GET /api/v1/hosts/){what}."


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _device(run) -> dict:
    device = (run.result or {}).get("device")
    return device if isinstance(device, dict) else {}


def _on_gpu(run) -> bool:
    return _device(run).get("type") == "cuda"


def _gpu(run) -> dict:
    gpu = _device(run).get("gpu")
    return gpu if isinstance(gpu, dict) else {}


def _ran_on(run) -> str:
    """Where the benchmark ran the model: "on the CPU", or "on the GPU <name>"."""
    if not _on_gpu(run):
        return "on the CPU"
    name = _gpu(run).get("name")
    return f"on the GPU {name}" if name else "on a GPU"


def _measured(run, batch_size: int) -> dict | None:
    """The run's measurement at that batch size, when it has a p95."""
    for entry in (run.result or {}).get("results") or []:
        if (
            isinstance(entry, dict) and entry.get("batch_size") == batch_size
            and _number((entry.get("latency_ms") or {}).get("p95"))
        ):  # fmt: skip
            return entry
    return None


def _earlier_artifact(inputs: Inputs, accept) -> str:
    """'; run #N … benchmarked an earlier artifact' when only a benchmark of another artifact matches."""
    stale = next((r for r in inputs.runs if r.kind == BENCHMARK and accept(r)), None)
    if stale is None or stale.artifact_sha256 == inputs.version.artifact_sha256:
        return ""
    return (
        f" Run #{stale.pk} on {_host_text(stale)} benchmarked an earlier artifact ({stale.artifact_sha256[:12]}…), "
        "which no longer counts."
    )


def _latency(gate: R.LatencyGate, inputs: Inputs) -> Line:
    size = gate.batch_size
    label = f"p95 latency <= {gate.p95_ms_max:g} ms at batch size {size} on {gate.host_class}"
    on_class = lambda run: on_host_class(run, gate.host_class)  # noqa: E731
    run = _newest(inputs, BENCHMARK, lambda r: on_class(r) and _measured(r, size) is not None)
    if run is None:
        other = _newest(inputs, BENCHMARK, on_class)
        if other is not None:
            sizes = [e.get("batch_size") for e in (other.result or {}).get("results") or [] if isinstance(e, dict)]
            found = (
                f"Run #{other.pk} on {_host_text(other)} measured batch size(s) {', '.join(map(str, sizes)) or 'none'}"
            )
            detail = f"{found}, not {size}: no benchmark of this version on {_class_text(gate.host_class)} measured it."
        else:
            detail = f"No benchmark of this version's artifact has run on {_class_text(gate.host_class)} yet."
            detail += _earlier_artifact(inputs, on_class)
        return Line(gate.kind, label, MISSING, detail + _ask(gate.host_class, f", with {size} among its batch_sizes"))
    entry = _measured(run, size)
    p95 = float(entry["latency_ms"]["p95"])
    where = _host_text(run) + (f" ({gate.host_class})" if "=" in gate.host_class else "")
    detail = f"Run #{run.pk}: p95 {p95:.4g} ms at batch size {size} on {where}, {_ran_on(run)}"
    if entry.get("stable") is False:
        detail += f" (the p95 was not stable: stopped by {str(entry.get('stopped', '')).replace('_', ' ')})"
    if p95 <= gate.p95_ms_max:
        return Line(gate.kind, label, PASSED, detail + ".", _url(run))
    return Line(gate.kind, label, FAILED, detail + f"; the policy allows at most {gate.p95_ms_max:g} ms.", _url(run))


def _gpu_peak(run) -> tuple[float | None, str]:
    """The run's peak GPU memory over its batch sizes, and whose: this process's where NVML reported
    it at every batch size, else the whole device's (other processes included: an upper bound)."""
    entries = [e for e in (run.result or {}).get("results") or [] if isinstance(e, dict)]
    blocks = [e["gpu"] for e in entries if isinstance(e.get("gpu"), dict)]
    mine = [b.get("process_memory_peak_bytes") for b in blocks]
    if mine and all(_number(m) and m > 0 for m in mine):
        return float(max(mine)), "the benchmark process's"
    device = [b.get("device_memory_used_peak_bytes") for b in blocks if _number(b.get("device_memory_used_peak_bytes"))]
    summary = ((run.result or {}).get("summary") or {}).get("gpu_memory_used_peak_bytes")
    if not device and _number(summary):
        device = [summary]
    if device:
        return float(max(device)), "the whole GPU's, other processes included"
    return None, ""


def _size(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _gpu_memory(gate: R.GpuMemoryGate, inputs: Inputs) -> Line:
    where = f" on {gate.host_class}" if gate.host_class is not None else ""
    label = f"Peak GPU memory leaves {gate.headroom:.0%} of the GPU free{where}"
    if gate.host_class is None:
        accept = lambda run: True  # noqa: E731
    else:
        accept = lambda run: on_host_class(run, gate.host_class)  # noqa: E731
    run = _newest(inputs, BENCHMARK, lambda r: accept(r) and _on_gpu(r))
    ask = _ask(gate.host_class, ", for a model the GPU runs (ONNX with onnxruntime-gpu, or XGBoost built with CUDA)")
    if run is None:
        cpu = _newest(inputs, BENCHMARK, accept)
        if cpu is not None:
            why = _device(cpu).get("reason")
            detail = (
                f"GPU memory was not measured: the newest benchmark{where}, run #{cpu.pk} on {_host_text(cpu)}, ran "
                f"on the CPU{f' ({why})' if why else ''}."
            )
            return Line(gate.kind, label, MISSING, detail + ask, _url(cpu))
        detail = f"No benchmark of this version's artifact has run{where} yet, so its GPU memory is not measured."
        return Line(gate.kind, label, MISSING, detail + _earlier_artifact(inputs, accept) + ask)
    gpu = _gpu(run)
    peak, whose = _gpu_peak(run)
    total = gpu.get("memory_total_bytes")
    ran = f"Run #{run.pk} on {_host_text(run)} ran {_ran_on(run)}"
    if peak is None or not _number(total) or total <= 0:
        missing = "its peak GPU memory" if peak is None else "the GPU's total memory"
        return Line(gate.kind, label, MISSING, f"{ran} but recorded no figure for {missing} (NVML).", _url(run))
    limit = (1.0 - gate.headroom) * total
    detail = (
        f"{ran}: peak {_size(peak)} ({whose}) of {_size(total)} ({peak / total:.0%}); with {gate.headroom:.0%} "
        f"headroom at most {_size(limit)} may be used"
    )
    if peak <= limit:
        return Line(gate.kind, label, PASSED, detail + ".", _url(run))
    return Line(gate.kind, label, FAILED, detail + f", {_size(peak - limit)} too much.", _url(run))


def _preprocessing(gate: R.PreprocessingGate, inputs: Inputs) -> Line:
    label = "Serving preprocessing equals training preprocessing"
    trained = inputs.version.preprocessing_fingerprint
    if not trained:
        return Line(gate.kind, label, MISSING, "No preprocessing fingerprint was registered with the version.")
    run = _newest(inputs, "performance", lambda r: bool((r.parameters or {}).get("preprocessing_fingerprint")))
    if run is None:
        run = next(
            (r for r in inputs.runs if r.artifact_sha256 == inputs.version.artifact_sha256
             and (r.parameters or {}).get("preprocessing_fingerprint")), None,
        )  # fmt: skip
    if run is None:
        return Line(
            gate.kind, label, MISSING,
            "The training fingerprint is registered; no evaluation has recorded the fingerprint of the "
            "preprocessing that produced its data yet (parameter preprocessing_fingerprint).",
        )  # fmt: skip
    served = run.parameters["preprocessing_fingerprint"]
    if served == trained:
        return Line(gate.kind, label, PASSED, f"Run #{run.pk} ran on data from the same preprocessing ({trained[:16]}…).",
                    _url(run))  # fmt: skip
    return Line(gate.kind, label, FAILED,
                f"Run #{run.pk}'s data came from preprocessing {served[:16]}…, not the training one {trained[:16]}….",
                _url(run))  # fmt: skip


def _rollback(gate: R.RollbackTargetGate, inputs: Inputs) -> Line:
    label = f"A rollback target exists for {inputs.environment}"
    if inputs.rollback_candidates:
        best = inputs.rollback_candidates[0]
        return Line(gate.kind, label, PASSED, f"Version {best.number} was approved and served before.")
    return Line(
        gate.kind, label, FAILED,
        f"No earlier version of this model was approved for {inputs.environment} and served; "
        "there is nothing to roll back to.",
    )  # fmt: skip


def _checklist(gate: R.ChecklistGate, inputs: Inputs) -> Line:
    tick = inputs.ticks.get(gate.item)
    link = inputs.urls.get("checklist", "")
    if tick is None:
        return Line(gate.kind, gate.text, MISSING, "Not ticked yet.", link, item=gate.item)
    who = tick.ticked_by.get_username() if tick.ticked_by else "a deleted user"
    conflict = _tick_conflict(tick, inputs)
    if conflict:
        return Line(
            gate.kind, gate.text, MISSING, f"Ticked by {who}, who {conflict}: needs someone else.", link,
            item=gate.item,
        )  # fmt: skip
    note = f": {tick.note}" if tick.note else ""
    return Line(
        gate.kind, gate.text, PASSED, f"Ticked by {who} on {tick.ticked_at:%Y-%m-%d}{note}", link, item=gate.item
    )


def _tick_conflict(tick, inputs: Inputs) -> str:
    """Why the tick does not count, or "". The separation of duties the service applies when ticking
    (``selectors.checklist_refusal``), applied again to ticks made before it applied: someone who
    ticked and then requested the review (or registered the version) does not attest it."""
    by = tick.ticked_by_id
    if by is None:
        return ""
    if by == inputs.version.created_by_id:
        return "registered this version"
    if inputs.request is not None and by == inputs.request.requested_by_id:
        return "requested this review"
    return ""


_GATES = {
    "card_completeness": _card,
    "metric": _metric,
    "evaluation": _evaluation,
    "fairness": _fairness,
    "latency": _latency,
    "gpu_memory": _gpu_memory,
    "preprocessing_fingerprint": _preprocessing,
    "rollback_target": _rollback,
    "checklist": _checklist,
}
assert set(_GATES) == set(R.GATE_KINDS)


# --- quorum -----------------------------------------------------------------------------------


def counting_approvals(
    request, decisions: list, *, quorum: R.Quorum, version, evidence_digest: str, now: dt.datetime
) -> list:
    """Approvals that count now toward this environment's quorum: on the request's current freeze,
    against the version's current artifact and evidence, unexpired, not from the author or the
    requester, and from someone in the owning team, or from an outsider only in a role this
    quorum wants from outside."""
    if request.artifact_sha256 != version.artifact_sha256 or request.evidence_digest != evidence_digest:
        return []
    barred = {version.created_by_id, request.requested_by_id}
    return [
        d
        for d in decisions
        if d.decision == DecisionKind.APPROVE
        and d.freeze == request.freeze
        and d.artifact_sha256 == request.artifact_sha256
        and d.evidence_digest == request.evidence_digest
        and (d.expires_at is None or d.expires_at > now)
        and d.decided_by_id not in barred
        and (d.team_roles or set(d.other_team_roles) & quorum.wants_other_team)
    ]


def match_roles(quorum: R.Quorum, approvals: list) -> list[list]:
    """Assign approvals to the role requirements, one person per slot (bipartite matching), so a
    person holding two roles is counted where they are needed. Returns, per requirement, the
    approvals that fill it."""
    slots = [(i, req) for i, req in enumerate(quorum.roles) for _ in range(req.count)]

    def fits(decision, req) -> bool:
        return req.role in (decision.other_team_roles if req.other_team else decision.team_roles)

    owner: dict[int, int] = {}  # slot -> approval

    def assign(a: int, seen: set[int]) -> bool:
        for s, (_, req) in enumerate(slots):
            if s in seen or not fits(approvals[a], req):
                continue
            seen.add(s)
            if s not in owner or assign(owner[s], seen):
                owner[s] = a
                return True
        return False

    for a in range(len(approvals)):
        assign(a, set())
    filled: list[list] = [[] for _ in quorum.roles]
    for s, a in owner.items():
        filled[slots[s][0]].append(approvals[a])
    return filled


def _names(decisions: list) -> str:
    return ", ".join(d.decided_by.get_username() for d in decisions)


def _quorum_lines(inputs: Inputs) -> list[Line]:
    env, request, version = inputs.environment, inputs.request, inputs.version
    link = request.get_absolute_url() if request is not None else ""
    quorum = inputs.rules.environments.get(env)
    if quorum is None:
        covered = ", ".join(inputs.rules.environments) or "no environment"
        return [
            Line("policy", f"Policy covers {env}", FAILED,
                 f"The policy '{inputs.policy.name}' approves versions for {covered}, not for {env}.")
        ]  # fmt: skip
    if request is None or request.status == RequestStatus.WITHDRAWN:
        return [Line("request", f"Review requested for {env}", MISSING, f"No review has been requested for {env}.")]
    if request.status == RequestStatus.REJECTED:
        return [Line("request", f"Review #{request.pk}", FAILED, "The review rejected this version.", link)]
    if request.status == RequestStatus.CHANGES_REQUESTED:
        return [Line("request", f"Review #{request.pk}", FAILED, "The reviewers asked for changes.", link)]
    lines = []
    if request.artifact_sha256 != version.artifact_sha256 or request.evidence_digest != inputs.evidence_digest:
        lines.append(
            Line("request", f"Evidence frozen by review #{request.pk}", MISSING,
                 "The artifact or the evidence changed after the review was frozen; "
                 "approvals given before no longer count.", link)
        )  # fmt: skip
    else:
        lines.append(
            Line("request", f"Evidence frozen by review #{request.pk}", PASSED,
                 f"Artifact sha256 {request.artifact_sha256[:12]}… and evidence {request.evidence_digest[:12]}… "
                 "are unchanged since the freeze.", link)
        )  # fmt: skip
    approvals = counting_approvals(
        request, inputs.decisions, quorum=quorum, version=version, evidence_digest=inputs.evidence_digest,
        now=inputs.now,
    )  # fmt: skip
    expired = [
        d for d in inputs.decisions
        if d.decision == DecisionKind.APPROVE and d.freeze == request.freeze and d.expires_at is not None
        and d.expires_at <= inputs.now
    ]  # fmt: skip
    n = len(approvals)
    detail = f"{n} of {quorum.min_approvals} approval(s)" + (f": {_names(approvals)}" if approvals else "")
    if expired:
        detail += f"; {len(expired)} expired ({_names(expired)})"
    lines.append(
        Line("quorum", f"At least {quorum.min_approvals} approval(s)", PASSED if n >= quorum.min_approvals else MISSING,
             detail + ".", link)
    )  # fmt: skip
    for req, got in zip(quorum.roles, match_roles(quorum, approvals), strict=True):
        who = f"{req.role}{'s' if req.count > 1 else ''}" + (" from another team" if req.other_team else "")
        label = f"{req.count} {who}"
        status = PASSED if len(got) >= req.count else MISSING
        lines.append(
            Line("quorum", label, status, f"{len(got)} of {req.count}" + (f": {_names(got)}." if got else "."), link)
        )
    expiring = [d.expires_at for d in approvals if d.expires_at is not None]
    if quorum.expiry_days and expiring:
        soonest = min(expiring)
        lines.append(
            Line("quorum", f"Approvals younger than {quorum.expiry_days} days", PASSED,
                 f"The oldest counting approval expires on {soonest:%Y-%m-%d}.", link)
        )  # fmt: skip
    return lines
