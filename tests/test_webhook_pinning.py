"""A webhook delivery connects to the address it checked (governance/notifications/services.py): the
receiver's name is resolved once, the addresses are checked, and the connection goes to a checked
one, with the name kept in the Host header and, over https, in SNI and the certificate check. A
resolver that answers differently the second time (DNS rebinding) no longer redirects the request."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import transaction

from governance.core.context import audit_context
from governance.notifications import services
from governance.notifications.models import DeliveryStatus
from tests.test_webhooks import _create, _event

pytestmark = pytest.mark.django_db

NAME = "receiver.test"


class Server:
    """An HTTP(S) server on one loopback address that records what reached it."""

    def __init__(self, host: str, port: int = 0, *, tls: ssl.SSLContext | None = None):
        self.requests: list[dict] = []
        self.server_names: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                server.requests.append({"host": self.headers["Host"], "event": self.headers["X-Charter-Event"]})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class Resolver:
    """``socket.getaddrinfo`` for NAME: ``first`` until armed, then ``first`` once more (the check
    at delivery) and ``later`` for every call after it (what a rebinding DNS server answers)."""

    def __init__(self, monkeypatch, *, first: str, later: str):
        self.first, self.later, self.armed, self.calls = first, later, False, 0
        real = socket.getaddrinfo

        def getaddrinfo(host, port, *args, **kwargs):
            if host != NAME:
                return real(host, port, *args, **kwargs)
            address = self.first
            if self.armed:
                self.calls += 1
                address = self.first if self.calls == 1 else self.later
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 0))]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _deliver(team, users):
    with transaction.atomic(), audit_context(source="cli", request_id="rebind-1", actor=users.author):
        delivery = _event(team, users)
    services.webhook_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    return delivery


def test_a_name_that_rebinds_after_the_check_is_still_delivered_to_the_checked_address(
    users, team, settings, monkeypatch
):
    # 127.0.0.1 stands for a public receiver, 127.0.0.2 for an internal service the check refuses
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    is_global = ipaddress.IPv4Address.is_global
    monkeypatch.setattr(
        ipaddress.IPv4Address, "is_global", property(lambda a: str(a) == "127.0.0.1" or is_global.fget(a))
    )
    with Server("127.0.0.1") as checked, Server("127.0.0.2", checked.port) as internal:
        resolver = Resolver(monkeypatch, first="127.0.0.1", later="127.0.0.2")
        _create(team, users.admin, f"http://{NAME}:{checked.port}/hooks", events=["review.requested"])
        resolver.armed = True
        delivery = _deliver(team, users)
    assert delivery.status == DeliveryStatus.DELIVERED, delivery.last_error
    assert internal.requests == [], "the request went to the address the name resolved to after the check"
    assert checked.requests == [{"host": f"{NAME}:{checked.port}", "event": "review.requested"}]
    assert resolver.calls == 1, "the name is resolved once per delivery"


def _certificate(tmp_path, name: str) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


@pytest.mark.parametrize("certified_name", [NAME, "someone-else.test"])
def test_over_https_the_pinned_connection_sends_and_checks_the_receivers_name(
    users, team, settings, monkeypatch, tmp_path, certified_name
):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True  # the receiver listens on loopback
    cert, key = _certificate(tmp_path, certified_name)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)  # the receiver's certificate is the one trusted
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with Server("127.0.0.1", tls=tls) as receiver:
        Resolver(monkeypatch, first="127.0.0.1", later="127.0.0.1")
        _create(team, users.admin, f"https://{NAME}:{receiver.port}/hooks", events=["review.requested"])
        delivery = _deliver(team, users)
    assert receiver.server_names and set(receiver.server_names) == {NAME}, "SNI names the receiver, not its address"
    if certified_name == NAME:
        assert delivery.status == DeliveryStatus.DELIVERED, delivery.last_error
        assert receiver.requests == [{"host": f"{NAME}:{receiver.port}", "event": "review.requested"}]
    else:  # a certificate for another name is refused, although the address is the pinned one
        assert delivery.status == DeliveryStatus.PENDING and delivery.last_status_code is None
        assert receiver.requests == [] and delivery.last_error.startswith("Connection failed")
