"""Object ids in API paths are numbers: anything else is a 404 in JSON, never a 500."""

import pytest


@pytest.mark.parametrize(
    "path", ["webhooks", "approval-requests", "policies", "evaluations", "versions", "models", "audit-events"]
)
def test_non_numeric_ids_are_404(api, users, path):
    r = api.as_user(users.admin).get(f"/api/v1/{path}/abc/")
    assert r.status_code == 404, r.content[:200]
    assert r["Content-Type"].startswith("application/json"), r["Content-Type"]
