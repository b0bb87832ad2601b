"""Each decision keeps the gate as the person saw it when deciding, in its row, its audit record,
the API and the evidence bundle (issue 14: "the gate result at decision time")."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from governance.audit.models import AuditEvent
from tests.test_approvals import NO_GATES_ONE_APPROVER, decide, request
from tests.test_compliance_mapping import govern

pytestmark = pytest.mark.usefixtures("fast_passwords")


def test_a_decision_keeps_the_gate_it_was_made_on(api, users, superuser, model, make_version):
    govern(model, superuser, NO_GATES_ONE_APPROVER)
    version = make_version(model)
    made = decide(request(version, users.author, environments=("staging",)), users.approver)

    # before the decision the quorum was not met: that is what the approver saw
    staging = made.gate["staging"]
    assert staging["verdict"] == "pending", staging
    assert any(line["status"] == "missing" for line in staging["quorum"]), staging
    assert set(made.gate) == {"staging"}

    event = AuditEvent.objects.get(action="review.decide", object_id=str(made.pk))
    assert json.loads(event.changes)["after"]["gate"] == made.gate  # chained: never edited unseen

    client = api.as_user(users.auditor)
    shown = client.get(f"/api/v1/approval-requests/{made.request_id}/").json()["decisions"][0]
    assert shown["gate"] == made.gate

    bundle = client.get(f"/api/v1/versions/{version.pk}/bundle/")
    assert bundle.status_code == 200
    with zipfile.ZipFile(io.BytesIO(b"".join(bundle.streaming_content))) as archive:
        requests = json.loads(archive.read("approvals/requests.json"))
    assert requests["requests"][0]["decisions"][0]["gate_at_decision"] == made.gate
