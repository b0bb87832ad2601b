"""Content-addressed artifact storage: a file's name is its sha256, so identical uploads share bytes."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings
from django.core.files import File
from django.core.files.storage import storages

from governance.core.errors import Conflict, ValidationFailed

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredArtifact:
    sha256: str
    size: int
    path: str


def storage():
    return storages["artifacts"]


def path_for(sha256: str) -> str:
    return f"sha256/{sha256[:2]}/{sha256}"


def store_upload(upload, *, expected_sha256: str | None = None) -> StoredArtifact:
    """Hash while spooling, refuse empty/oversized/mismatched uploads, then store once per digest."""
    limit = settings.ARTIFACT_MAX_BYTES
    if getattr(upload, "size", None) is not None and upload.size > limit:
        raise ValidationFailed(f"The artifact is larger than the {limit:,}-byte limit.", code="artifact_too_large")
    digest = hashlib.sha256()
    size = 0
    with tempfile.SpooledTemporaryFile(max_size=8 * CHUNK) as spool:
        for chunk in upload.chunks(CHUNK):
            size += len(chunk)
            if size > limit:
                raise ValidationFailed(
                    f"The artifact is larger than the {limit:,}-byte limit.", code="artifact_too_large"
                )
            digest.update(chunk)
            spool.write(chunk)
        if size == 0:
            raise ValidationFailed("The artifact file is empty.", code="artifact_empty")
        sha256 = digest.hexdigest()
        if expected_sha256 and expected_sha256.lower() != sha256:
            raise ValidationFailed(
                f"The uploaded artifact's sha256 is {sha256}, not the {expected_sha256} you declared.",
                code="digest_mismatch",
            )
        path = path_for(sha256)
        store = storage()
        if not store.exists(path):
            spool.seek(0)
            saved = store.save(path, File(spool, name=path))
            if saved != path:  # a concurrent upload of the same bytes won; keep one copy
                store.delete(saved)
    return StoredArtifact(sha256=sha256, size=size, path=path)


def open_verified(path: str, *, sha256: str) -> Iterator[bytes]:
    """Check the stored bytes against the recorded digest now, then hand back a chunk iterator."""
    store = storage()
    if not store.exists(path):
        raise Conflict("The artifact file is missing from storage.", code="artifact_missing")
    digest = hashlib.sha256()
    with store.open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise Conflict(
            "The stored artifact no longer matches its recorded sha256; refusing to serve it.",
            code="artifact_digest_mismatch",
        )
    return _chunks(path)


def _chunks(path: str) -> Iterator[bytes]:
    with storage().open(path, "rb") as fh:
        yield from iter(lambda: fh.read(CHUNK), b"")
