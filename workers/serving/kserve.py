"""The KServe backend: one ``InferenceService`` (``serving.kserve.io/v1beta1``) per endpoint.

Each Charter endpoint (``release.endpoint``, e.g. ``credit-risk``) is one InferenceService of that
name in the configured namespace, driven with the official ``kubernetes`` client
(``CustomObjectsApi``). KServe, unlike MLServer, keeps at most two releases routable per endpoint:
the one in the InferenceService's spec (KServe's *latest* revision) and, while a canary runs, the
last revision that was rolled out with 100% of the traffic (KServe's ``LatestRolledoutRevision``,
tagged ``prev``). Older releases are not "still loaded": their Knative revisions get no route.

How a release reaches the cluster (the storage seam)
----------------------------------------------------
KServe's storage initializer pulls the model from a ``storageUri``; the bytes Charter verified are
a local file. The backend therefore takes

- ``storage_uri``: a template of the *directory* a release's artifact goes to, with ``{sha256}``
  (required: content-addressed, so a release never overwrites another one and a re-upload after a
  crash writes the same bytes to the same place) and optionally ``{endpoint}`` and ``{name}``,
  e.g. ``s3://models/charter/{sha256}`` or ``pvc://charter-models/{sha256}``;
- ``uploader(source, uri, sha256)``: puts the local file ``source`` at ``uri`` (the directory
  joined with the file name the runtime expects, e.g. ``model.joblib``) and makes sure the bytes
  stored there have ``sha256``. Object stores (S3, GCS, …) bring their own uploader; none ships
  here. For a ``pvc://<claim>/<path>`` template, pass ``pvc_mount`` (where that claim is mounted
  on the worker) and the default :class:`CopyToDirectory` uploader copies the file into
  ``<pvc_mount>/<path>/`` (temporary file, fsync, rename; skipped when the same bytes are there).

Which formats
-------------
``spec.predictor.model.modelFormat.name`` picks the cluster's runtime from the artifact format, with
``protocolVersion: v2`` so every release answers the Open Inference Protocol:
``sklearn-joblib`` → ``sklearn`` (``model.joblib``), ``xgboost`` → ``xgboost`` (``model.json`` or
``model.ubj``), ``lightgbm`` → ``lightgbm`` (``model.bst``), ``onnx`` → ``onnx`` (``model.onnx``).
``skops``, ``pickle`` (any Python object, not necessarily an estimator) and ``other`` are left
out of ``capabilities().formats``: no stock KServe runtime loads them.

What each action does to the InferenceService
---------------------------------------------
Charter records on the InferenceService (annotations ``charter.dev/…``, changed only together
with ``storageUri``) which release and sha256 its spec holds and, during a canary, which release
serves the rest of the traffic (the *stable* one), so ``status()`` can tell the revisions apart.

- ``deploy``: create the InferenceService, or point ``storageUri`` at the release with no
  ``canaryTrafficPercent``: once its revision is ready it takes 100% (Knative keeps routing to the
  latest ready revision until then).
- ``set_traffic``: ``storageUri`` at the canary and ``canaryTrafficPercent: percent``; KServe gives
  the rest to the last rolled-out revision, which must be ``stable``'s.
- ``promote``: ``canaryTrafficPercent: null`` (removed, per the KServe docs).
- ``rollback(to, current)``: while ``current`` is an unpromoted canary next to ``to``,
  ``canaryTrafficPercent: 0`` (the KServe docs' rollback: all traffic back to the last rolled-out
  revision, at once, nothing restarted). Once ``current`` has been promoted, 0 would pin the traffic
  to ``current`` itself (it *is* the last rolled-out revision), so the backend instead points
  ``storageUri`` back at ``to`` with no canary: a new revision of ``to`` that takes the traffic
  when ready, ``current`` serving until then.
- ``undeploy``: delete the InferenceService when the release serves all of it; when the release is
  an unpromoted canary, point the spec back at the stable release with ``canaryTrafficPercent: 0``
  (no traffic moves); a release the endpoint no longer routes to is a no-op. Undeploying the stable
  release while a canary takes part of the traffic is refused: promote or roll back first.

Knative routes "latest" traffic to the latest *ready* revision, so whenever the spec changes
without a canary (``deploy``, a rollback after promotion) the release the spec held before keeps
answering until the new revision is ready. Every write is a JSON merge patch carrying the
``resourceVersion`` it was decided on; a conflict with another writer re-reads and decides again.
Canary traffic needs KServe's Serverless mode (Knative): pass ``traffic_split=False`` for a
RawDeployment cluster and ``set_traffic`` is refused.

Reading
-------
``status()`` lists every InferenceService in the namespace (Charter's or not, for drift): ready from
the ``Ready`` condition (false while ``status.observedGeneration`` lags the spec or the latest
created revision is not the latest ready one), shares from ``status.components.predictor.traffic``.
``predict(name)`` posts the Open Inference Protocol request to ``<url>/v2/models/<endpoint>/infer``,
``url`` being the release's own tag URL where KServe reports one (tag routing is switched on for
every InferenceService Charter creates) or ``status.url`` when the release takes all the traffic;
with ``ingress_url`` the request goes to the ingress with the service's ``Host`` header. A release
whose revision is not ready is refused rather than answered by an older one. ``from_settings``
builds a backend from a stored backend row (API server URL, settings, a bearer token or a kubeconfig).

Request figures (``metrics()``) come from the cluster's Prometheus, which scrapes Knative's
queue-proxy next to every predictor pod (Serverless mode); without ``prometheus_url`` (the base of
its HTTP API: ``<prometheus_url>/api/v1/query``) ``metrics()`` is empty and
``capabilities().metrics`` false. It lists the namespace's InferenceServices as ``status()`` does and
names the Knative revisions each Charter-managed one routes to
(``status.components.predictor.traffic``): the ``latestRevision`` target is the release the spec
holds, the other one the recorded stable release. A target whose revision is not certainly that
release's is left out: the latest one while the status lags the spec or while an older revision
still answers for the spec's (``latestCreatedRevision`` not ready), and every revision Charter has
no record of. Three instant queries, each ``sum by (revision_name, …)`` over the series with
``namespace_name="<namespace>"``, read the request counter (``request_count_metric``, default
``revision_request_count``, its ``response_code_class`` "5xx" counted as errors) and the latency
histogram in milliseconds (``request_latency_metric``, default ``revision_request_latencies``:
``_bucket`` by ``le`` and ``_sum``); a release gets the sum over its revisions, in seconds, with
``+Inf`` as ``float("inf")``, and zeros while its revision has served nothing. The counters are
summed over the pods Prometheus still has series for: a pod that scales away takes its counts with
it, which a reader sees as a counter reset. An unreachable Prometheus is ``Unreachable``; an error
it answers, or an answer that is not its JSON, a ``ServingError`` (``metrics_failed``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from workers.serving.backend import (
    Backend,
    Capabilities,
    Loaded,
    Release,
    ServingError,
    Stats,
    Unreachable,
    Unsupported,
)

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
KIND = "InferenceService"

PREFIX = "charter.dev/"
MANAGED_BY = ("app.kubernetes.io/managed-by", "charter")
A_RELEASE = PREFIX + "release"
A_SHA = PREFIX + "sha256"
A_FORMAT = PREFIX + "artifact-format"
A_STABLE = PREFIX + "stable-release"
A_STABLE_SHA = PREFIX + "stable-sha256"
A_STABLE_FORMAT = PREFIX + "stable-artifact-format"
A_STABLE_URI = PREFIX + "stable-storage-uri"
L_ENDPOINT = PREFIX + "endpoint"
L_RELEASE = PREFIX + "release"
# Per-tag URLs (``latest-…``, ``prev-…``) in status.components.predictor.traffic, so that
# predict() can reach one release of a canary pair on its own.
TAG_ROUTING = ("serving.kserve.io/enable-tag-routing", "true")

# artifact format -> (KServe modelFormat, file name the runtime looks for)
FORMATS: dict[str, tuple[str, str]] = {
    "sklearn-joblib": ("sklearn", "model.joblib"),
    "xgboost": ("xgboost", "model.json"),
    "lightgbm": ("lightgbm", "model.bst"),
    "onnx": ("onnx", "model.onnx"),
}

# KServe's own rule for InferenceService names (a DNS-1035 label: a letter first); Knative derives
# revision names ``<name>-predictor-00001`` that must stay a 63-character label value.
ENDPOINT_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
ENDPOINT_MAX = 63 - len("-predictor-00001")
NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
SHA_RE = re.compile(r"^[0-9a-f]{64}$")
CONFLICT_RETRIES = 3

# Knative's queue-proxy metrics as Prometheus names them (the defaults of request_count_metric and
# request_latency_metric); their labels namespace_name, revision_name, response_code_class and le
# are Knative's own and not settings.
REQUEST_COUNT_METRIC = "revision_request_count"
REQUEST_LATENCY_METRIC = "revision_request_latencies"  # a histogram in milliseconds
METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
PROMETHEUS_QUERY_PATH = "/api/v1/query"

Uploader = Callable[[Path, str, str], None]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class CopyToDirectory:
    """The default uploader for ``pvc://<claim>/<path>`` URIs: copies into ``<root>/<path>``,
    ``root`` being where the claim is mounted on the worker."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def target(self, uri: str) -> Path:
        parts = urlsplit(uri)
        relative = Path(parts.path.lstrip("/"))
        if parts.scheme != "pvc" or ".." in relative.parts or not relative.parts:
            raise ServingError(f"{uri} is not a pvc:// path inside the claim.", code="backend_misconfigured")
        return self.root / relative

    def __call__(self, source: Path, uri: str, sha256: str) -> None:
        target = self.target(uri)
        if target.is_file() and _sha256(target) == sha256:
            return
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
            digest = hashlib.sha256()
            try:
                with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                    for chunk in iter(lambda: src.read(1 << 20), b""):
                        digest.update(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                if digest.hexdigest() != sha256:
                    raise ServingError(
                        f"The artifact changed while it was copied to {uri}; nothing was deployed.",
                        code="artifact_digest_mismatch",
                    )
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError as e:
            raise ServingError(
                f"The artifact could not be copied to {uri} ({type(e).__name__}).", code="storage_failed"
            ) from e


def _api_message(e: ApiException) -> str:
    try:
        message = json.loads(e.body or "").get("message") or ""
    except (ValueError, AttributeError):
        message = ""
    return (message or e.reason or "no message")[:500]


class KServeBackend(Backend):
    kind = "kserve"

    def __init__(
        self,
        namespace: str,
        *,
        storage_uri: str,
        uploader: Uploader | None = None,
        pvc_mount: str | os.PathLike[str] | None = None,
        api_client: k8s.ApiClient | None = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        in_cluster: bool = False,
        ingress_url: str | None = None,
        service_account: str | None = None,
        traffic_split: bool = True,
        request_timeout: float = 10.0,
        prometheus_url: str | None = None,
        request_count_metric: str = REQUEST_COUNT_METRIC,
        request_latency_metric: str = REQUEST_LATENCY_METRIC,
    ):
        if not isinstance(namespace, str) or len(namespace) > 63 or not NAMESPACE_RE.match(namespace):
            raise ServingError(f"{namespace!r} is not a Kubernetes namespace name.", code="backend_misconfigured")
        if "{sha256}" not in storage_uri:
            raise ServingError(
                "The KServe storage URI must contain {sha256}, so that releases never overwrite each other.",
                code="backend_misconfigured",
            )
        try:
            storage_uri.format(sha256="0", endpoint="e", name="n")
        except (KeyError, IndexError, ValueError) as e:
            raise ServingError(
                "The KServe storage URI may only use {sha256}, {endpoint} and {name}.", code="backend_misconfigured"
            ) from e
        if uploader is None:
            if urlsplit(storage_uri).scheme == "pvc" and pvc_mount:
                uploader = CopyToDirectory(pvc_mount)
            else:
                raise ServingError(
                    "The KServe backend needs an uploader for this storage URI, or a pvc:// URI and the "
                    "local path where that claim is mounted.",
                    code="backend_misconfigured",
                )
        for setting, metric in (
            ("request_count_metric", request_count_metric),
            ("request_latency_metric", request_latency_metric),
        ):
            if not isinstance(metric, str) or not METRIC_NAME_RE.match(metric):
                raise ServingError(
                    f"{setting} must be a Prometheus metric name (letters, digits, '_' and ':'), not {metric!r}.",
                    code="backend_misconfigured",
                )
        self.namespace = namespace
        self.prometheus_url = _prometheus_base(prometheus_url) if prometheus_url else None
        self.request_count_metric = request_count_metric
        self.request_latency_metric = request_latency_metric
        self.storage_uri = storage_uri
        self.uploader = uploader
        self.ingress_url = ingress_url.rstrip("/") if ingress_url else None
        self.service_account = service_account
        self.traffic_split = traffic_split
        self.timeout = request_timeout
        if api_client is None:
            try:
                if in_cluster:
                    configuration = k8s.Configuration()
                    k8s_config.load_incluster_config(client_configuration=configuration)
                    api_client = k8s.ApiClient(configuration)
                else:
                    api_client = k8s_config.new_client_from_config(config_file=kubeconfig, context=context)
            except (ConfigException, OSError) as e:
                raise ServingError(
                    f"The Kubernetes connection settings could not be loaded ({type(e).__name__}).",
                    code="backend_misconfigured",
                ) from e
        self.api = k8s.CustomObjectsApi(api_client)
        self.host = api_client.configuration.host

    SETTINGS = frozenset(
        {
            "namespace", "storage_uri", "pvc_mount", "ingress_url", "service_account", "traffic_split",
            "request_timeout", "context", "ca_cert", "insecure_skip_tls_verify", "prometheus_url",
            "request_count_metric", "request_latency_metric",
        }
    )  # fmt: skip

    @classmethod
    def from_settings(cls, *, url: str, config: dict[str, Any], credentials: str = "") -> KServeBackend:
        """A backend from a stored backend row: ``url`` is the Kubernetes API server; ``config`` holds
        ``namespace`` and ``storage_uri`` (required) and optionally ``pvc_mount``, ``ingress_url``,
        ``service_account``, ``traffic_split``, ``request_timeout``, ``ca_cert`` (PEM),
        ``insecure_skip_tls_verify`` (both for the API server only), ``prometheus_url``,
        ``request_count_metric`` and ``request_latency_metric``; ``credentials`` is a bearer token
        or a whole kubeconfig (optionally with ``context``), whose cluster must be ``url``."""
        unknown = sorted(set(config) - cls.SETTINGS)
        if unknown:
            raise ServingError(f"Unknown KServe settings: {', '.join(unknown)}.", code="backend_misconfigured")
        for required in ("namespace", "storage_uri"):
            if not isinstance(config.get(required), str) or not config[required]:
                raise ServingError(
                    f"The KServe backend needs {required} in its settings.", code="backend_misconfigured"
                )
        configuration = k8s.Configuration(host=url.rstrip("/"))
        text = (credentials or "").strip()
        try:
            parsed = yaml.safe_load(text) if text else None
        except yaml.YAMLError:
            parsed = None
        if isinstance(parsed, dict) and "clusters" in parsed:  # a kubeconfig
            try:
                k8s_config.load_kube_config_from_dict(
                    parsed, context=config.get("context"), client_configuration=configuration
                )
            except (ConfigException, AttributeError, TypeError, KeyError, ValueError) as e:
                raise ServingError(
                    f"The stored kubeconfig could not be used ({type(e).__name__}).", code="backend_misconfigured"
                ) from e
            if configuration.host.rstrip("/") != url.rstrip("/"):
                raise ServingError(
                    f"The backend's URL is {url} but its kubeconfig points at {configuration.host}.",
                    code="backend_misconfigured",
                )
        elif text:
            if any(c.isspace() for c in text):
                raise ServingError(
                    "The KServe credentials must be a bearer token or a kubeconfig.", code="backend_misconfigured"
                )
            configuration.api_key = {"BearerToken": text}
            configuration.api_key_prefix = {"BearerToken": "Bearer"}
        try:
            timeout = float(config.get("request_timeout", 10.0))
        except (TypeError, ValueError):
            raise ServingError("request_timeout must be a number of seconds.", code="backend_misconfigured") from None
        if config.get("ca_cert"):
            configuration.ca_cert_data = config["ca_cert"]
        if config.get("insecure_skip_tls_verify"):
            configuration.verify_ssl = False
        return cls(
            config["namespace"],
            storage_uri=config["storage_uri"],
            pvc_mount=config.get("pvc_mount"),
            api_client=k8s.ApiClient(configuration),
            ingress_url=config.get("ingress_url"),
            service_account=config.get("service_account"),
            traffic_split=bool(config.get("traffic_split", True)),
            request_timeout=timeout,
            prometheus_url=config.get("prometheus_url") or None,
            request_count_metric=config.get("request_count_metric", REQUEST_COUNT_METRIC),
            request_latency_metric=config.get("request_latency_metric", REQUEST_LATENCY_METRIC),
        )

    # -- the interface ---------------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        return Capabilities(
            traffic_split=self.traffic_split, formats=frozenset(FORMATS), metrics=self.prometheus_url is not None
        )

    def deploy(self, release: Release) -> None:
        self._check(release, loadable=True)

        def decide(isvc: dict | None) -> dict | None:
            if isvc is None:
                return self._manifest(release)
            if _serves_all(isvc, release):
                return None
            return self._point_at(release, canary=None)

        self._mutate(release.endpoint, decide, upload=release)

    def set_traffic(self, release: Release, *, percent: int, stable: Release) -> None:
        if not self.traffic_split:
            raise Unsupported("This KServe cluster runs without Knative (RawDeployment): it cannot split traffic.")
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise ServingError(f"A canary share must be a whole percentage, not {percent!r}.", code="invalid_traffic")
        self._check(release, loadable=True)
        self._check(stable)
        if stable.endpoint != release.endpoint or _identity(stable) == _identity(release):
            raise ServingError(
                "A canary and its stable release must be two releases of the same endpoint.", code="invalid_traffic"
            )

        def decide(isvc: dict | None) -> dict | None:
            serving = _stable_of(isvc) if isvc is not None else None
            if serving != _identity(stable):
                raise ServingError(
                    f"Endpoint {release.endpoint} is served by {serving[0] if serving else 'nothing'}, not "
                    f"{stable.name}; a canary needs {stable.name} rolled out first.",
                    code="stable_mismatch",
                )
            if _latest_of(isvc) == _identity(release):
                if _canary(isvc) == percent:
                    return None
                return {"spec": {"predictor": {"canaryTrafficPercent": percent}}}
            patch = self._point_at(release, canary=percent)
            patch["metadata"]["annotations"] |= _stable_record(isvc)
            return patch

        self._mutate(release.endpoint, decide, upload=release)

    def promote(self, release: Release) -> None:
        self._check(release)

        def decide(isvc: dict | None) -> dict | None:
            if isvc is None or _latest_of(isvc) != _identity(release):
                raise ServingError(
                    f"{release.name} is not the canary of endpoint {release.endpoint}; nothing to promote.",
                    code="not_canary",
                )
            if _canary(isvc) is None:
                return None
            return {"spec": {"predictor": {"canaryTrafficPercent": None}}}

        self._mutate(release.endpoint, decide)

    def rollback(self, to: Release, *, current: Release) -> None:
        self._check(to, loadable=True)
        self._check(current)

        def decide(isvc: dict | None) -> dict | None:
            if isvc is None:
                return self._manifest(to)
            canary = _canary(isvc)
            if canary is not None and canary < 100 and _latest_of(isvc) == _identity(current):
                if _stable_of(isvc) == _identity(to):
                    # An unpromoted canary: KServe's own rollback, all traffic to the last rolled-out revision.
                    return None if canary == 0 else {"spec": {"predictor": {"canaryTrafficPercent": 0}}}
            if _serves_all(isvc, to):
                return None
            # ``current`` was promoted (or ``to`` is older than the last rolled-out revision): 0 would pin
            # the traffic to ``current`` itself, so ``to`` comes back as a new revision.
            return self._point_at(to, canary=None)

        self._mutate(to.endpoint, decide, upload=to)

    def undeploy(self, release: Release) -> None:
        self._check(release)

        def decide(isvc: dict | None) -> dict | str | None:
            if isvc is None:
                return None
            if _serves_all(isvc, release):
                return DELETE
            me, latest, stable, canary = _identity(release), _latest_of(isvc), _stable_of(isvc), _canary(isvc)
            if canary is not None and canary < 100 and me == latest and stable not in (None, me):
                # The canary goes; the spec points back at the stable release, which keeps all the traffic.
                return _point_at_recorded_stable(isvc)
            if canary is not None and 0 < canary < 100 and me == stable:
                raise ServingError(
                    f"{release.name} still serves {100 - canary}% of endpoint {release.endpoint} next to the "
                    f"canary {latest[0]}; promote or roll back the canary first.",
                    code="release_in_use",
                )
            return None

        self._mutate(release.endpoint, decide, undeploying=True)

    def status(self) -> list[Loaded]:
        listing = self._call("list")
        loaded: list[Loaded] = []
        for isvc in listing.get("items") or []:
            loaded.extend(_loaded(isvc))
        return loaded

    def predict(self, name: str, payload: dict[str, Any], *, timeout: float = 10.0) -> dict[str, Any]:
        try:
            listing = self._call("list")
        except ServingError as e:
            raise ServingError(e.message, code="predict_failed") from e
        for isvc in listing.get("items") or []:
            if _managed(isvc) and name in _names(isvc):
                url = _predict_url(isvc, name)
                endpoint = isvc["metadata"]["name"]
                break
        else:
            raise ServingError(f"No InferenceService in {self.namespace} serves {name}.", code="predict_failed")
        target = f"{url.rstrip('/')}/v2/models/{endpoint}/infer"
        headers = {}
        if self.ingress_url:
            parts = urlsplit(target)
            headers["Host"] = parts.netloc
            target = self.ingress_url + parts.path
        try:
            response = requests.post(target, json=payload, headers=headers, timeout=timeout)
        except requests.RequestException as e:
            raise ServingError(
                f"{name} could not be reached at {urlsplit(target).netloc} ({type(e).__name__}).", code="predict_failed"
            ) from e
        if response.status_code != 200:
            # The body may echo the input rows: the status code is all that is kept.
            raise ServingError(
                f"{name} answered HTTP {response.status_code} to an inference request.", code="predict_failed"
            )
        try:
            body = response.json()
        except ValueError as e:
            raise ServingError(
                f"{name} answered an inference request with something other than JSON.", code="predict_failed"
            ) from e
        if not isinstance(body, dict):
            raise ServingError(
                f"{name} answered an inference request with a JSON {type(body).__name__}.", code="predict_failed"
            )
        return body

    def metrics(self) -> dict[str, Stats]:
        if self.prometheus_url is None:
            return {}
        releases: dict[str, str] = {}  # Knative revision -> Charter release
        for isvc in self._call("list").get("items") or []:
            releases |= _revision_releases(isvc)
        if not releases:
            return {}
        selector = f'{{namespace_name="{self.namespace}"}}'  # a validated namespace: nothing to escape
        count, latency = self.request_count_metric, self.request_latency_metric
        with requests.Session() as session:
            counts = self._query(session, f"sum by (revision_name, response_code_class) ({count}{selector})")
            buckets = self._query(session, f"sum by (revision_name, le) ({latency}_bucket{selector})")
            sums = self._query(session, f"sum by (revision_name) ({latency}_sum{selector})")
        figures = {name: {"requests": 0.0, "errors": 0.0, "sum_ms": 0.0, "buckets": {}} for name in releases.values()}
        for labels, value in counts:
            release = releases.get(labels.get("revision_name", ""))
            if release is not None:
                figures[release]["requests"] += value
                if labels.get("response_code_class") == "5xx":
                    figures[release]["errors"] += value
        for labels, value in sums:
            release = releases.get(labels.get("revision_name", ""))
            if release is not None:
                figures[release]["sum_ms"] += value
        for labels, value in buckets:
            release = releases.get(labels.get("revision_name", ""))
            try:
                bound = float(labels.get("le", "")) / 1000
            except ValueError:
                continue
            if release is not None and not math.isnan(bound):
                into = figures[release]["buckets"]
                into[bound] = into.get(bound, 0.0) + value
        return {
            name: Stats(
                name=name,
                requests=round(f["requests"]),
                errors=round(f["errors"]),
                duration_seconds_sum=f["sum_ms"] / 1000,
                buckets={bound: round(n) for bound, n in sorted(f["buckets"].items())},
            )
            for name, f in figures.items()
        }

    def _query(self, session: requests.Session, query: str) -> list[tuple[dict[str, str], float]]:
        """One Prometheus instant query: the (labels, value) of each sample of its vector."""
        where = _public(self.prometheus_url)
        try:
            response = session.get(
                self.prometheus_url + PROMETHEUS_QUERY_PATH, params={"query": query}, timeout=self.timeout
            )
        except requests.RequestException as e:
            raise Unreachable(f"Prometheus at {where} cannot be reached ({type(e).__name__}).") from e
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            if response.status_code in (502, 503, 504):
                raise Unreachable(f"Prometheus at {where} did not answer (HTTP {response.status_code}).")
            raise ServingError(
                f"Prometheus at {where} answered HTTP {response.status_code} with something other than its JSON.",
                code="metrics_failed",
            )
        if body.get("status") != "success":
            error = f"{body.get('errorType') or 'error'}: {body.get('error') or 'no message'}"
            raise ServingError(
                f"Prometheus at {where} refused the request-figures query (HTTP {response.status_code}): "
                f"{str(error)[:300]}",
                code="metrics_failed",
            )
        data = body.get("data")
        result = data.get("result") if isinstance(data, dict) else None
        if not isinstance(data, dict) or data.get("resultType") != "vector" or not isinstance(result, list):
            raise ServingError(
                f"Prometheus at {where} answered the request-figures query with no instant vector.",
                code="metrics_failed",
            )
        samples = []
        for sample in result:
            try:
                labels, (_, text) = sample["metric"], sample["value"]
                value = float(text)
            except (KeyError, TypeError, ValueError) as e:
                raise ServingError(
                    f"Prometheus at {where} answered the request-figures query with a malformed sample.",
                    code="metrics_failed",
                ) from e
            if isinstance(labels, dict) and math.isfinite(value):
                samples.append(({str(k): str(v) for k, v in labels.items()}, value))
        return samples

    # -- manifests -------------------------------------------------------------------------------

    def _check(self, release: Release, *, loadable: bool = False) -> None:
        """Refuse names KServe cannot take; with ``loadable``, formats no runtime of it loads."""
        if (
            not isinstance(release.endpoint, str)
            or len(release.endpoint) > ENDPOINT_MAX
            or not ENDPOINT_RE.match(release.endpoint)
        ):
            raise ServingError(
                f"{release.endpoint!r} cannot name a KServe InferenceService: use at most {ENDPOINT_MAX} lower-case "
                "letters, digits and hyphens, starting with a letter and ending with a letter or digit.",
                code="invalid_name",
            )
        if not isinstance(release.name, str) or not LABEL_VALUE_RE.match(release.name):
            raise ServingError(
                f"{release.name!r} cannot label a KServe InferenceService: use at most 63 letters, digits, '-', '_' "
                "and '.', starting and ending with a letter or digit.",
                code="invalid_name",
            )
        if not SHA_RE.match(release.sha256 or ""):
            raise ServingError(f"{release.name}: the sha256 must be 64 lower-case hex digits.", code="invalid_name")
        if loadable and release.artifact_format not in FORMATS:
            raise Unsupported(
                f"KServe's stock runtimes cannot load {release.artifact_format!r} artifacts; it serves "
                f"{', '.join(sorted(FORMATS))}."
            )

    def _directory(self, release: Release) -> str:
        return self.storage_uri.format(sha256=release.sha256, endpoint=release.endpoint, name=release.name).rstrip("/")

    def _file_name(self, release: Release) -> str:
        name = FORMATS[release.artifact_format][1]
        if release.artifact_format == "xgboost" and Path(release.artifact_path).suffix == ".ubj":
            name = "model.ubj"
        return name

    def _upload(self, release: Release) -> None:
        source = Path(release.artifact_path)
        if not source.is_file():
            raise ServingError(f"The artifact of {release.name} is not a file here.", code="artifact_unreadable")
        self.uploader(source, f"{self._directory(release)}/{self._file_name(release)}", release.sha256)

    def _model(self, release: Release) -> dict:
        return {
            "modelFormat": {"name": FORMATS[release.artifact_format][0]},
            "protocolVersion": "v2",
            "storageUri": self._directory(release),
        }

    def _manifest(self, release: Release) -> dict:
        predictor: dict[str, Any] = {"model": self._model(release)}
        if self.service_account:
            predictor["serviceAccountName"] = self.service_account
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {
                "name": release.endpoint,
                "namespace": self.namespace,
                "labels": {MANAGED_BY[0]: MANAGED_BY[1], L_ENDPOINT: release.endpoint, L_RELEASE: release.name},
                "annotations": {
                    A_RELEASE: release.name,
                    A_SHA: release.sha256,
                    A_FORMAT: release.artifact_format,
                    TAG_ROUTING[0]: TAG_ROUTING[1],
                },
            },
            "spec": {"predictor": predictor},
        }

    def _point_at(self, release: Release, *, canary: int | None) -> dict:
        """A merge patch: the spec serves ``release`` with ``canaryTrafficPercent`` ``canary`` (None
        removes it); no stable release recorded (the caller adds one for a canary)."""
        return {
            "metadata": {
                "labels": {L_RELEASE: release.name},
                "annotations": {
                    A_RELEASE: release.name,
                    A_SHA: release.sha256,
                    A_FORMAT: release.artifact_format,
                    A_STABLE: None,
                    A_STABLE_SHA: None,
                    A_STABLE_FORMAT: None,
                    A_STABLE_URI: None,
                },
            },
            "spec": {"predictor": {"model": self._model(release), "canaryTrafficPercent": canary}},
        }

    # -- the API ---------------------------------------------------------------------------------

    def _mutate(
        self,
        endpoint: str,
        decide: Callable[[dict | None], dict | str | None],
        *,
        upload: Release | None = None,
        undeploying: bool = False,
    ) -> None:
        """Read the endpoint's InferenceService, let ``decide`` say what to write (a manifest to
        create, a merge patch, ``DELETE`` or nothing), and write it on the resourceVersion it was
        decided on; decide again when another writer got there first."""
        for attempt in range(CONFLICT_RETRIES):
            isvc = self._get(endpoint)
            if isvc is not None and (not _managed(isvc) or isvc["metadata"].get("deletionTimestamp")):
                if undeploying:
                    return  # not Charter's, or already going: it serves none of Charter's releases
                if not _managed(isvc):
                    raise ServingError(
                        f"An InferenceService named {endpoint} exists in namespace {self.namespace} and was not "
                        "created by Charter.",
                        code="endpoint_taken",
                    )
                raise ServingError(
                    f"InferenceService {endpoint} is being deleted; try again shortly.", code="endpoint_busy"
                )
            body = decide(isvc)
            if body is None:
                return
            version = isvc["metadata"].get("resourceVersion") if isvc is not None else None
            try:
                if body is DELETE:
                    options = k8s.V1DeleteOptions(preconditions=k8s.V1Preconditions(resource_version=version))
                    try:
                        self._call("delete", endpoint, body=options)
                    except _NotFound:
                        pass
                    return
                if upload is not None and "model" in body["spec"]["predictor"]:
                    self._upload(upload)
                if isvc is None:
                    self._call("create", body=body)
                else:
                    body["metadata"] = body.get("metadata", {}) | {"resourceVersion": version}
                    self._call("patch", endpoint, body=body)
                return
            except _Conflict:
                if attempt == CONFLICT_RETRIES - 1:
                    raise ServingError(
                        f"InferenceService {endpoint} kept changing while Charter updated it; try again.",
                        code="conflict",
                    ) from None

    def _get(self, name: str) -> dict | None:
        try:
            return self._call("get", name)
        except _NotFound:
            return None

    def _call(self, verb: str, name: str = "", *, body: Any = None) -> dict:
        common = {"group": GROUP, "version": VERSION, "namespace": self.namespace, "plural": PLURAL}
        options = {"_request_timeout": self.timeout}
        try:
            if verb == "list":
                return self.api.list_namespaced_custom_object(**common, **options)
            if verb == "get":
                return self.api.get_namespaced_custom_object(**common, name=name, **options)
            if verb == "create":
                return self.api.create_namespaced_custom_object(**common, body=body, **options)
            if verb == "patch":
                return self.api.patch_namespaced_custom_object(**common, name=name, body=body, **options)
            if verb == "delete":
                return self.api.delete_namespaced_custom_object(**common, name=name, body=body, **options)
            raise ValueError(verb)
        except ApiException as e:
            what = f"{verb} InferenceService{' ' + name if name else 's'} in {self.namespace}"
            if e.status == 404 and verb in ("get", "patch", "delete"):
                raise _NotFound(e.status) from e
            if e.status == 404:
                raise ServingError(
                    f"The Kubernetes API refused to {what} (HTTP 404): {_api_message(e)}. Is KServe installed, "
                    "and does the namespace exist?",
                    code="api_rejected",
                ) from e
            if e.status == 409:
                raise _Conflict(e.status) from e
            if not e.status or e.status in (502, 503, 504):
                raise Unreachable(f"The Kubernetes API at {self.host} did not answer ({e.status or e.reason}).") from e
            code = "api_rejected" if 400 <= e.status < 500 else "api_error"
            raise ServingError(
                f"The Kubernetes API refused to {what} (HTTP {e.status}): {_api_message(e)}", code=code
            ) from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise Unreachable(f"The Kubernetes API at {self.host} cannot be reached ({type(e).__name__}).") from e


def _prometheus_base(url: Any) -> str:
    """The Prometheus HTTP API base from the ``prometheus_url`` setting (a trailing ``/api/v1``
    tolerated); credentials, a query or a fragment in it are refused (they would be shown)."""
    parts = urlsplit(url) if isinstance(url, str) else None
    try:
        port_ok = parts is not None and (parts.port is None or parts.port > 0)
    except ValueError:
        port_ok = False
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or not port_ok
        or any(c.isspace() for c in url)
    ):
        raise ServingError(
            f"prometheus_url must be the http(s) URL of Prometheus' HTTP API, e.g. "
            f"http://prometheus.monitoring:9090, not {_public(url) if isinstance(url, str) else repr(url)}.",
            code="backend_misconfigured",
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ServingError(
            "prometheus_url may not carry a user, a password, a query or a fragment.", code="backend_misconfigured"
        )
    path = parts.path.rstrip("/").removesuffix("/api/v1")
    return f"{parts.scheme}://{parts.netloc}{path}"


def _public(url: str) -> str:
    """``url`` without user, password, query or fragment (never shown: they may hold secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        if parts.port:
            host = f"{host}:{parts.port}"
    except ValueError:
        pass
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else host + parts.path


class _NotFound(Exception):
    pass


DELETE = "delete"


class _Conflict(Exception):
    pass


# -- reading an InferenceService ------------------------------------------------------------------


def _managed(isvc: dict) -> bool:
    meta = isvc.get("metadata") or {}
    return (meta.get("labels") or {}).get(MANAGED_BY[0]) == MANAGED_BY[1] and A_RELEASE in (
        meta.get("annotations") or {}
    )


def _annotations(isvc: dict) -> dict:
    return (isvc.get("metadata") or {}).get("annotations") or {}


def _latest_of(isvc: dict) -> tuple[str, str] | None:
    a = _annotations(isvc)
    return (a[A_RELEASE], a.get(A_SHA, "")) if a.get(A_RELEASE) else None


def _recorded_stable(isvc: dict) -> tuple[str, str] | None:
    a = _annotations(isvc)
    return (a[A_STABLE], a.get(A_STABLE_SHA, "")) if a.get(A_STABLE) else None


def _canary(isvc: dict) -> int | None:
    value = ((isvc.get("spec") or {}).get("predictor") or {}).get("canaryTrafficPercent")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _stable_of(isvc: dict) -> tuple[str, str] | None:
    """The release serving the traffic a canary does not take (or all of it, without a canary)."""
    canary = _canary(isvc)
    if canary is None or canary >= 100:
        return _latest_of(isvc)
    return _recorded_stable(isvc) or _latest_of(isvc)


def _stable_record(isvc: dict) -> dict:
    """The annotations recording the release that serves what a canary does not take: the one in
    the spec when no canary runs, else the one already recorded."""
    a = _annotations(isvc)
    canary = _canary(isvc)
    if (canary is None or canary >= 100) or not a.get(A_STABLE):
        model = isvc["spec"]["predictor"].get("model") or {}
        return {
            A_STABLE: a.get(A_RELEASE),
            A_STABLE_SHA: a.get(A_SHA),
            A_STABLE_FORMAT: a.get(A_FORMAT),
            A_STABLE_URI: model.get("storageUri"),
        }
    return {k: a.get(k) for k in (A_STABLE, A_STABLE_SHA, A_STABLE_FORMAT, A_STABLE_URI)}


def _point_at_recorded_stable(isvc: dict) -> dict:
    """A merge patch pointing the spec back at the recorded stable release (its own storageUri)
    with ``canaryTrafficPercent: 0``: the traffic stays on the last rolled-out revision."""
    a = _annotations(isvc)
    fmt, uri = a.get(A_STABLE_FORMAT), a.get(A_STABLE_URI)
    if fmt not in FORMATS or not uri:
        raise ServingError(
            f"InferenceService {isvc['metadata']['name']}'s record of {a.get(A_STABLE)} is incomplete.",
            code="backend_error",
        )
    return {
        "metadata": {
            "labels": {L_RELEASE: a[A_STABLE]},
            "annotations": {A_RELEASE: a[A_STABLE], A_SHA: a.get(A_STABLE_SHA), A_FORMAT: fmt},
        },
        "spec": {
            "predictor": {
                "model": {"modelFormat": {"name": FORMATS[fmt][0]}, "protocolVersion": "v2", "storageUri": uri},
                "canaryTrafficPercent": 0,
            }
        },
    }


def _identity(release: Release) -> tuple[str, str]:
    return (release.name, release.sha256)


def _serves_all(isvc: dict, release: Release) -> bool:
    canary = _canary(isvc)
    if canary is None or canary >= 100:
        return _latest_of(isvc) == _identity(release)
    return canary == 0 and _stable_of(isvc) == _identity(release)


def _names(isvc: dict) -> set[str]:
    return {x[0] for x in (_latest_of(isvc), _recorded_stable(isvc) if _canary(isvc) is not None else None) if x}


def _predictor_status(isvc: dict) -> dict:
    return ((isvc.get("status") or {}).get("components") or {}).get("predictor") or {}


def _condition(isvc: dict, kind: str) -> dict | None:
    for condition in (isvc.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition
    return None


STALE = "KServe has not yet acted on the last change."


def _stale(isvc: dict) -> bool:
    """The status describes an earlier spec (KServe's controller has not caught up)."""
    generation = (isvc.get("metadata") or {}).get("generation")
    observed = (isvc.get("status") or {}).get("observedGeneration")
    return generation is not None and observed is not None and observed < generation


def _latest_ready(isvc: dict) -> tuple[bool, str]:
    if _stale(isvc):
        return False, STALE
    predictor = _predictor_status(isvc)
    created, ready_rev = predictor.get("latestCreatedRevision"), predictor.get("latestReadyRevision")
    if created and ready_rev and created != ready_rev:
        return False, f"Revision {created} is not ready yet."
    condition = _condition(isvc, "Ready")
    if condition is None:
        return False, "KServe reports no Ready condition yet."
    if condition.get("status") == "True":
        return True, ""
    return False, (condition.get("message") or condition.get("reason") or "not ready")[:300]


def _loaded(isvc: dict) -> list[Loaded]:
    endpoint = (isvc.get("metadata") or {}).get("name", "")
    traffic = _predictor_status(isvc).get("traffic")
    ready, reason = _latest_ready(isvc)
    if not _managed(isvc):
        percent = sum(int(t.get("percent") or 0) for t in traffic) if traffic else None
        return [
            Loaded(
                name=endpoint,
                ready=ready,
                endpoint=endpoint,
                traffic_percent=percent,
                reason="Not deployed by Charter.",
            )
        ]
    latest = _latest_of(isvc)[0]
    stable = _recorded_stable(isvc)
    if traffic is None or _stale(isvc):
        # No traffic to go by, or traffic that belongs to an earlier spec: what the spec holds.
        loaded = [Loaded(name=latest, ready=ready, endpoint=endpoint, traffic_percent=None, reason=reason)]
        if stable is not None and _canary(isvc) is not None and stable[0] != latest:
            loaded.append(Loaded(name=stable[0], ready=True, endpoint=endpoint, traffic_percent=None, reason=reason))
        return loaded
    shares: dict[str, int] = {}
    states: dict[str, tuple[bool, str]] = {}
    for target in traffic:
        percent = int(target.get("percent") or 0)
        if target.get("latestRevision"):
            name, state = latest, (ready, reason)
        elif stable is not None:
            # The last rolled-out revision: KServe only routes to one that reached Ready.
            name, state = stable[0], (True, "")
        else:
            name, state = target.get("revisionName") or "?", (True, "A revision Charter has no record of.")
        shares[name] = shares.get(name, 0) + percent
        previous = states.get(name)
        states[name] = state if previous is None or not previous[0] else previous
    if latest not in shares:
        shares[latest], states[latest] = 0, (ready, reason)
    return [
        Loaded(name=name, ready=states[name][0], endpoint=endpoint, traffic_percent=share, reason=states[name][1])
        for name, share in shares.items()
    ]


def _revision_releases(isvc: dict) -> dict[str, str]:
    """Knative revision name -> the Charter release it serves, for the revisions the predictor's
    traffic routes to and only where the status says so for certain (see the module docstring)."""
    if not _managed(isvc):
        return {}
    predictor = _predictor_status(isvc)
    latest, stable = _latest_of(isvc)[0], _recorded_stable(isvc)
    created, stale = predictor.get("latestCreatedRevision"), _stale(isvc)
    named: dict[str, str] = {}
    for target in predictor.get("traffic") or []:
        revision = target.get("revisionName")
        if not revision or target.get("latestRevision"):
            continue
        if stable is not None:  # the last rolled-out revision: the recorded stable release's
            named[revision] = stable[0]
    for target in predictor.get("traffic") or []:
        revision = target.get("revisionName")
        if revision and target.get("latestRevision") and not stale and (not created or revision == created):
            named[revision] = latest  # the spec's own revision, ready: the latest release's
    return named


def _predict_url(isvc: dict, name: str) -> str:
    latest = _latest_of(isvc)[0]
    stable = _recorded_stable(isvc)
    if name == latest:
        # Knative sends "latest" traffic to the latest *ready* revision: until the spec's revision is
        # ready (and the status is about the current spec), a request would reach an older release.
        ready, reason = _latest_ready(isvc)
        if not ready:
            raise ServingError(f"{name} is not ready to answer yet: {reason}", code="predict_failed")
    targets = _predictor_status(isvc).get("traffic") or []
    mine = [t for t in targets if (latest if t.get("latestRevision") else (stable or ("",))[0]) == name]
    for target in mine:
        if target.get("url"):
            return target["url"]
    url = (isvc.get("status") or {}).get("url")
    if not url:
        raise ServingError(f"{name} has no URL yet: KServe has not finished setting it up.", code="predict_failed")
    if not targets or sum(int(t.get("percent") or 0) for t in mine) >= 100:
        return url
    raise ServingError(
        f"{name} shares its endpoint with another release and KServe reports no tag URL for it alone.",
        code="predict_failed",
    )
