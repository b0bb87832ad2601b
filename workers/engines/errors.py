"""One exception type for every engine failure: a machine code and a sentence for people.

The task layer stores ``code`` and ``message`` on the failed run and shows the message to the
requester, so a message names columns, counts, types and limits, never values from data rows
(a model's own exception text can quote rows, which is why it is never copied into a message).
"""

from __future__ import annotations


class EngineError(Exception):
    """An engine could not do what it was asked; ``code`` is stable, ``message`` is one sentence."""

    code: str = "engine_error"

    def __init__(self, code: str | None = None, message: str = "") -> None:
        self.code = code or type(self).code
        self.message = message
        super().__init__(message)

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class ArtifactDigestMismatch(EngineError):
    """The artifact's bytes do not hash to the sha256 recorded for the version."""

    code = "digest_mismatch"

    def __init__(self, message: str) -> None:
        super().__init__(self.code, message)


class PickleNotAllowed(EngineError):
    """A pickle-based artifact was to be loaded without the caller allowing pickle."""

    code = "pickle_not_allowed"

    def __init__(self, message: str) -> None:
        super().__init__(self.code, message)


class UntrustedTypes(EngineError):
    """A skops artifact names types that are neither trusted by skops nor by the caller."""

    code = "untrusted_types"

    def __init__(self, message: str, *, types: list[str]) -> None:
        super().__init__(self.code, message)
        self.types = types


class ModelFailed(EngineError):
    """The model raised, or returned something unusable, when it was called."""

    code = "model_failed"

    def __init__(self, message: str) -> None:
        super().__init__(self.code, message)


def model_failed(exc: BaseException, *, during: str, n_rows: int | None = None) -> ModelFailed:
    """A ``ModelFailed`` naming the exception type only: its text may quote input values."""
    rows = f" on {n_rows} rows" if n_rows is not None else ""
    return ModelFailed(f"The model raised {type(exc).__name__} while {during}{rows}.")
