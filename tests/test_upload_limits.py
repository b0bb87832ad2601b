"""Issue 10, finding 5: an upload is refused before its body is spooled to disk.

A real HTTP server (``live_server``) and raw sockets, as a client that lies about nothing but
sends a lot: a declared ``Content-Length`` over the route's limit is answered 413 before the
body is sent; a body without one (chunked) is answered 411; a file that turns out larger than the
limit while it streams is cut off there. In each case no temporary file is left (or grows) in
``FILE_UPLOAD_TEMP_DIR``, and nothing is stored.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import threading
import time

import pytest

from governance.accounts import services as accounts
from governance.core.context import audit_context
from governance.registry.models import ModelVersion
from tests.conftest import signed_in

pytestmark = pytest.mark.usefixtures("fast_passwords")

SIX_GIB = 6 * 1024**3
BOUNDARY = "charter-upload-limit-test"


@pytest.fixture
def upload_tmp(tmp_path, settings):
    """Django's temporary upload files go here; files over 64 KiB are spooled to disk at once."""
    folder = tmp_path / "upload-tmp"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    return folder


def _spooled(folder) -> int:
    return sum(os.path.getsize(folder / name) for name in os.listdir(folder))


def _preamble(field: str, filename: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


def _field(name: str, value: str) -> bytes:
    return f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()


def _signed(interface: str, user, headers: dict[str, str]) -> dict[str, str]:
    """The headers of an authenticated client: a token for the API, a session and a CSRF token for the UI."""
    if interface == "api":
        with audit_context(source="cli", actor=user):
            _, secret = accounts.token_create(actor=user, name="ci", scopes=["read", "write"])
        return headers | {"Authorization": f"Bearer {secret}"}
    session = signed_in(user).cookies["sessionid"].value
    csrf = secrets.token_hex(16)  # an unmasked 32-character secret, as the cookie holds
    return headers | {"Cookie": f"sessionid={session}; csrftoken={csrf}", "X-CSRFToken": csrf}


def _open(live_server, path: str, headers: dict[str, str]) -> socket.socket:
    host, port = live_server.thread.host, live_server.thread.port
    sock = socket.create_connection((host, port), timeout=30)
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers.items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


class Sender(threading.Thread):
    """Sends ``total`` bytes of file content in 64 KiB chunks until told to stop or the server
    closes; ``sent`` says how much went out."""

    def __init__(self, sock: socket.socket, total: int):
        super().__init__(daemon=True)
        self.sock, self.total, self.sent = sock, total, 0
        self.stop = threading.Event()

    def run(self):
        chunk = b"\x80" * 65536
        try:
            while self.sent < self.total and not self.stop.is_set():
                self.sock.sendall(chunk)
                self.sent += len(chunk)
        except OSError:  # the server closed the connection: fine
            pass


def _answer(sock: socket.socket, *, wait: float, watch=None) -> tuple[http.client.HTTPResponse, list[int]]:
    """The server's response, waiting up to ``wait`` seconds; ``watch()`` is sampled meanwhile."""
    samples = []
    sock.settimeout(0.2)
    deadline = time.monotonic() + wait
    while True:
        if watch is not None:
            samples.append(watch())
        try:
            if sock.recv(1, socket.MSG_PEEK):
                break
        except TimeoutError:
            pass
        if time.monotonic() > deadline:
            spooled = f"; {max(samples)} bytes were spooled to a temporary file meanwhile" if samples else ""
            pytest.fail(f"No answer within {wait}s while the declared body was still being sent{spooled}.")
    sock.settimeout(30)
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response, samples


@pytest.mark.parametrize("interface", ["api", "ui"])
def test_a_declared_6_gib_upload_is_refused_before_the_body_is_read(live_server, upload_tmp, users, model, interface):
    path = "/api/v1/versions/" if interface == "api" else f"/models/{model.pk}/versions/new/"
    sock = _open(live_server, path, _signed(interface, users.author, {
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": str(SIX_GIB),
    }))  # fmt: skip
    try:
        sock.sendall(_field("model", str(model.pk)) + _preamble("artifact", "model.joblib"))
        sender = Sender(sock, 4 * 1024**2)  # a few MB of the 6 GiB, while waiting for the answer
        sender.start()
        response, samples = _answer(sock, wait=15, watch=lambda: _spooled(upload_tmp))
        assert response.status == 413, (response.status, response.read()[:300])
        body = response.read().decode()
        sender.stop.set()
    finally:
        sock.close()
    sender.join(timeout=30)
    assert sender.sent < SIX_GIB
    if interface == "api":
        assert response.getheader("Content-Type").startswith("application/json")
        error = json.loads(body)
        assert error["code"] == "artifact_too_large"
        assert f"{SIX_GIB:,} bytes" in error["detail"] and "limit" in error["detail"]
    else:
        assert response.getheader("Content-Type").startswith("text/html")
        assert "artifact_too_large" in body and "larger than the" in body
    assert max(samples, default=0) == 0 and os.listdir(upload_tmp) == []
    assert not ModelVersion.objects.exists()


def test_a_chunked_upload_without_a_length_is_refused_and_nothing_is_spooled(live_server, upload_tmp, users, model):
    sock = _open(live_server, "/api/v1/versions/", _signed("api", users.author, {
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Transfer-Encoding": "chunked",
    }))  # fmt: skip
    try:
        part = _preamble("artifact", "model.joblib") + b"\x80" * 65536
        sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        response, samples = _answer(sock, wait=15, watch=lambda: _spooled(upload_tmp))
        assert response.status == 411
        error = json.loads(response.read())
    finally:
        sock.close()
    assert error["code"] == "length_required" and "Content-Length" in error["detail"]
    assert max(samples, default=0) == 0 and os.listdir(upload_tmp) == []
    assert not ModelVersion.objects.exists()


def _multipart(fields: dict[str, str], file_field: str, size: int) -> bytes:
    parts = b"".join(_field(k, v) for k, v in fields.items())
    return parts + _preamble(file_field, "upload.bin") + b"\x80" * size + f"\r\n--{BOUNDARY}--\r\n".encode()


@pytest.mark.parametrize("interface", ["api", "ui"])
def test_a_file_over_the_limit_is_cut_off_as_it_streams_and_its_temporary_file_removed(
    live_server, upload_tmp, settings, users, model, interface
):
    """The declared length is within what the route accepts with its form fields, but the file
    alone is over the limit: the handler stops reading at the limit and the temporary file goes."""
    settings.ARTIFACT_MAX_BYTES = 1024**2
    body = _multipart({"model": str(model.pk), "framework": "sklearn", "artifact_format": "sklearn-joblib"},
                      "artifact", 3 * 1024**2)  # fmt: skip
    headers = _signed(interface, users.author, {
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": str(len(body)),
    })  # fmt: skip
    path = "/api/v1/versions/" if interface == "api" else f"/models/{model.pk}/versions/new/"
    sock = _open(live_server, path, headers)
    try:
        sock.sendall(body)
        response, _ = _answer(sock, wait=30)
        assert response.status == 413, (response.status, response.read()[:500])
        text = response.read().decode()
    finally:
        sock.close()
    assert "artifact_too_large" in text and f"{1024**2:,}-byte limit" in text
    assert os.listdir(upload_tmp) == []
    assert not ModelVersion.objects.exists()
    # Just under the limit, the same request goes through (the limit is the file's, not the body's).
    if interface == "api":
        body = _multipart({"model": str(model.pk)}, "artifact", 1024**2)
        headers["Content-Length"] = str(len(body))
        sock = _open(live_server, path, headers)
        try:
            sock.sendall(body)
            response, _ = _answer(sock, wait=30)
            assert response.status == 201, response.read()[:500]
        finally:
            sock.close()
        assert ModelVersion.objects.filter(model=model, artifact_size=1024**2).exists()
        assert os.listdir(upload_tmp) == []
