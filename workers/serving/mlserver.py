"""The MLServer backend: a model repository on disk, driven over MLServer's HTTP API.

Each release is its own MLServer model, named after the release (``credit-risk-v3``), in its own
folder of the repository::

    <repository>/credit-risk-v3/model.joblib         the artifact, copied and hashed on the way
    <repository>/credit-risk-v3/charter.json         sha256, endpoint, format, file name
    <repository>/credit-risk-v3/model-settings.json  present exactly while Charter wants it loaded

``charter.json`` tells Charter's models from anyone else's. ``model-settings.json`` is written just
before the load and removed by ``undeploy`` and by a failed load, so a restarted server
(:mod:`workers.serving.mlserver_process`) loads back what was live and nothing else; the artifact
stays, so a rollback loads an earlier release from its folder without copying anything.
:meth:`MLServerBackend.forget` deletes a release's folder (for retire).

Runtimes: ``sklearn-joblib`` and ``pickle`` load in ``mlserver_sklearn.SKLearnModel``,
``xgboost`` in ``mlserver_xgboost.XGBoostModel``, ``lightgbm`` in
``mlserver_lightgbm.LightGBMModel``; ``skops`` and ``onnx``, for which MLServer has no runtime, in
Charter's own :mod:`workers.serving.mlserver_runtime` (loads through
``workers.engines.loading.load_model``, which checks the sha256 again), so the MLServer must be
able to import ``workers`` (the local server started by ``mlserver_process`` can). Pass
``charter_runtime=False`` for an MLServer that cannot, and those two formats are refused up front.

MLServer cannot split traffic: ``set_traffic`` and ``promote`` raise ``Unsupported``.

Metrics (MLServer 1.7.1, metrics port, ``/metrics``): per model ``model_infer_request_success``
and ``model_infer_request_failure`` (counters) and ``model_infer_request_duration`` (a summary:
count and sum, no buckets), all labelled ``model`` and ``version``. MLServer keeps no per-model
latency histogram, so :class:`Stats` from here have empty ``buckets`` (``p95_seconds()`` is
``None``); the counters run from the server's start, across unloads and reloads of a name.

This module talks HTTP (``requests``) and never imports ``mlserver``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

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

CHARTER_FILE = "charter.json"
SETTINGS_FILE = "model-settings.json"

# artifact format -> (MLServer implementation, file name in the release's folder)
RUNTIMES: dict[str, tuple[str, str]] = {
    "sklearn-joblib": ("mlserver_sklearn.SKLearnModel", "model.joblib"),
    "pickle": ("mlserver_sklearn.SKLearnModel", "model.pkl"),  # joblib.load reads plain pickles
    "xgboost": ("mlserver_xgboost.XGBoostModel", "model.json"),  # or model.ubj, from the bytes
    "lightgbm": ("mlserver_lightgbm.LightGBMModel", "model.txt"),
}
CHARTER_RUNTIMES: dict[str, tuple[str, str]] = {
    "skops": ("workers.serving.mlserver_runtime.CharterModel", "model.skops"),
    "onnx": ("workers.serving.mlserver_runtime.CharterModel", "model.onnx"),
}

NO_SPLIT = (
    "MLServer cannot split traffic between two versions; deploy the version instead, "
    "or use a KServe environment for a canary."
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_CHUNK = 1 << 20


class MLServerBackend(Backend):
    kind = "mlserver"

    def __init__(
        self,
        url: str,
        repository_dir: str | os.PathLike[str],
        metrics_url: str | None = None,
        *,
        timeout: float = 10.0,
        load_timeout: float = 120.0,
        charter_runtime: bool = True,
    ):
        self.url = url.rstrip("/")
        self.repository = Path(repository_dir)
        self.metrics_url = metrics_url
        self.timeout = timeout
        self.load_timeout = load_timeout
        self.runtimes = {**RUNTIMES, **(CHARTER_RUNTIMES if charter_runtime else {})}
        self._session = requests.Session()

    # --- the interface ---------------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        return Capabilities(traffic_split=False, formats=frozenset(self.runtimes), metrics=self.metrics_url is not None)

    def deploy(self, release: Release) -> None:
        """Copy the artifact into the repository (unless an intact copy is there), write its
        model settings and load it; a no-op when the same bytes are loaded and ready already."""
        folder = self._folder(release.name)
        if release.artifact_format not in self.runtimes:
            raise Unsupported(
                f"This MLServer cannot serve {release.artifact_format} artifacts; "
                f"it serves {', '.join(sorted(self.runtimes))}."
            )
        info = _read_json(folder / CHARTER_FILE)
        if (
            info.get("sha256") == release.sha256
            and (folder / SETTINGS_FILE).is_file()
            and self._model_ready(release.name)
        ):
            return
        info = self._install(release, folder, info)
        self._write_settings(folder, release.name, info)
        self._load(release.name, what=f"its {release.artifact_format} artifact")

    def set_traffic(self, release: Release, *, percent: int, stable: Release) -> None:
        raise Unsupported(NO_SPLIT)

    def promote(self, release: Release) -> None:
        raise Unsupported(NO_SPLIT)

    def rollback(self, to: Release, *, current: Release) -> None:
        """Load ``to`` from its folder (copied again only if the folder is gone or damaged), wait
        until it is ready, then unload ``current``. If ``to`` does not load, ``current`` stays."""
        self.deploy(to)
        if current.name != to.name:
            self.undeploy(current)

    def undeploy(self, release: Release) -> None:
        """Unload ``release`` and drop its model settings (a restart does not load it again); its
        artifact stays for a later rollback. Unloading what is not loaded is a no-op."""
        folder = self._folder(release.name)
        self._unload(release.name)
        if (folder / CHARTER_FILE).is_file():  # never touch another tool's model folders
            _remove(folder / SETTINGS_FILE)

    def forget(self, release: Release) -> None:
        """:meth:`undeploy`, then delete the release's folder (a retired release is never served
        again). Only folders Charter created (with a ``charter.json``) are deleted."""
        self.undeploy(release)
        folder = self._folder(release.name)
        if (folder / CHARTER_FILE).is_file():
            self._replace_folder(folder, None)

    def status(self) -> list[Loaded]:
        """The models MLServer has loaded or is loading (``/v2/repository/index``), Charter's or
        not; a model whose settings are on disk but which is not loaded is not listed."""
        response = self._call("POST", "/v2/repository/index", json={})
        if response.status_code != 200:
            raise ServingError(f"MLServer did not list its models: {_error_text(response)}.")
        loaded = []
        for item in response.json():
            name, state = str(item.get("name") or ""), str(item.get("state") or "")
            if not name or state == "UNAVAILABLE":
                continue
            ready = state == "READY"
            reason = str(item.get("reason") or "") or ("" if ready else state.lower())
            endpoint = (
                _read_json(self.repository / name / CHARTER_FILE).get("endpoint", "") if _NAME.match(name) else ""
            )
            loaded.append(Loaded(name=name, ready=ready, endpoint=str(endpoint), reason=reason))
        return sorted(loaded, key=lambda m: m.name)

    def predict(self, name: str, payload: dict[str, Any], *, timeout: float = 10.0) -> dict[str, Any]:
        response = self._call("POST", f"/v2/models/{_segment(name)}/infer", json=payload, timeout=timeout)
        if response.status_code != 200:
            raise ServingError(
                f"MLServer refused the prediction for {name} ({_error_text(response)}).", code="predict_failed"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise ServingError(
                f"MLServer answered the prediction for {name} with no JSON.", code="predict_failed"
            ) from exc

    def metrics(self) -> dict[str, Stats]:
        if self.metrics_url is None:
            return {}
        response = self._call("GET", "", base=self.metrics_url)
        if response.status_code != 200:
            raise ServingError(f"MLServer's metrics endpoint answered {_error_text(response)}.")
        return parse_metrics(response.text)

    # --- restart support -------------------------------------------------------------------------

    def restore(self) -> tuple[list[str], dict[str, str]]:
        """Load every model whose settings are in the repository (after a restart), one at a
        time; returns the names loaded and, per name, why one did not load. A model that fails is
        left unloaded with its settings in place (the next restart tries again)."""
        loaded, failed = [], {}
        for settings in sorted(self.repository.glob(f"*/{SETTINGS_FILE}")):
            name = str(_read_json(settings).get("name") or settings.parent.name)
            try:
                self._request_load(name)
            except Unreachable:
                raise
            except ServingError as exc:
                failed[name] = exc.message
            else:
                loaded.append(name)
        return loaded, failed

    # --- files -----------------------------------------------------------------------------------

    def _folder(self, name: str) -> Path:
        if not _NAME.match(name) or name in (".", ".."):
            raise ServingError(f"{name!r} is not a usable model name for MLServer.", code="invalid_name")
        return self.repository / name

    def _install(self, release: Release, folder: Path, info: dict[str, Any]) -> dict[str, Any]:
        """The release's artifact in ``folder``: kept when the copy there hashes to the release's
        sha256, otherwise the folder is built anew beside it and swapped in."""
        if not info and (folder / SETTINGS_FILE).is_file():
            raise ServingError(
                f"The MLServer repository already holds a model named {release.name} that Charter did not put "
                "there; it was left alone and nothing was deployed.",
                code="name_taken",
            )
        current = folder / str(info.get("file", ""))
        if info.get("sha256") == release.sha256 and info.get("file") and _sha256_file(current) == release.sha256:
            return info
        implementation, file_name = self.runtimes[release.artifact_format]
        staging = self.repository / f".staging-{release.name}-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        try:
            try:
                digest, head = _copy(Path(release.artifact_path), staging / file_name)
            except OSError as exc:
                raise ServingError(
                    f"The artifact of {release.name} could not be read ({type(exc).__name__}).",
                    code="artifact_unreadable",
                ) from exc
            if digest != release.sha256:
                raise ServingError(
                    f"The artifact of {release.name} hashes to {digest}, not the {release.sha256} recorded for it; "
                    "it was not deployed.",
                    code="artifact_digest_mismatch",
                )
            if release.artifact_format == "xgboost" and not _looks_like_json(head):
                os.replace(staging / file_name, staging / "model.ubj")
                file_name = "model.ubj"
            info = {
                "charter": 1,
                "name": release.name,
                "endpoint": release.endpoint,
                "sha256": release.sha256,
                "artifact_format": release.artifact_format,
                "framework": release.framework,
                "file": file_name,
                "implementation": implementation,
            }
            _write_json(staging / CHARTER_FILE, info)
            _fsync_dir(staging)
            self._replace_folder(folder, staging)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return info

    def _replace_folder(self, folder: Path, new: Path | None) -> None:
        """Swap ``new`` in at ``folder`` (or just remove ``folder``) by renames in the repository."""
        for leftover in self.repository.glob(f".trash-{folder.name}-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        trash = None
        if folder.exists():
            trash = self.repository / f".trash-{folder.name}-{uuid.uuid4().hex[:8]}"
            os.replace(folder, trash)
        if new is not None:
            os.replace(new, folder)
        _fsync_dir(self.repository)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)

    def _write_settings(self, folder: Path, name: str, info: dict[str, Any]) -> None:
        parameters: dict[str, Any] = {"uri": f"./{info['file']}"}
        if info.get("artifact_format") in CHARTER_RUNTIMES:  # Charter's runtime checks the digest again
            parameters["extra"] = {"artifact_format": info["artifact_format"], "sha256": info["sha256"]}
        _write_json(
            folder / SETTINGS_FILE, {"name": name, "implementation": info["implementation"], "parameters": parameters}
        )

    # --- HTTP ------------------------------------------------------------------------------------

    def _load(self, name: str, *, what: str) -> None:
        """Load ``name``; on failure nothing stays loaded under it and its settings are removed."""
        try:
            self._request_load(name, what=what)
        except BaseException:
            _remove(self.repository / name / SETTINGS_FILE)
            with contextlib.suppress(ServingError):
                self._unload(name)
            raise

    def _request_load(self, name: str, *, what: str = "its artifact") -> None:
        response = self._call("POST", f"/v2/repository/models/{_segment(name)}/load", timeout=self.load_timeout)
        if response.status_code != 200:
            raise ServingError(
                f"MLServer could not load {name} from {what} ({_error_text(response)}): the file may be damaged "
                "or made with a library version the server does not have. Nothing is loaded under that name.",
                code="load_failed",
            )
        deadline = time.monotonic() + self.load_timeout
        while not self._model_ready(name):
            if time.monotonic() > deadline:
                raise ServingError(
                    f"MLServer loaded {name} but it was not ready within {self.load_timeout:.0f} s.", code="load_failed"
                )
            time.sleep(0.05)

    def _unload(self, name: str) -> None:
        response = self._call("POST", f"/v2/repository/models/{_segment(name)}/unload")
        if response.status_code not in (200, 404):  # 404: not loaded, nothing to do
            raise ServingError(f"MLServer could not unload {name} ({_error_text(response)}).", code="unload_failed")

    def _model_ready(self, name: str) -> bool:
        return self._call("GET", f"/v2/models/{_segment(name)}/ready").status_code == 200

    def _call(
        self, method: str, path: str, *, base: str | None = None, timeout: float | None = None, **kwargs: Any
    ) -> requests.Response:
        url = (base or self.url) + path
        try:
            response = self._session.request(method, url, timeout=timeout or self.timeout, **kwargs)
            if response.status_code >= 500:
                # uvicorn drops the connection after an unhandled error in MLServer; a pooled
                # connection reused after it would fail the next call with a reset
                self._session.close()
            return response
        except requests.Timeout as exc:
            raise Unreachable(
                f"The MLServer at {_public(base or self.url)} did not answer: no answer within "
                f"{timeout or self.timeout:.0f} s."
            ) from exc
        except requests.ConnectionError as exc:
            raise Unreachable(
                f"The MLServer at {_public(base or self.url)} did not answer: the connection was refused or dropped."
            ) from exc
        except requests.RequestException as exc:
            raise Unreachable(
                f"The MLServer at {_public(base or self.url)} did not answer: {type(exc).__name__}."
            ) from exc


# --- metrics ---------------------------------------------------------------------------------------


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'\s*(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*,?')
_WANTED = {
    "model_infer_request_success_total": "success",
    "model_infer_request_failure_total": "failure",
    "model_infer_request_duration_sum": "duration",
}


def parse_metrics(text: str) -> dict[str, Stats]:
    """Per-model :class:`Stats` from MLServer's Prometheus text exposition (see the module
    docstring for the metrics). Parsed here rather than with ``prometheus_client``, which Charter
    does not depend on directly: only three sample names are read."""
    figures: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line.startswith("model_infer_request_"):
            continue
        match = _SAMPLE.match(line.strip())
        if not match or match["name"] not in _WANTED:
            continue
        labels = {
            m["key"]: re.sub(r"\\(.)", lambda e: "\n" if e[1] == "n" else e[1], m["value"])
            for m in _LABEL.finditer(match["labels"] or "")
        }
        model = labels.get("model")
        try:
            value = float(match["value"])
        except ValueError:
            continue
        if model is None or value != value:  # no model label, or NaN
            continue
        kind = _WANTED[match["name"]]
        per_model = figures.setdefault(model, {})
        per_model[kind] = per_model.get(kind, 0.0) + value
    return {
        model: Stats(
            name=model,
            requests=int(f.get("success", 0) + f.get("failure", 0)),
            errors=int(f.get("failure", 0)),
            duration_seconds_sum=f.get("duration", 0.0),
        )
        for model, f in sorted(figures.items())
    }


# --- small helpers ---------------------------------------------------------------------------------


def _segment(name: str) -> str:
    if not _NAME.match(name):
        raise ServingError(f"{name!r} is not a usable model name for MLServer.", code="invalid_name")
    return name


def _public(url: str) -> str:
    """``url`` without user, password, query or fragment (never shown: they may hold secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _error_text(response: requests.Response) -> str:
    """The server's own error message: ``{"error": ...}`` or pydantic ``detail`` messages (never the
    ``input`` they quote, which is the caller's data)."""
    text = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        if isinstance(body.get("error"), str):
            text = body["error"]
        elif isinstance(body.get("detail"), list):
            text = "; ".join(
                f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg', '')}"
                for d in body["detail"]
                if isinstance(d, dict)
            )
        elif isinstance(body.get("detail"), str):
            text = body["detail"]
    if not text:
        text = response.reason or ""
    text = " ".join(text.split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"HTTP {response.status_code}: {text}" if text else f"HTTP {response.status_code}"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _copy(src: Path, dst: Path) -> tuple[str, bytes]:
    """Copy ``src`` to ``dst`` through a temporary name, fsynced; the sha256 of the bytes written
    and their first bytes."""
    tmp = dst.with_name(f".{dst.name}.tmp-{uuid.uuid4().hex[:8]}")
    digest = hashlib.sha256()
    head = b""
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        while chunk := fin.read(_CHUNK):
            if not head:
                head = chunk[:64]
            digest.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(tmp, dst)
    return digest.hexdigest(), head


def _sha256_file(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _looks_like_json(head: bytes) -> bool:
    """XGBoost writes JSON (``{"learner"...``) or UBJSON (``{L...``); the file name tells MLServer's
    XGBoost runtime which one."""
    stripped = head.lstrip()
    return stripped[:1] == b"{" and stripped[1:].lstrip()[:1] in (b'"', b"}")


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
