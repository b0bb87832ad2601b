"""The artifact inspection engine on real bytes: format detection and digest verification.

``workers.inspect`` has no Django in it, so most of these run without a database.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import zipfile

import joblib
import pytest
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier

from tests.conftest import trained_artifact
from workers import inspect


@pytest.fixture(scope="module")
def joblib_bytes() -> bytes:
    return trained_artifact()


@pytest.fixture(scope="module")
def tree():
    X, y = load_iris(return_X_y=True)
    return DecisionTreeClassifier(random_state=0).fit(X, y)


def _zip(members: dict[str, bytes], *, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


# A skops file is a zip whose manifest is ``schema.json`` (what skops.io.dump writes).
SKOPS_LIKE = _zip({"schema.json": json.dumps({"__class__": "LogisticRegression", "protocol": 2}).encode()})
LIGHTGBM_TEXT = (
    b"tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\nmax_feature_idx=3\n"
    b"objective=binary sigmoid:1\nfeature_names=a b c d\n\nTree=0\nnum_leaves=2\n"
)
XGBOOST_JSON = json.dumps(
    {
        "learner": {"attributes": {}, "gradient_booster": {"name": "gbtree"}, "objective": {"name": "binary:logistic"}},
        "version": [2, 1, 0],
    }  # fmt: skip
).encode()


def test_a_joblib_dump_of_a_real_model_is_sklearn_joblib(joblib_bytes):
    assert joblib_bytes[:1] == b"\x80"  # a pickle protocol header
    assert inspect.detect_format(joblib_bytes[:4096], "credit.joblib") == "sklearn-joblib"
    assert inspect.detect_format(joblib_bytes[:4096], "models/joblib-export.bin") == "sklearn-joblib"
    # The same bytes under a pickle name are a pickle: the loader differs, the risk is the same.
    assert inspect.detect_format(joblib_bytes[:4096], "credit.pkl") == "pickle"


@pytest.mark.parametrize(
    "compress",
    # compress=True and compress=3 (joblib's documented compromise) are zlib level 3, header b"x^".
    [True, 1, 3, 6, 9, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)],
    ids=["true", "zlib-1", "zlib-3", "zlib-6", "zlib-9", "gzip", "bz2", "xz", "lzma"],
)
def test_a_compressed_joblib_dump_is_recognised(tree, compress):
    buf = io.BytesIO()
    joblib.dump(tree, buf, compress=compress)
    head = buf.getvalue()[:4096]
    assert head[:1] != b"\x80"
    assert inspect.detect_format(head, "tree.joblib") == "sklearn-joblib"
    assert inspect.detect_format(head, "tree.pkl") == "pickle"


def test_a_real_skops_file_is_skops(tmp_path, tree):
    skops_io = pytest.importorskip("skops.io")
    path = tmp_path / "model.skops"
    skops_io.dump(tree, path)
    data = path.read_bytes()
    assert inspect.detect_format(data, "model.skops") == "skops"
    assert inspect.detect_format(data, "model.bin") == "skops"


def test_a_zip_with_a_skops_manifest_is_skops_whatever_its_name():
    assert inspect.detect_format(SKOPS_LIKE, "model.skops") == "skops"
    assert inspect.detect_format(SKOPS_LIKE, "upload.bin") == "skops"


def test_other_zips_are_other_unless_named_skops():
    plain = _zip({"weights.npy": b"\x93NUMPY" + bytes(64)})
    assert inspect.detect_format(plain, "bundle.zip") == "other"
    assert inspect.detect_format(plain, "bundle.skops") == "skops"
    assert inspect.detect_format(b"PK\x03\x04 truncated", "bundle.zip") == "other"


def test_lightgbm_text_and_xgboost_json_are_recognised():
    assert inspect.detect_format(LIGHTGBM_TEXT, "model.txt") == "lightgbm"
    assert inspect.detect_format(LIGHTGBM_TEXT.replace(b"\n", b"\r\n"), "model.txt") == "lightgbm"
    assert inspect.detect_format(XGBOOST_JSON, "booster.bin") == "xgboost"
    assert inspect.detect_format(b'{"learner": {}}', "model") == "xgboost"
    assert inspect.detect_format(b'{"anything": 1}', "model.json") == "xgboost"
    assert inspect.detect_format(b'{"anything": 1}', "config.yaml") == "other"


def test_onnx_and_unknown_bytes():
    assert inspect.detect_format(b"\x08\x07\x12\x07pytorch", "model.onnx") == "onnx"
    assert inspect.detect_format(b"\x08\x07\x12\x04onnx\x1a\x03", "model.bin") == "onnx"
    assert inspect.detect_format(b"GGUF\x03\x00", "llama.gguf") == "other"
    assert inspect.detect_format(b"", "empty") == "other"
    assert inspect.detect_format(b"\x00\x01\x02", "") == "other"


def _inspect(data: bytes, *, name: str, declared: str, expected: str | None = None) -> dict:
    return inspect.inspect_stream(
        io.BytesIO(data),
        name=name,
        expected_sha256=expected or hashlib.sha256(data).hexdigest(),
        declared_format=declared,
    )


def test_inspect_stream_verifies_the_digest_of_a_real_model(joblib_bytes):
    report = _inspect(joblib_bytes, name="credit.joblib", declared="sklearn-joblib")
    assert report == {
        "sha256": hashlib.sha256(joblib_bytes).hexdigest(),
        "sha256_verified": True,
        "size": len(joblib_bytes),
        "declared_format": "sklearn-joblib",
        "detected_format": "sklearn-joblib",
        "format_matches": True,
        "pickle_based": True,
    }


def test_inspect_stream_reports_a_digest_that_does_not_match(joblib_bytes):
    wrong = hashlib.sha256(b"what was registered").hexdigest()
    report = _inspect(joblib_bytes, name="credit.joblib", declared="sklearn-joblib", expected=wrong)
    assert report["sha256_verified"] is False
    assert report["sha256"] == hashlib.sha256(joblib_bytes).hexdigest() != wrong
    tampered = joblib_bytes[:-1] + bytes([joblib_bytes[-1] ^ 1])
    report = _inspect(tampered, name="credit.joblib", declared="sklearn-joblib",
                      expected=hashlib.sha256(joblib_bytes).hexdigest())  # fmt: skip
    assert report["sha256_verified"] is False


def test_inspect_stream_reads_large_streams_in_chunks():
    data = os.urandom(3 * 1024 * 1024 + 17)
    report = _inspect(b"\x80\x05" + data, name="big.joblib", declared="sklearn-joblib")
    assert report["size"] == len(data) + 2 and report["sha256_verified"] is True
    assert report["detected_format"] == "sklearn-joblib"


def test_inspect_stream_flags_a_declared_format_that_the_bytes_contradict(joblib_bytes):
    report = _inspect(joblib_bytes, name="model.joblib", declared="onnx")
    assert (report["detected_format"], report["format_matches"], report["pickle_based"]) == (
        "sklearn-joblib",
        False,
        True,
    )
    report = _inspect(LIGHTGBM_TEXT, name="model.txt", declared="xgboost")
    assert (report["detected_format"], report["format_matches"], report["pickle_based"]) == ("lightgbm", False, False)
    # Bytes nobody recognises do not contradict anything.
    report = _inspect(b"\x00\x01weights", name="model.bin", declared="onnx")
    assert (report["detected_format"], report["format_matches"]) == ("other", True)
    # A pickle declared as something else is still flagged as pickle-based.
    report = _inspect(b"x", name="m.bin", declared="pickle")
    assert report["pickle_based"] is True


def test_a_skops_zip_whose_directory_lies_past_the_first_bytes_is_still_found():
    """The member list of a zip sits at its end; the engine re-reads small files whole to see it."""
    data = _zip({"schema.json": b"{}", "blob.bin": os.urandom(20000)}, compression=zipfile.ZIP_STORED)
    assert len(data) > 4096
    assert inspect.detect_format(data[:4096], "upload.bin") == "other"  # the head alone is not enough
    report = _inspect(data, name="upload.bin", declared="skops")
    assert (report["detected_format"], report["format_matches"], report["pickle_based"]) == ("skops", True, False)


def test_the_engine_does_not_import_django():
    tree = ast.parse(open(inspect.__file__).read())
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert imported and not [
        name for name in imported if name.split(".")[0] in ("django", "governance", "rest_framework")
    ]


@pytest.mark.django_db
@pytest.mark.usefixtures("fast_passwords")
def test_the_task_records_the_inspection_under_the_audit_chain(users, model, make_version):
    from governance.audit.models import AuditEvent
    from workers.artifacts import inspect_artifact

    version = make_version(model, content=trained_artifact())
    report = inspect_artifact(version.pk)  # run in this process; the Celery base task opens the audit context
    version.refresh_from_db()
    assert version.artifact_metadata == report
    assert report["sha256_verified"] is True and report["detected_format"] == "sklearn-joblib"
    event = AuditEvent.objects.get(action="version.artifact_inspected", object_id=str(version.pk))
    assert event.source == "task"
    # A redelivered message finds the work done and writes nothing.
    assert inspect_artifact(version.pk) == report
    assert AuditEvent.objects.filter(action="version.artifact_inspected").count() == 1
