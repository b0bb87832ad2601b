"""A small fake Kubernetes API server for the KServe backend's tests (no cluster runs here).

It implements only what ``CustomObjectsApi`` sends for namespaced custom objects: list, get,
create, merge-patch and delete under ``/apis/<group>/<version>/namespaces/<ns>/<plural>``, with
``resourceVersion`` (checked when a patch or a delete precondition names one), ``generation``
(bumped when the spec changes) and Kubernetes ``Status`` bodies for errors. It keeps objects in
memory, records every request, lets a test set an object's status the way KServe's controller
would, answers Open Inference Protocol requests (``<any prefix>/v2/models/<model>/infer``) so the
URLs it puts in a status can be predicted against, and can fail the next request of a method.

With ``controller=True`` it also plays KServe's controller (Serverless mode, tag routing on): after
each write to an InferenceService it acts at once, as if every revision became ready instantly. A
change of ``spec.predictor.model`` makes a new revision; without ``canaryTrafficPercent`` the latest
revision takes all the traffic and becomes the last rolled-out one; with it, the latest revision takes
that share and the last rolled-out one the rest. The status gets ``observedGeneration``, a ``Ready``
condition, the revisions, the traffic with one tag URL per target and the service URL, all served by
this server: an inference request to one of those URLs is answered by the revision the URL routes to
(recorded in ``inferences``), with HTTP 500 when that revision's ``storageUri`` is in ``broken``.

It also plays the cluster's Prometheus scraping Knative's queue-proxy: ``GET /api/v1/query`` on the
same server answers instant queries of the one shape the KServe backend sends,
``sum by (<labels>) (<metric>{<label>="<value>", …})``, in Prometheus' response shape, over series
computed from ``inferences``: ``revision_request_count`` (labels ``namespace_name``,
``service_name``, ``configuration_name``, ``revision_name``, ``response_code``,
``response_code_class``) and the histogram ``revision_request_latencies`` in milliseconds
(``_bucket`` with ``le`` over ``LATENCY_BUCKETS_MS`` and ``+Inf``, ``_sum``, ``_count``). Each
inference takes the latency ``latency_ms`` sets for its revision (``default_latency_ms`` otherwise).
A query with no ``namespace_name`` matcher gets an empty vector (the driver must say which
namespace), any other shape Prometheus' ``bad_data`` error, and ``fail_next_query`` queues an error
answer.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubernetes import client as k8s

OBJECT_PATH = re.compile(
    r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?$"
)
INFER_PATH = re.compile(r"^(?P<prefix>.*)/v2/models/(?P<model>[^/]+)/infer$")
# The URLs the controller mode puts in an InferenceService's status: /kserve/<ns>/<name>[/<tag>]
ROUTED_PREFIX = "/kserve"
ROUTED_INFER_PATH = re.compile(
    r"^/kserve/(?P<ns>[^/]+)/(?P<name>[^/]+)(?:/(?P<tag>latest|prev))?/v2/models/(?P<model>[^/]+)/infer$"
)
PROMETHEUS_QUERY_PATH = "/api/v1/query"
PROMQL_SUM_BY = re.compile(
    r"^\s*sum\s+by\s*\((?P<by>[^)]*)\)\s*\(\s*(?P<metric>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(?P<matchers>[^}]*)\})?\s*\)\s*$"
)
PROMQL_MATCHER = re.compile(r'^\s*(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"(?P<value>[^"\\]*)"\s*$')
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)  # Knative-like, + "+Inf"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or None


@dataclass
class Failure:
    status: int
    message: str
    reason: str


@dataclass
class Infer:
    status: int = 200
    body: Any = field(
        default_factory=lambda: {"outputs": [{"name": "predict", "shape": [1], "datatype": "INT64", "data": [1]}]}
    )


@dataclass(frozen=True)
class Revision:
    name: str  # <isvc>-predictor-00001, as Knative numbers them
    model: dict  # spec.predictor.model it was made from
    storage_uri: str


@dataclass(frozen=True)
class Inference:
    """An inference request the controller's routing answered."""

    namespace: str
    service: str
    tag: str  # "latest", "prev", or "" for the service URL
    revision: str
    storage_uri: str
    status: int
    body: Any
    latency_ms: float = 0.0  # what the fake Prometheus counts for it


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class FakeKubernetes:
    def __init__(self, *, controller: bool = False) -> None:
        self.objects: dict[tuple[str, str, str], dict] = {}  # (namespace, plural, name) -> object
        self.controller = controller
        self.broken: set[str] = set()  # storage URIs whose revisions answer inference with HTTP 500
        self.inferences: list[Inference] = []
        # The latency each revision's inferences take (ms), for the fake Prometheus' histogram
        self.latency_ms: dict[str, float] = {}
        self.default_latency_ms = 5.0
        self.query_failures: list[tuple[int, str, str]] = []  # (HTTP status, errorType, error)
        # (namespace, name) -> the InferenceService's revisions, oldest first, and its last rolled-out one
        self._revisions: dict[tuple[str, str], list[Revision]] = {}
        self._rolled_out: dict[tuple[str, str], Revision] = {}
        self.requests: list[Request] = []
        self.failures: dict[str, list[Failure]] = {}
        self.infer = Infer()
        self._lock = threading.Lock()
        self._version = 0
        self._uid = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                parts = urlsplit(self.path)
                request = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                status, answer = fake._answer(request)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    # -- for tests -------------------------------------------------------------------------------

    def client(self) -> k8s.ApiClient:
        return k8s.ApiClient(k8s.Configuration(host=self.url))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, method: str, status: int, message: str, reason: str = "") -> None:
        self.failures.setdefault(method, []).append(Failure(status, message, reason or _REASONS.get(status, "Unknown")))

    def fail_next_query(self, status: int, error_type: str, error: str) -> None:
        """The next Prometheus query gets Prometheus' error body (``{"status": "error", …}``)."""
        self.query_failures.append((status, error_type, error))

    def queries(self) -> list[str]:
        """The PromQL of every Prometheus query received, in order."""
        return [
            (r.query.get("query") or [""])[0]
            for r in self.requests
            if r.path == PROMETHEUS_QUERY_PATH and r.method == "GET"
        ]

    def writes(self) -> list[Request]:
        """Requests that change something on the API server (not the inference ones)."""
        return [
            r for r in self.requests if r.method in ("POST", "PATCH", "PUT", "DELETE") and r.path.startswith("/apis/")
        ]

    def get(self, name: str, *, namespace: str, plural: str = "inferenceservices") -> dict | None:
        with self._lock:
            obj = self.objects.get((namespace, plural, name))
            return copy.deepcopy(obj) if obj is not None else None

    def put(self, obj: dict, *, plural: str = "inferenceservices") -> None:
        """Store an object as someone else (kubectl, another tool) would have created it."""
        with self._lock:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            meta.setdefault("generation", 1)
            meta["resourceVersion"] = self._next_version()
            self.objects[(meta["namespace"], plural, meta["name"])] = obj

    def set_status(
        self,
        name: str,
        *,
        namespace: str,
        ready: bool = True,
        message: str = "",
        url: str | None = None,
        traffic: list[dict] | None = None,
        latest_created: str | None = None,
        latest_ready: str | None = None,
        observed_generation: int | None = None,
        plural: str = "inferenceservices",
    ) -> None:
        """What KServe's controller would write: the Ready condition, the URL and the traffic."""
        with self._lock:
            obj = self.objects[(namespace, plural, name)]
            predictor: dict[str, Any] = {}
            if traffic is not None:
                predictor["traffic"] = copy.deepcopy(traffic)
            if latest_created:
                predictor["latestCreatedRevision"] = latest_created
            if latest_ready:
                predictor["latestReadyRevision"] = latest_ready
            condition = {"type": "Ready", "status": "True" if ready else "False"}
            if message:
                condition |= {"reason": "RevisionFailed", "message": message}
            status: dict[str, Any] = {
                "observedGeneration": obj["metadata"]["generation"]
                if observed_generation is None
                else observed_generation,
                "conditions": [condition],
                "components": {"predictor": predictor},
            }
            if url:
                status["url"] = url
            obj["status"] = status
            obj["metadata"]["resourceVersion"] = self._next_version()

    # -- the server ------------------------------------------------------------------------------

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def _answer(self, request: Request) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(request)
            queued = self.failures.get(request.method)
            if queued:
                failure = queued.pop(0)
                return failure.status, _status(failure.status, failure.reason, failure.message)
            if request.path == PROMETHEUS_QUERY_PATH:
                return self._prometheus_query(request)
            routed = ROUTED_INFER_PATH.match(request.path)
            if routed and request.method == "POST" and self.controller:
                return self._routed_infer(request, routed)
            infer = INFER_PATH.match(request.path)
            if infer and request.method == "POST":
                return self.infer.status, copy.deepcopy(self.infer.body)
            match = OBJECT_PATH.match(request.path)
            if not match:
                return 404, _status(404, "NotFound", "the server could not find the requested resource")
            ns, plural, name = match["ns"], match["plural"], match["name"]
            handler = {
                ("GET", False): self._list,
                ("GET", True): self._get,
                ("POST", False): self._create,
                ("PATCH", True): self._patch,
                ("DELETE", True): self._delete,
            }.get((request.method, name is not None))
            if handler is None:
                return 405, _status(405, "MethodNotAllowed", f"{request.method} is not supported here")
            return handler(request, ns, plural, name, match)

    def _list(self, request: Request, ns: str, plural: str, name: None, match: re.Match) -> tuple[int, Any]:
        wanted = dict(
            term.split("=", 1) for term in (request.query.get("labelSelector") or [""])[0].split(",") if "=" in term
        )
        items = [
            copy.deepcopy(obj)
            for (o_ns, o_plural, _), obj in sorted(self.objects.items())
            if o_ns == ns
            and o_plural == plural
            and all((obj["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
        ]
        kind = (items[0]["kind"] if items else "InferenceService") + "List"
        return 200, {
            "apiVersion": f"{match['group']}/{match['version']}",
            "kind": kind,
            "metadata": {"resourceVersion": str(self._version)},
            "items": items,
        }

    def _get(self, request: Request, ns: str, plural: str, name: str, match: re.Match) -> tuple[int, Any]:
        obj = self.objects.get((ns, plural, name))
        if obj is None:
            return 404, _status(404, "NotFound", f'{plural}.{match["group"]} "{name}" not found')
        return 200, copy.deepcopy(obj)

    def _create(self, request: Request, ns: str, plural: str, name: None, match: re.Match) -> tuple[int, Any]:
        obj = request.body
        if not isinstance(obj, dict) or not (obj.get("metadata") or {}).get("name"):
            return 422, _status(422, "Invalid", "metadata.name: Required value: name is required")
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        if meta.get("namespace", ns) != ns:
            return 400, _status(
                400, "BadRequest", "the namespace of the object does not match the namespace on the request"
            )
        key = (ns, plural, meta["name"])
        if key in self.objects:
            return 409, _status(409, "AlreadyExists", f'{plural}.{match["group"]} "{meta["name"]}" already exists')
        self._uid += 1
        meta |= {
            "namespace": ns,
            "uid": f"uid-{self._uid}",
            "generation": 1,
            "resourceVersion": self._next_version(),
            "creationTimestamp": "2024-01-01T00:00:00Z",
        }
        self.objects[key] = obj
        self._act_as_controller(ns, plural, meta["name"])
        return 201, copy.deepcopy(obj)

    def _patch(self, request: Request, ns: str, plural: str, name: str, match: re.Match) -> tuple[int, Any]:
        if request.headers.get("content-type", "").split(";")[0] != "application/merge-patch+json":
            return 415, _status(415, "UnsupportedMediaType", "only merge patches are served by this fake")
        obj = self.objects.get((ns, plural, name))
        if obj is None:
            return 404, _status(404, "NotFound", f'{plural}.{match["group"]} "{name}" not found')
        wanted = ((request.body or {}).get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != obj["metadata"]["resourceVersion"]:
            return 409, _status(
                409,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        patched = merge_patch(obj, request.body)
        patched["metadata"]["resourceVersion"] = self._next_version()
        if patched.get("spec") != obj.get("spec"):
            patched["metadata"]["generation"] = obj["metadata"]["generation"] + 1
        self.objects[(ns, plural, name)] = patched
        self._act_as_controller(ns, plural, name)
        return 200, copy.deepcopy(self.objects[(ns, plural, name)])

    def _delete(self, request: Request, ns: str, plural: str, name: str, match: re.Match) -> tuple[int, Any]:
        obj = self.objects.get((ns, plural, name))
        if obj is None:
            return 404, _status(404, "NotFound", f'{plural}.{match["group"]} "{name}" not found')
        wanted = ((request.body or {}).get("preconditions") or {}).get("resourceVersion")
        if wanted is not None and wanted != obj["metadata"]["resourceVersion"]:
            return 409, _status(409, "Conflict", "Precondition failed: ResourceVersion in precondition does not match")
        del self.objects[(ns, plural, name)]
        self._revisions.pop((ns, name), None)
        self._rolled_out.pop((ns, name), None)
        return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name}}

    # -- KServe's controller (controller=True) ---------------------------------------------------

    def _act_as_controller(self, ns: str, plural: str, name: str) -> None:
        """What KServe and Knative would write once the new revision is ready (called under the lock)."""
        if not self.controller or plural != "inferenceservices":
            return
        obj = self.objects[(ns, plural, name)]
        predictor = (obj.get("spec") or {}).get("predictor") or {}
        model = predictor.get("model") or {}
        revisions = self._revisions.setdefault((ns, name), [])
        if not revisions or revisions[-1].model != model:
            revisions.append(
                Revision(
                    f"{name}-predictor-{len(revisions) + 1:05d}", copy.deepcopy(model), model.get("storageUri", "")
                )
            )
        latest = revisions[-1]
        canary = predictor.get("canaryTrafficPercent")
        previous = self._rolled_out.get((ns, name))
        base = f"{self.url}{ROUTED_PREFIX}/{ns}/{name}"
        if canary is None or canary >= 100 or previous is None or previous == latest:
            # No canary (or nothing rolled out before it): the latest revision takes all the traffic.
            self._rolled_out[(ns, name)] = latest
            split = [(latest, "latest", True, 100)]
        else:
            split = [(latest, "latest", True, canary), (previous, "prev", False, 100 - canary)]
        traffic = [
            {"tag": tag, "revisionName": rev.name, "latestRevision": is_latest, "percent": percent,
             "url": f"{base}/{tag}"}
            for rev, tag, is_latest, percent in split
        ]  # fmt: skip
        obj["status"] = {
            "observedGeneration": obj["metadata"]["generation"],
            "url": base,
            "address": {"url": base},
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "PredictorReady", "status": "True"}],
            "components": {
                "predictor": {
                    "latestCreatedRevision": latest.name,
                    "latestReadyRevision": latest.name,
                    "latestRolledoutRevision": self._rolled_out[(ns, name)].name,
                    "traffic": traffic,
                    "url": base,
                }
            },
        }

    def _routed_infer(self, request: Request, match: re.Match) -> tuple[int, Any]:
        ns, name, tag = match["ns"], match["name"], match["tag"] or ""
        obj = self.objects.get((ns, "inferenceservices", name))
        if obj is None or match["model"] != name:
            return 404, {"error": f"Model {match['model']} not found"}
        targets = ((obj.get("status") or {}).get("components") or {}).get("predictor", {}).get("traffic") or []
        if tag:
            target = next((t for t in targets if t.get("tag") == tag), None)
        else:  # the service URL: the target with the larger share (a real split would be random)
            target = max(targets, key=lambda t: t.get("percent") or 0, default=None)
        if target is None or (tag == "" and not target.get("percent")):
            return 404, {"error": f"No route for {name}/{tag or '(service)'}"}
        revision = next(r for r in self._revisions[(ns, name)] if r.name == target["revisionName"])
        if revision.storage_uri in self.broken:
            status, body = 500, {"error": "the model raised an error"}
        else:
            status, body = self.infer.status, copy.deepcopy(self.infer.body)
        latency = self.latency_ms.get(revision.name, self.default_latency_ms)
        self.inferences.append(
            Inference(ns, name, tag, revision.name, revision.storage_uri, status, body, latency_ms=latency)
        )
        return status, body

    # -- the cluster's Prometheus ----------------------------------------------------------------

    def _prometheus_query(self, request: Request) -> tuple[int, Any]:
        if request.method != "GET":
            return 405, {"status": "error", "errorType": "bad_data", "error": "this fake answers GET only"}
        if self.query_failures:
            status, error_type, error = self.query_failures.pop(0)
            return status, {"status": "error", "errorType": error_type, "error": error}
        query = (request.query.get("query") or [""])[0]
        match = PROMQL_SUM_BY.match(query)
        matchers = [m for m in (match["matchers"] or "").split(",") if m.strip()] if match else []
        parsed = [PROMQL_MATCHER.match(m) for m in matchers]
        if match is None or not all(parsed):
            return 400, {
                "status": "error",
                "errorType": "bad_data",
                "error": f'this fake answers only sum by (...) (metric{{label="value", ...}}), not {query!r}',
            }
        wanted = {m["label"]: m["value"] for m in parsed}
        by = [label.strip() for label in match["by"].split(",") if label.strip()]
        groups: dict[tuple[tuple[str, str], ...], float] = {}
        if "namespace_name" in wanted:  # every series is some namespace's: the driver must say whose
            for labels, value in self._series(match["metric"]):
                if all(labels.get(k) == v for k, v in wanted.items()):
                    key = tuple((label, labels[label]) for label in by if label in labels)
                    groups[key] = groups.get(key, 0.0) + value
        now = time.time()
        result = [{"metric": dict(key), "value": [now, _prom_number(value)]} for key, value in sorted(groups.items())]
        return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}

    def _series(self, metric: str) -> list[tuple[dict[str, str], float]]:
        """Knative queue-proxy series (one pod per revision) from the inferences routed so far."""
        per: dict[tuple[str, str, str, int], list[float]] = {}  # (ns, service, revision, status) -> latencies
        for inference in self.inferences:
            key = (inference.namespace, inference.service, inference.revision, inference.status)
            per.setdefault(key, []).append(inference.latency_ms)
        series: list[tuple[dict[str, str], float]] = []
        for (ns, service, revision, status), latencies in sorted(per.items()):
            labels = {
                "namespace_name": ns,
                "service_name": f"{service}-predictor",
                "configuration_name": f"{service}-predictor",
                "revision_name": revision,
                "pod_name": f"{revision}-deployment-0",
                "response_code": str(status),
                "response_code_class": f"{status // 100}xx",
            }
            if metric == "revision_request_count":
                series.append((labels, float(len(latencies))))
            elif metric == "revision_request_latencies_sum":
                series.append((labels, float(sum(latencies))))
            elif metric == "revision_request_latencies_count":
                series.append((labels, float(len(latencies))))
            elif metric == "revision_request_latencies_bucket":
                for bound in LATENCY_BUCKETS_MS:
                    series.append((labels | {"le": str(bound)}, float(sum(1 for x in latencies if x <= bound))))
                series.append((labels | {"le": "+Inf"}, float(len(latencies))))
        return series


_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    422: "Invalid",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def _prom_number(value: float) -> str:
    """A sample value as Prometheus writes it ("12", "0.5", "+Inf")."""
    if value == float("inf"):
        return "+Inf"
    return f"{value:.15g}"


def _status(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
