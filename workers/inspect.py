"""Artifact inspection engine: digest and format detection from bytes. No Django here."""

from __future__ import annotations

import hashlib
import io
import zipfile
from typing import BinaryIO

PICKLE_FORMATS = frozenset({"sklearn-joblib", "pickle"})
_CHUNK = 1024 * 1024


def detect_format(head: bytes, name: str = "") -> str:
    """Best guess of the serialisation format from the first bytes and the file name."""
    lower = name.lower()
    if head.startswith(b"PK\x03\x04"):
        return "skops" if lower.endswith(".skops") or _zip_has(head, "schema.json") else "other"
    if head.startswith(b"tree\nversion=") or head.startswith(b"tree\r\nversion="):
        return "lightgbm"
    if lower.endswith(".onnx") or (head[:1] == b"\x08" and b"onnx" in head[:256].lower()):
        return "onnx"
    if head.lstrip().startswith(b"{") and (b'"learner"' in head or lower.endswith((".ubj", ".json"))):
        return "xgboost"
    # joblib writes a pickle, possibly compressed (zlib, gzip, bz2, xz, lz4)
    if (
        head[:1] == b"\x80"
        or head[:2] in (b"x\x9c", b"x\x01", b"x^", b"x\xda", b"\x1f\x8b", b"BZ")
        or head[:6] == b"\xfd7zXZ\x00"
        or head[:3] == b"]\x00\x00"  # lzma
    ):
        return "sklearn-joblib" if lower.endswith((".joblib", ".pkl.z", ".jbl")) or "joblib" in lower else "pickle"
    return "other"


def _zip_has(head: bytes, member: str) -> bool:
    try:
        return member in zipfile.ZipFile(io.BytesIO(head)).namelist()
    except zipfile.BadZipFile:
        return False


def inspect_stream(stream: BinaryIO, *, name: str, expected_sha256: str, declared_format: str) -> dict:
    """Re-read the artifact: digest, size and detected format, compared with what was declared."""
    digest = hashlib.sha256()
    size = 0
    head = b""
    for chunk in iter(lambda: stream.read(_CHUNK), b""):
        if len(head) < 4096:
            head += chunk[: 4096 - len(head)]
        digest.update(chunk)
        size += len(chunk)
    sha256 = digest.hexdigest()
    detected = detect_format(head if not head.startswith(b"PK") else _whole_if_small(stream, head), name)
    return {
        "sha256": sha256,
        "sha256_verified": sha256 == expected_sha256,
        "size": size,
        "declared_format": declared_format,
        "detected_format": detected,
        "format_matches": detected == declared_format or detected == "other",
        "pickle_based": detected in PICKLE_FORMATS or declared_format in PICKLE_FORMATS,
    }


def _whole_if_small(stream: BinaryIO, head: bytes) -> bytes:
    # A zip's directory sits at its end; re-read small files whole so the member list is visible.
    try:
        stream.seek(0)
        data = stream.read(64 * _CHUNK + 1)
        return data if len(data) <= 64 * _CHUNK else head
    except (OSError, io.UnsupportedOperation):
        return head
