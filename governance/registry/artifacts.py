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


# What a stored artifact can be found to be, by ``check``: the codes the API refuses a download
# with, recorded on the versions of that artifact, and named by their gate line.
DIGEST_MISMATCH = "artifact_digest_mismatch"
MISSING = "artifact_missing"
PROBLEMS = {
    DIGEST_MISMATCH: "The stored artifact no longer matches its recorded sha256; refusing to serve it.",
    MISSING: "The artifact file is missing from storage.",
}


def check(path: str, *, sha256: str) -> str | None:
    """Re-hash the stored bytes now: ``None`` when they match ``sha256``, else the problem's code."""
    store = storage()
    if not store.exists(path):
        return MISSING
    digest = hashlib.sha256()
    try:
        with store.open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                digest.update(chunk)
    except FileNotFoundError:  # removed between the two calls
        return MISSING
    return None if digest.hexdigest() == sha256 else DIGEST_MISMATCH


def open_verified(path: str, *, sha256: str) -> Iterator[bytes]:
    """Check the stored bytes against the recorded digest now, then hand back a chunk iterator."""
    problem = check(path, sha256=sha256)
    if problem is not None:
        raise Conflict(PROBLEMS[problem], code=problem)
    return _chunks(path)


def _chunks(path: str) -> Iterator[bytes]:
    with storage().open(path, "rb") as fh:
        yield from iter(lambda: fh.read(CHUNK), b"")
