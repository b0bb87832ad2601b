"""Issue 15, point 5 (resource fit as evidence): hardware benchmarks feed the ``latency`` and
``gpu_memory`` gates.

The benchmark documents are the engine's own: ``workers.engines.benchmark.benchmark`` run here on a
real scikit-learn model loaded through ``workers.engines.loading`` (on the CPU: this machine has no
GPU), then edited where a case needs another figure, or a GPU block (device ``cuda``, the GPU's total
memory, NVML's peaks) that only a GPU host could produce. They are stored through the services a
worker uses (``run_start`` / ``run_finish``), with the compute host the worker records in the run's
environment, and judged through the public gate endpoint.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json

import pytest
from django.urls import reverse
from django.utils.html import escape
from sklearn.datasets import load_iris

from governance.approvals import rules as R
from governance.approvals.models import Policy, PolicyRevision, RequestStatus
from governance.core.context import audit_context
from governance.evaluations import services as evaluations
from governance.evaluations.models import EvaluationRun
from governance.registry.models import ModelVersion
from tests.conftest import assert_error, governed_state, trained_artifact
from tests.test_approvals import decide, request
from workers.engines.benchmark import benchmark
from workers.engines.loading import load_model_bytes, sha256_of

pytestmark = pytest.mark.usefixtures("fast_passwords")

ONE_APPROVER = {"production": {"min_approvals": 1, "roles": [{"role": "approver"}]}}
GiB = 2**30
H100 = {
    "index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-5c1c0f8e-0d1b-4a52-9d0e-2b1f3c4d5e6f",
    "memory_total_bytes": 80 * GiB, "driver_version": "550.54.15", "cuda_version": "12.4",
}  # fmt: skip
_digests = itertools.count()


# --- the benchmark documents -------------------------------------------------------------------


@pytest.fixture(scope="module")
def artifact() -> bytes:
    return trained_artifact()  # a LogisticRegression on iris, joblib


@pytest.fixture(scope="module")
def measured(artifact) -> dict:
    """A real benchmark of the artifact on this machine's CPU at batch sizes 1 and 8."""
    model = load_model_bytes(
        artifact, artifact_format="sklearn-joblib", expected_sha256=sha256_of(artifact), allow_pickle=True
    )
    rows, _ = load_iris(return_X_y=True)
    document = benchmark(
        model, rows[:20], batch_sizes=[1, 8], warmup=3, min_calls=50, max_calls=300, time_budget_seconds=0.5
    )
    assert document["device"]["type"] == "cpu" and [r["batch_size"] for r in document["results"]] == [1, 8]
    return document


def with_p95(document: dict, stopped: str = "stable", **p95_by_batch: float) -> dict:
    """The document with the p95 (ms) of some batch sizes replaced (``with_p95(doc, b1=12.5)``), each
    stopped as ``stopped`` says ("stable", or "time_budget" / "max_calls": not stable)."""
    edited = copy.deepcopy(document)
    for entry in edited["results"]:
        key = f"b{entry['batch_size']}"
        if key in p95_by_batch:
            entry["latency_ms"]["p95"] = p95_by_batch[key]
            entry["stopped"], entry["stable"] = stopped, stopped == "stable"
            edited["summary"][f"batch_{entry['batch_size']}.p95_ms"] = p95_by_batch[key]
    return edited


def on_gpu(document: dict, *, peak: float | None, device_peak: float | None = None, gpu: dict = H100) -> dict:
    """The document as a GPU host's benchmark of a model the GPU ran (onnxruntime with the CUDA
    provider): NVML's peaks (``peak`` this process's, ``device_peak`` the whole device's) at each batch size."""
    edited = copy.deepcopy(document)
    edited["device"] = {
        "type": "cuda", "reason": "onnxruntime with the CUDA execution provider.", "backend": "onnxruntime",
        "gpu": gpu, "onnx_providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    }  # fmt: skip
    edited["host"] = {**edited["host"], "gpus": [gpu], "gpu_summary": f"1 × {gpu['name']}"}
    device_peak = device_peak if device_peak is not None else (peak + 2 * GiB if peak is not None else None)
    for entry in edited["results"]:
        entry["gpu"] = {
            "samples": 40, "utilisation_mean_percent": 35.0, "utilisation_max_percent": 71.0,
            "device_memory_used_peak_bytes": device_peak, "process_memory_peak_bytes": peak,
        }  # fmt: skip
    edited["summary"]["gpu_memory_used_peak_bytes"] = device_peak
    return edited


def store_benchmark(version, document: dict, *, host: str = "bench-1", labels: dict | None = None, actor=None):
    """``document`` stored as a finished benchmark of ``version`` on ``host``, the way the worker
    stores it (run_start, run_finish), with the registered host it recorded in the environment."""
    labels = {"gpu": "h100", "env": "prod"} if labels is None else labels
    sizes = document["settings"]["batch_sizes"]
    run = EvaluationRun.objects.create(
        version=version, kind="benchmark", parameters={"host": host, "batch_sizes": sizes},
        parameters_digest=hashlib.sha256(f"benchmark-{next(_digests)}".encode()).hexdigest(),
        data_name="rows.csv", data_rows=20, requested_by=actor,
    )  # fmt: skip
    environment = {
        "libraries": document["libraries"],
        "host": document["host"]["hostname"],
        "compute_host": {"name": host, "labels": labels, "queue": f"host.{host}"},
    }
    with audit_context(source="task"):
        assert evaluations.run_start(run_id=run.pk, host=host) is not None
        finished = evaluations.run_finish(
            run_id=run.pk, result=document, figures={}, environment=environment,
            artifact_sha256=version.artifact_sha256,
        )  # fmt: skip
    assert finished is not None and finished.status == "succeeded"
    return finished


# --- the world ---------------------------------------------------------------------------------


@pytest.fixture
def bench_version(model, make_version, artifact):
    return make_version(model, content=artifact)


@pytest.fixture
def policy_api(api, superuser):
    return api.as_user(superuser)


@pytest.fixture
def govern(policy_api, model):
    """Give the model a new policy with these gates, created and assigned through the API."""
    names = itertools.count(1)

    def use(*gates: dict) -> int:
        rules = {"environments": ONE_APPROVER, "gates": list(gates)}
        created = policy_api.post("/api/v1/policies/", {"name": f"Benchmarks {next(names)}", "rules": rules},
                                  format="json")  # fmt: skip
        assert created.status_code == 201, created.content
        pk = created.json()["id"]
        assigned = policy_api.post("/api/v1/policies/assign/", {"model": model.pk, "policy": pk}, format="json")
        assert assigned.status_code == 200 and assigned.json()["policy"] == pk, assigned.content
        return pk

    return use


def lines(api, users, version, kind: str) -> list[dict]:
    r = api.as_user(users.viewer).get(f"/api/v1/versions/{version.pk}/gate/?environment=production")
    assert r.status_code == 200, r.content
    return [line for line in r.json()["gates"] if line["kind"] == kind]


def latency(**kw) -> dict:
    return {"kind": "latency", "host_class": "gpu=h100", "p95_ms_max": 1000, **kw}


# --- the latency gate ----------------------------------------------------------------------------


def test_a_cpu_benchmark_turns_the_latency_gate_from_missing_to_passed(api, users, govern, bench_version, measured):
    govern(latency())
    [line] = lines(api, users, bench_version, "latency")
    assert line["status"] == "missing" and line["label"] == "p95 latency <= 1000 ms at batch size 1 on gpu=h100"
    assert "No benchmark of this version's artifact has run on a host labelled gpu=h100" in line["detail"]
    assert (
        "POST /api/v1/evaluations/ with kind benchmark" in line["detail"]
        and "1 among its batch_sizes" in line["detail"]
    )

    run = store_benchmark(bench_version, measured)
    p95 = run.result["results"][0]["latency_ms"]["p95"]
    assert p95 == measured["results"][0]["latency_ms"]["p95"] < 1000  # the engine's figure, as stored
    [line] = lines(api, users, bench_version, "latency")
    assert line["status"] == "passed", line
    assert line["detail"].startswith(
        f"Run #{run.pk}: p95 {p95:.4g} ms at batch size 1 on bench-1 (gpu=h100), on the CPU"
    ), line["detail"]
    assert line["link"] == run.get_absolute_url()


def test_a_p95_over_the_target_fails_with_the_figure_the_host_and_the_cpu_named(
    api, users, govern, bench_version, measured
):
    govern(latency(p95_ms_max=10))
    run = store_benchmark(bench_version, with_p95(measured, b1=12.5))
    [line] = lines(api, users, bench_version, "latency")
    assert line["status"] == "failed"
    assert line["detail"].startswith(f"Run #{run.pk}: p95 12.5 ms at batch size 1 on bench-1 (gpu=h100), on the CPU")
    assert line["detail"].endswith("; the policy allows at most 10 ms.")
    assert line["link"] == run.get_absolute_url()
    r = api.as_user(users.viewer).get(f"/api/v1/versions/{bench_version.pk}/gate/?environment=production")
    assert r.json()["verdict"] == "fail"
    # a p95 the engine could not pin down within its budget is judged all the same, and said to be unstable
    store_benchmark(bench_version, with_p95(measured, stopped="time_budget", b1=9.5))
    [line] = lines(api, users, bench_version, "latency")
    assert line["status"] == "passed"
    assert (
        "p95 9.5 ms at batch size 1 on bench-1 (gpu=h100), on the CPU (the p95 was not stable: stopped by time budget)."
        in line["detail"]
    )


def test_the_host_class_matches_a_label_the_host_carried_or_its_name(api, users, govern, bench_version, measured):
    govern(
        latency(host_class="gpu=a100", p95_ms_max=10),
        latency(host_class="bench-7", p95_ms_max=10),
        latency(host_class="gpu=h100", p95_ms_max=10),
        latency(host_class="accelerator=a100", p95_ms_max=10),
        latency(host_class="bench-8", p95_ms_max=10),
    )
    run = store_benchmark(bench_version, with_p95(measured, b1=4.0), host="bench-7", labels={"gpu": "a100"})
    by_label, by_name, other_label, other_key, other_name = lines(api, users, bench_version, "latency")
    assert by_label["status"] == by_name["status"] == "passed"
    assert f"Run #{run.pk}: p95 4 ms at batch size 1 on bench-7 (gpu=a100), on the CPU." == by_label["detail"]
    assert f"Run #{run.pk}: p95 4 ms at batch size 1 on bench-7, on the CPU." == by_name["detail"]
    for line, named in ((other_label, "a host labelled gpu=h100"), (other_key, "a host labelled accelerator=a100"),
                        (other_name, "the host bench-8")):  # fmt: skip
        assert line["status"] == "missing", line
        assert f"No benchmark of this version's artifact has run on {named} yet." in line["detail"]

    # the newest benchmark on the class is judged, whatever ran elsewhere since
    newer = store_benchmark(bench_version, with_p95(measured, b1=40.0), host="bench-9", labels={"gpu": "a100"})
    store_benchmark(bench_version, with_p95(measured, b1=1.0), host="bench-8", labels={"gpu": "l4"})
    by_label, by_name, _, _, other_name = lines(api, users, bench_version, "latency")
    assert by_label["status"] == "failed" and by_label["detail"].startswith(f"Run #{newer.pk}: p95 40 ms")
    assert by_name["status"] == "passed" and by_name["detail"].startswith(f"Run #{run.pk}: ")
    assert other_name["status"] == "passed" and "on bench-8, on the CPU" in other_name["detail"]


def test_a_batch_size_the_benchmark_did_not_measure_is_missing(api, users, govern, bench_version, measured):
    govern(latency(batch_size=64), latency(batch_size=8, p95_ms_max=2))
    run = store_benchmark(bench_version, with_p95(measured, b1=0.5, b8=3.0))
    unmeasured, eight = lines(api, users, bench_version, "latency")
    assert unmeasured["status"] == "missing" and unmeasured["label"].endswith("at batch size 64 on gpu=h100")
    assert f"Run #{run.pk} on bench-1 measured batch size(s) 1, 8, not 64" in unmeasured["detail"]
    assert "with 64 among its batch_sizes" in unmeasured["detail"]
    assert eight["status"] == "failed" and eight["detail"].startswith(f"Run #{run.pk}: p95 3 ms at batch size 8 ")


def test_a_gpu_benchmark_is_marked_with_its_gpu(api, users, govern, bench_version, measured):
    govern(latency(p95_ms_max=10))
    run = store_benchmark(bench_version, with_p95(on_gpu(measured, peak=GiB), b1=2.0))
    [line] = lines(api, users, bench_version, "latency")
    assert line["status"] == "passed"
    assert (
        line["detail"] == f"Run #{run.pk}: p95 2 ms at batch size 1 on bench-1 (gpu=h100), on the GPU {H100['name']}."
    )


# --- the GPU-memory gate ------------------------------------------------------------------------


def test_the_gpu_memory_gate_judges_the_peak_against_the_gpu_with_headroom(api, users, govern, bench_version, measured):
    govern(
        {"kind": "gpu_memory"},
        {"kind": "gpu_memory", "host_class": "gpu=h100", "headroom": 0.05},
        {"kind": "gpu_memory", "host_class": "gpu=a100"},
    )
    default, little_headroom, other_class = lines(api, users, bench_version, "gpu_memory")
    assert default["status"] == "missing" and default["label"] == "Peak GPU memory leaves 20% of the GPU free"
    assert (
        "No benchmark of this version's artifact has run yet, so its GPU memory is not measured." in default["detail"]
    )

    fits = store_benchmark(bench_version, on_gpu(measured, peak=10 * GiB))
    default, little_headroom, other_class = lines(api, users, bench_version, "gpu_memory")
    assert default["status"] == little_headroom["status"] == "passed", (default, little_headroom)
    assert default["detail"] == (
        f"Run #{fits.pk} on bench-1 ran on the GPU {H100['name']}: peak 10.00 GiB (the benchmark process's) of "
        "80.00 GiB (12%); with 20% headroom at most 64.00 GiB may be used."
    )
    assert default["link"] == fits.get_absolute_url()
    assert other_class["status"] == "missing" and "run on gpu=a100 yet" in other_class["detail"]

    # 70 GiB of 80: over the 64 GiB that 20% headroom leaves, under the 76 GiB that 5% leaves
    too_big = store_benchmark(bench_version, on_gpu(measured, peak=70 * GiB))
    default, little_headroom, _ = lines(api, users, bench_version, "gpu_memory")
    assert default["status"] == "failed" and default["detail"].startswith(f"Run #{too_big.pk} on bench-1")
    assert "peak 70.00 GiB" in default["detail"] and default["detail"].endswith(", 6.00 GiB too much.")
    assert little_headroom["status"] == "passed" and "at most 76.00 GiB" in little_headroom["detail"]


def test_without_the_process_figure_the_whole_devices_peak_is_judged(api, users, govern, bench_version, measured):
    govern({"kind": "gpu_memory", "host_class": "bench-1"})
    run = store_benchmark(bench_version, on_gpu(measured, peak=None, device_peak=66 * GiB))
    [line] = lines(api, users, bench_version, "gpu_memory")
    assert line["status"] == "failed", line
    assert f"Run #{run.pk} on bench-1 ran on the GPU {H100['name']}: peak 66.00 GiB (the whole GPU's" in line["detail"]


def test_a_cpu_benchmark_leaves_gpu_memory_missing_saying_it_ran_on_the_cpu(
    api, users, govern, bench_version, measured
):
    govern({"kind": "gpu_memory"})
    cpu = store_benchmark(bench_version, measured)
    [line] = lines(api, users, bench_version, "gpu_memory")
    assert line["status"] == "missing"
    assert line["detail"].startswith(
        f"GPU memory was not measured: the newest benchmark, run #{cpu.pk} on bench-1, ran on the CPU (No GPU"
    ), line["detail"]
    assert line["link"] == cpu.get_absolute_url()
    # a GPU benchmark counts, even when a CPU one ran after it
    gpu = store_benchmark(bench_version, on_gpu(measured, peak=GiB))
    newer_cpu = store_benchmark(bench_version, measured, host="bench-2")
    assert newer_cpu.finished_at >= gpu.finished_at
    [line] = lines(api, users, bench_version, "gpu_memory")
    assert line["status"] == "passed" and line["detail"].startswith(f"Run #{gpu.pk} on bench-1 ran on the GPU")


# --- stale evidence --------------------------------------------------------------------------------


def test_a_benchmark_of_another_artifact_no_longer_counts(api, users, govern, bench_version, measured):
    govern(latency(), {"kind": "gpu_memory"})
    run = store_benchmark(bench_version, on_gpu(measured, peak=GiB))
    assert [line["status"] for line in lines(api, users, bench_version, "latency")] == ["passed"]
    ModelVersion.objects.filter(pk=bench_version.pk).update(artifact_sha256="0" * 64)  # swapped behind Charter's back
    [slow] = lines(api, users, bench_version, "latency")
    [memory] = lines(api, users, bench_version, "gpu_memory")
    for line in (slow, memory):
        assert line["status"] == "missing", line
        assert f"Run #{run.pk} on bench-1 benchmarked an earlier artifact" in line["detail"], line["detail"]


def test_a_new_benchmark_after_the_approval_is_new_evidence(api, users, govern, bench_version, measured):
    govern(latency(p95_ms_max=10))
    store_benchmark(bench_version, with_p95(measured, b1=4.0))
    review = request(bench_version, users.author)
    decide(review, users.approver)
    gate_url = f"/api/v1/versions/{bench_version.pk}/gate/?environment=production"
    assert api.as_user(users.viewer).get(gate_url).json()["verdict"] == "pass"

    slower = store_benchmark(bench_version, with_p95(measured, b1=25.0))
    review.refresh_from_db()
    assert review.status == RequestStatus.OPEN and review.freeze == 2  # the evidence changed: frozen again
    body = api.as_user(users.viewer).get(gate_url).json()
    assert body["verdict"] == "fail"
    [line] = [line for line in body["gates"] if line["kind"] == "latency"]
    assert line["status"] == "failed" and line["detail"].startswith(f"Run #{slower.pk}: p95 25 ms")
    assert any(q["status"] == "missing" and "0 of 1" in q["detail"] for q in body["quorum"]), body["quorum"]


def test_an_evaluation_gate_on_benchmark_passes_once_one_ran(api, users, govern, bench_version, measured):
    govern({"kind": "evaluation", "evaluation": "benchmark"})
    [line] = lines(api, users, bench_version, "evaluation")
    assert line["status"] == "missing" and "No benchmark evaluation has succeeded" in line["detail"]
    run = store_benchmark(bench_version, measured)
    [line] = lines(api, users, bench_version, "evaluation")
    assert line["status"] == "passed" and line["detail"].startswith(f"Run #{run.pk} finished")


# --- policies name these gates now ----------------------------------------------------------------


def test_policies_accept_the_benchmark_gates_and_judge_changes_to_them(policy_api):
    rules = {"environments": ONE_APPROVER, "gates": [
        latency(batch_size=8, p95_ms_max=20),
        {"kind": "gpu_memory", "host_class": "gpu=h100", "headroom": 0.2},
        {"kind": "evaluation", "evaluation": "benchmark"},
    ]}  # fmt: skip
    created = policy_api.post("/api/v1/policies/", {"name": "Fit", "rules": rules}, format="json")
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    stored = created.json()["rules"]["gates"]
    assert stored[0]["batch_size"] == 8 and stored[1]["headroom"] == 0.2 and stored[1]["host_class"] == "gpu=h100"

    def patch(changes: dict):
        gates = copy.deepcopy(rules["gates"])
        for (index, key), value in changes.items():
            gates[index][key] = value
        return policy_api.patch(f"/api/v1/policies/{pk}/", {"rules": {**rules, "gates": gates}}, format="json")

    # more headroom, a lower p95 target: tighter, adopted at once
    tighter = patch({(1, "headroom"): 0.3, (0, "p95_ms_max"): 15})
    assert tighter.status_code == 200 and tighter.json()["revision"] == 2, tighter.content
    rules["gates"][1]["headroom"], rules["gates"][0]["p95_ms_max"] = 0.3, 15
    for changes, reason in (
        ({(1, "headroom"): 0.1}, "the gpu memory gate 'gpu=h100' was relaxed: GPU memory headroom lowered from 0.3 to 0.1."),
        ({(0, "p95_ms_max"): 30}, "the latency gate 'gpu=h100' at batch size 8 was relaxed: p95 latency maximum (ms) "
                                  "raised from 15 to 30."),
        ({(0, "batch_size"): 1}, "the latency gate 'gpu=h100' at batch size 8 was removed."),
        ({(1, "host_class"): "gpu=l4"}, "the gpu memory gate 'gpu=h100' was removed."),
    ):  # fmt: skip
        proposed = patch(changes)
        assert proposed.status_code == 202, proposed.content
        assert f"production: {reason}" in proposed.json()["pending_proposal"]["loosens"], proposed.json()
        assert Policy.objects.get(pk=pk).revision == 2
        PolicyRevision.objects.filter(policy_id=pk, state="proposed").delete()  # make way for the next one


@pytest.mark.parametrize(
    ("gate", "field"),
    [
        (latency(batch_size=0), "rules.gates.0.latency.batch_size"),
        (latency(batch_size=65_537), "rules.gates.0.latency.batch_size"),
        (latency(batch_size=1.0), "rules.gates.0.latency.batch_size"),
        ({"kind": "gpu_memory", "headroom": 0.95}, "rules.gates.0.gpu_memory.headroom"),
        ({"kind": "gpu_memory", "headroom": -0.1}, "rules.gates.0.gpu_memory.headroom"),
        ({"kind": "gpu_memory", "headroom": "0.2"}, "rules.gates.0.gpu_memory.headroom"),
        ({"kind": "gpu_memory", "host_class": ""}, "rules.gates.0.gpu_memory.host_class"),
    ],
)
def test_bad_benchmark_gate_fields_are_refused_with_the_field_named(policy_api, gate, field):
    before = (governed_state(), Policy.objects.count())
    r = policy_api.post("/api/v1/policies/", {"name": "Bad", "rules": {"environments": ONE_APPROVER, "gates": [gate]}},
                        format="json")  # fmt: skip
    body = assert_error(r, 400, "invalid_rules")
    assert field in body["fields"], body["fields"]
    assert (governed_state(), Policy.objects.count()) == before


def test_an_automatic_benchmark_is_still_refused_with_its_code(policy_api, login, superuser):
    rules = {"environments": ONE_APPROVER, "gates": [latency()], "auto_evaluations": ["performance", "benchmark"]}
    before = (governed_state(), Policy.objects.count())
    body = assert_error(policy_api.post("/api/v1/policies/", {"name": "Auto", "rules": rules}, format="json"), 400,
                        "auto_evaluation_not_runnable")  # fmt: skip
    assert set(body["fields"]) == {"rules.auto_evaluations.1"}
    assert "automatic 'benchmark' evaluation" in body["detail"] and "parameters.host" in body["detail"]
    assert (governed_state(), Policy.objects.count()) == before
    # the same rules without it are stored
    assert policy_api.post("/api/v1/policies/", {"name": "Auto", "rules": {**rules, "auto_evaluations": ["performance"]}},
                           format="json").status_code == 201  # fmt: skip


# --- rules.loosens on the new fields ------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        ({"kind": "gpu_memory"}, {"kind": "gpu_memory", "headroom": 0.3}, None),
        ({"kind": "gpu_memory", "headroom": 0.3}, {"kind": "gpu_memory"},
         "the gpu memory gate (any host) was relaxed: GPU memory headroom lowered from 0.3 to 0.2."),
        ({"kind": "gpu_memory"}, {"kind": "gpu_memory", "host_class": "gpu=h100"},
         "the gpu memory gate (any host) was removed."),
        (latency(), latency(batch_size=1), None),  # the default, spelled out
        (latency(), latency(batch_size=8), "the latency gate 'gpu=h100' was removed."),
        (latency(batch_size=8), latency(batch_size=8, p95_ms_max=500), None),
    ],
)  # fmt: skip
def test_loosens_judges_the_benchmark_gate_fields(old, new, reason):
    def doc(gate):
        return {"environments": ONE_APPROVER, "gates": [gate]}

    reasons = R.loosens(doc(old), doc(new))
    assert reasons == ([] if reason is None else [f"production: {reason}"])


def test_the_policy_form_names_the_automatic_benchmark_refusal(login, superuser):
    rules = {"environments": ONE_APPROVER, "gates": [], "auto_evaluations": ["benchmark"]}
    response = login(superuser).post(
        reverse("policy-create"), {"name": "Auto", "rules": json.dumps(rules), "description": "", "comment": ""}
    )
    assert response.status_code == 400
    assert escape("A 'benchmark' evaluation cannot run automatically") in response.content.decode()
    assert not Policy.objects.filter(name="Auto").exists()
