from governance.audit.models import AuditEvent


def test_author_registers_a_version_and_the_audit_event_carries_the_request_id(api, model, users):
    client = api.as_user(users.author)
    from tests.conftest import make_artifact

    r = client.post(
        "/api/v1/versions/",
        {"model": model.pk, "artifact": make_artifact(), "metrics": '{"accuracy": 0.91}', "tags": '["baseline"]'},
        format="multipart",
        HTTP_X_REQUEST_ID="req-123",
    )
    assert r.status_code == 201, r.json()
    assert r["X-Request-ID"] == "req-123"
    event = AuditEvent.objects.get(action="version.create", object_id=str(r.json()["id"]))
    assert event.request_id == "req-123" and event.actor == users.author and event.source == "api"
