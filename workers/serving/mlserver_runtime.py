"""Charter's MLServer runtime, for artifact formats MLServer has no runtime of its own for (skops,
ONNX). It runs inside the MLServer process (the only module of Charter that imports ``mlserver``)
and loads through :func:`workers.engines.loading.load_model`, so the bytes are hashed against the
sha256 in the model settings before anything is deserialised and skops' trusted-types check
applies; pickle-based formats are refused (they are served by ``mlserver_sklearn``).

Requests are decoded like MLServer's own runtimes do (a single tensor as a 2-D array, or a
``pd`` content type as a DataFrame). Outputs: ``predict`` (the default) and ``predict_proba``.
A model that raises while predicting answers 400 with Charter's payload-free message.
"""

from __future__ import annotations

from mlserver import MLModel
from mlserver.codecs import NumpyCodec, NumpyRequestCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse, RequestOutput
from mlserver.utils import get_model_uri

from workers.engines.errors import EngineError
from workers.engines.loading import LoadedModel, load_model

OUTPUTS = ("predict", "predict_proba")


class CharterModel(MLModel):
    async def load(self) -> bool:
        extra = (self.settings.parameters.extra if self.settings.parameters else None) or {}
        uri = await get_model_uri(self.settings)
        try:
            self._model: LoadedModel = load_model(
                uri,
                artifact_format=str(extra.get("artifact_format", "")),
                expected_sha256=str(extra.get("sha256", "")),
                allow_pickle=False,
                trusted_types=tuple(extra.get("trusted_types", ())),
            )
        except EngineError as exc:
            raise RuntimeError(f"{exc.code}: {exc}") from exc
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        requested = [o.name for o in payload.outputs] if payload.outputs else ["predict"]
        unknown = [name for name in requested if name not in OUTPUTS]
        if unknown:
            raise InferenceError(f"Outputs {', '.join(OUTPUTS)} are served; not {', '.join(unknown)}.")
        X = self.decode_request(payload, default_codec=NumpyRequestCodec)
        outputs = []
        for name in requested:
            try:
                y = self._model.predict(X) if name == "predict" else self._model.predict_proba(X)
            except EngineError as exc:
                raise InferenceError(str(exc)) from exc
            if y is None:
                raise InferenceError("This model gives no class probabilities.")
            outputs.append(self.encode(y, RequestOutput(name=name), default_codec=NumpyCodec))
        return InferenceResponse(model_name=self.name, model_version=self.version, outputs=outputs)
