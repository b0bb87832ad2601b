"""Compute hosts through the API (issue 15, points 1 and 2): a host-scoped token registers its host
(idempotently) and sends its heartbeats, and can do nothing else; another token cannot take a name that is
held; only the registering token beats for a host; every signed-in user reads hosts; the status goes
stale, then offline, with time; bad input is a 400 with a code and nothing stored; the token rules
(``host`` alone, held by operators and admins) are kept.
"""

from __future__ import annotations

import copy
import datetime as dt
import json

import pytest
from django.utils import timezone

from governance.accounts import services as accounts
from governance.accounts.models import Membership, Role
from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from governance.hosts import services
from governance.hosts.models import Host
from tests.conftest import assert_error, governed_state

pytestmark = pytest.mark.usefixtures("fast_passwords")

H100 = {
    "index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-4d1b6b1e-2f59-0d8a-6ad1-0f1c3a1e7b11",
    "memory_total_bytes": 85_520_809_984, "driver_version": "550.54.15", "cuda_version": "12.4",
}  # fmt: skip
INVENTORY = {
    "hostname": "gpu-box-1", "platform": "Linux-6.8.0-x86_64", "python": "3.11.9", "cpu_model": "AMD EPYC 9654",
    "cpu_cores": 192, "memory_total_bytes": 1_623_497_412_608, "gpus": [H100, {**H100, "index": 1,
                                                                              "uuid": "GPU-2"}],
    "gpu_note": None,
}  # fmt: skip
NO_GPU = {"cpu_model": "Intel Xeon", "cpu_cores": 8, "memory_total_bytes": 34_359_738_368, "gpus": [],
          "gpu_note": "no NVIDIA driver (NVML: NVMLError_LibraryNotFound)"}  # fmt: skip
STATS = [
    {"index": 0, "memory_used_bytes": 12_884_901_888, "utilization_percent": 87},
    {"index": 1, "memory_used_bytes": 0, "utilization_percent": None},
]


def host_token(user, name: str = "agent", **kw) -> str:
    with audit_context(source="cli", actor=user):
        _, secret = accounts.token_create(actor=user, name=name, scopes=["host"], **kw)
    return secret


def register(client, name: str = "gpu-1", **body):
    return client.post("/api/v1/hosts/", {"name": name, "labels": {"gpu": "h100"}, "inventory": INVENTORY,
                                          "agent_version": "1.0", **body}, format="json")  # fmt: skip


def events(action: str):
    return AuditEvent.objects.filter(action=action).order_by("seq")


@pytest.fixture
def agent(api, users):
    """The operator's host token, as a client."""
    return api.with_token(host_token(users.operator))


# --- registering and heartbeats --------------------------------------------------------------------


def test_a_host_token_registers_its_host_which_heartbeats_without_flooding_the_audit_log(api, users, agent):
    r = register(agent)
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["name"] == "gpu-1" and body["queue"] == "host.gpu-1" and body["status"] == "online"
    assert body["labels"] == {"gpu": "h100"} and body["inventory"] == INVENTORY
    assert body["registered_by"] == "operator" and body["agent_version"] == "1.0" and body["last_gpu_stats"] == []
    host = Host.objects.get(name="gpu-1")
    assert host.token.user == users.operator and host.token.scopes == ["host"]
    event = events("host.register").get()
    assert event.actor == users.operator and event.object_id == str(host.pk) and event.source == "api"
    recorded = json.loads(event.changes)
    assert recorded["after"]["inventory"] == INVENTORY and recorded["token_id"] == host.token_id

    registered_beat = host.last_heartbeat_at
    count = AuditEvent.objects.count()
    for _ in range(3):
        r = agent.post(f"/api/v1/hosts/{host.pk}/heartbeat/", {"gpus": STATS}, format="json")
        assert r.status_code == 200, r.content
    assert r.json()["last_gpu_stats"] == STATS and r.json()["status"] == "online"
    host.refresh_from_db()
    assert host.last_heartbeat_at > registered_beat and host.last_gpu_stats == STATS
    assert AuditEvent.objects.count() == count, "heartbeats are not audit events"
    # an empty heartbeat (a host without GPUs, or NVML silent) is a heartbeat too
    assert agent.post(f"/api/v1/hosts/{host.pk}/heartbeat/", {}, format="json").status_code == 200


def test_registering_again_with_the_same_token_updates_the_host_and_audits_only_changes(api, users, agent):
    first = register(agent).json()
    r = register(agent)
    assert r.status_code == 200 and r.json()["id"] == first["id"]
    assert not events("host.reregister").exists(), "the same registration again changes nothing"
    inventory = {**INVENTORY, "gpus": [H100]}
    r = register(agent, labels={"gpu": "h100", "env": "prod"}, inventory=inventory, agent_version="1.1")
    assert r.status_code == 200 and r.json()["id"] == first["id"]
    assert r.json()["labels"] == {"env": "prod", "gpu": "h100"} and r.json()["inventory"]["gpus"] == [H100]
    event = events("host.reregister").get()
    recorded = json.loads(event.changes)
    assert recorded["before"]["labels"] == {"gpu": "h100"} and recorded["after"]["agent_version"] == "1.1"
    assert Host.objects.count() == 1


def test_another_token_reusing_a_held_name_is_409_until_that_token_is_revoked(api, users, agent):
    host = Host.objects.get(pk=register(agent).json()["id"])
    other = api.with_token(host_token(users.admin, name="other machine"))
    before = governed_state(), list(Host.objects.values())
    body = assert_error(register(other, inventory=NO_GPU, labels={}), 409, "host_name_taken")
    assert "gpu-1" in body["detail"]
    assert (governed_state(), list(Host.objects.values())) == before
    # nor may it beat for the host
    assert_error(other.post(f"/api/v1/hosts/{host.pk}/heartbeat/", {"gpus": []}, format="json"), 403,
                 "host_token_mismatch")  # fmt: skip

    with audit_context(source="cli", actor=users.operator):
        accounts.token_revoke(actor=users.operator, token=host.token)
    r = register(other, inventory=NO_GPU, labels={})
    assert r.status_code == 200 and r.json()["id"] == host.pk and r.json()["registered_by"] == "admin"
    host.refresh_from_db()
    assert host.token.user == users.admin and host.inventory == NO_GPU and host.last_gpu_stats == []
    recorded = json.loads(events("host.reregister").get().changes)
    assert "revoked" in recorded["reason"] and recorded["before"]["token"] != recorded["after"]["token"]


def test_only_the_registering_token_heartbeats_and_an_unknown_host_is_404(api, users, agent):
    host = Host.objects.get(pk=register(agent).json()["id"])
    agent.post(f"/api/v1/hosts/{host.pk}/heartbeat/", {"gpus": STATS}, format="json")
    host.refresh_from_db()
    snapshot = (host.last_heartbeat_at, host.last_gpu_stats)
    stranger = api.with_token(host_token(users.operator, name="another agent"))  # same owner, another token
    assert_error(stranger.post(f"/api/v1/hosts/{host.pk}/heartbeat/", {"gpus": []}, format="json"), 403,
                 "host_token_mismatch")  # fmt: skip
    # a person signed in is no agent, even a site administrator
    assert_error(api.as_user(users.superuser).post(f"/api/v1/hosts/{host.pk}/heartbeat/", {"gpus": []},
                                                   format="json"), 403, "host_token_required")  # fmt: skip
    host.refresh_from_db()
    assert (host.last_heartbeat_at, host.last_gpu_stats) == snapshot
    assert_error(agent.post("/api/v1/hosts/999999/heartbeat/", {"gpus": []}, format="json"), 404, "host_not_found")


# --- a host token does nothing else; other tokens do not reach the agent's calls --------------------


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("get", "/api/v1/models/", None),
        ("post", "/api/v1/models/", {"team": 1, "name": "sneaky", "risk_tier": "high"}),
        ("post", "/api/v1/deployment-actions/", {"kind": "deploy", "environment": 1, "version": 1}),
        ("get", "/api/v1/hosts/", None),
        ("get", "/api/v1/tokens/", None),
        ("post", "/api/v1/tokens/", {"name": "more", "scopes": ["host"]}),
        ("post", "/api/v1/audit-events/verify/", {}),
    ],
    ids=["list-models", "create-model", "deploy", "list-hosts", "list-tokens", "create-token", "verify-audit"],
)
def test_a_host_token_can_do_nothing_but_the_agents_calls(api, users, agent, method, url, body):
    before = governed_state()
    call = getattr(agent, method)
    r = call(url, body, format="json") if body is not None else call(url)
    assert_error(r, 403, "token_scope_missing")
    assert governed_state() == before


def test_tokens_without_the_host_scope_are_refused_on_the_agents_calls(api, users, agent):
    host = Host.objects.get(pk=register(agent).json()["id"])
    with audit_context(source="cli", actor=users.operator):
        _, every_other = accounts.token_create(actor=users.operator, name="ci", scopes=["read", "write", "deploy",
                                                                                      "admin", "transition"])  # fmt: skip
    client = api.with_token(every_other)
    before = list(Host.objects.values())
    assert_error(register(client, name="gpu-9"), 403, "token_scope_missing")
    assert_error(client.post(f"/api/v1/hosts/{host.pk}/heartbeat/", {"gpus": []}, format="json"), 403,
                 "token_scope_missing")  # fmt: skip
    assert list(Host.objects.values()) == before
    # reading hosts is a 'read' token's, as every list is
    assert client.get("/api/v1/hosts/").json()["results"][0]["name"] == "gpu-1"


# --- who may hold a host token, and the scope alone ------------------------------------------------


def test_a_host_token_carries_no_other_scope(api, users):
    client = api.as_user(users.operator)
    before = governed_state()
    body = assert_error(client.post("/api/v1/tokens/", {"name": "both", "scopes": ["host", "read"]}, format="json"),
                        400, "host_scope_alone")  # fmt: skip
    assert "scopes" in body["fields"]
    assert governed_state() == before
    assert client.post("/api/v1/tokens/", {"name": "agent", "scopes": ["host"]}, format="json").status_code == 201


@pytest.mark.parametrize(
    ("role", "allowed"),
    [("viewer", False), ("author", False), ("reviewer", False), ("approver", False), ("auditor", False),
     ("outsider", False), ("operator", True), ("admin", True), ("superuser", True)],
)  # fmt: skip
def test_only_operators_admins_and_site_admins_may_create_a_host_token(api, users, role, allowed):
    client = api.as_user(getattr(users, role))
    before = governed_state()
    r = client.post("/api/v1/tokens/", {"name": "agent", "scopes": ["host"]}, format="json")
    if allowed:
        assert r.status_code == 201 and r.json()["token"]["scopes"] == ["host"], r.content
    else:
        assert_error(r, 403, "host_register_not_permitted")
        assert governed_state() == before


def test_the_token_page_refuses_mixing_host_with_another_scope(login, users):
    client = login(users.operator)
    page = client.get("/tokens/").content.decode()
    assert 'value="host"' in page and "Register this machine as a compute host" in page
    r = client.post("/tokens/", {"name": "both", "scopes": ["host", "read"], "expires_in_days": 30})
    assert r.status_code == 400 and "the host scope and no other" in r.content.decode()
    assert not users.operator.api_tokens.exists()


def test_an_owner_who_lost_the_role_can_no_longer_register_or_beat(api, users, agent):
    host = Host.objects.get(pk=register(agent).json()["id"])
    Membership.objects.filter(user=users.operator, role=Role.OPERATOR).delete()
    assert_error(agent.post(f"/api/v1/hosts/{host.pk}/heartbeat/", {"gpus": []}, format="json"), 403,
                 "host_register_not_permitted")  # fmt: skip
    assert_error(register(agent), 403, "host_register_not_permitted")


def test_an_operator_may_register_a_host_signed_in_and_its_agent_token_takes_it_over(api, users):
    assert_error(register(api.as_user(users.viewer), name="gpu-7"), 403, "host_register_not_permitted")
    r = register(api.as_user(users.operator), name="gpu-7")
    assert r.status_code == 201 and Host.objects.get(name="gpu-7").token is None
    claimed = register(api.with_token(host_token(users.admin)), name="gpu-7")
    assert claimed.status_code == 200 and Host.objects.get(name="gpu-7").token.user == users.admin


# --- reading, status and filters --------------------------------------------------------------------


def test_every_signed_in_user_reads_hosts_and_anonymous_is_401(api, users, agent):
    pk = register(agent).json()["id"]
    for role in ("viewer", "outsider", "auditor"):
        client = api.as_user(getattr(users, role))
        assert [h["name"] for h in client.get("/api/v1/hosts/").json()["results"]] == ["gpu-1"]
        assert client.get(f"/api/v1/hosts/{pk}/").json()["inventory"]["gpus"][0]["name"] == H100["name"]
    assert_error(api.as_user(None).get("/api/v1/hosts/"), 401)
    assert_error(api.as_user(users.viewer).get("/api/v1/hosts/999999/"), 404)


def _age(name: str, seconds: float) -> None:
    Host.objects.filter(name=name).update(last_heartbeat_at=timezone.now() - dt.timedelta(seconds=seconds))


def _status(client, name: str) -> str:
    return next(h["status"] for h in client.get("/api/v1/hosts/").json()["results"] if h["name"] == name)


def test_a_host_goes_stale_then_offline_as_time_passes_without_heartbeats(api, users, agent, settings):
    settings.HOST_STALE_SECONDS, settings.HOST_OFFLINE_SECONDS = 90, 300
    pk = register(agent).json()["id"]
    reader = api.as_user(users.viewer)
    assert _status(reader, "gpu-1") == "online"
    _age("gpu-1", 60)
    assert _status(reader, "gpu-1") == "online"
    _age("gpu-1", 120)
    assert _status(reader, "gpu-1") == "stale" and reader.get(f"/api/v1/hosts/{pk}/").json()["status"] == "stale"
    assert [h["name"] for h in reader.get("/api/v1/hosts/?status=stale").json()["results"]] == ["gpu-1"]
    assert reader.get("/api/v1/hosts/?status=online").json()["results"] == []
    _age("gpu-1", 301)
    assert _status(reader, "gpu-1") == "offline"
    assert [h["name"] for h in reader.get("/api/v1/hosts/?status=offline").json()["results"]] == ["gpu-1"]
    # a heartbeat brings it back; the thresholds are settings
    assert agent.post(f"/api/v1/hosts/{pk}/heartbeat/", {"gpus": STATS}, format="json").json()["status"] == "online"
    settings.HOST_STALE_SECONDS, settings.HOST_OFFLINE_SECONDS = 5, 10
    _age("gpu-1", 7)
    assert _status(reader, "gpu-1") == "stale"


def test_hosts_filter_by_labels_and_status_and_bad_filters_are_400(api, users):
    with audit_context(source="cli", actor=users.operator):
        for name, labels in (("gpu-a", {"gpu": "h100", "env": "prod"}), ("gpu-b", {"gpu": "h100"}),
                             ("cpu-c", {"env": "prod"})):  # fmt: skip
            services.host_register(actor=users.operator, name=name, labels=labels, inventory=INVENTORY)
    reader = api.as_user(users.viewer)

    def names(query: str) -> list[str]:
        r = reader.get(f"/api/v1/hosts/?{query}")
        assert r.status_code == 200, r.content
        return [h["name"] for h in r.json()["results"]]

    assert names("label=gpu=h100") == ["gpu-a", "gpu-b"]
    assert names("label=gpu=h100,env=prod") == ["gpu-a"]
    assert names("label=env=dev") == []
    assert names("label=gpu=h100&status=online") == ["gpu-a", "gpu-b"]
    assert names("ordering=-name") == ["gpu-b", "gpu-a", "cpu-c"]
    assert names("label=gpu=h100,gpu=a100") == []  # both must match
    assert names("search=gpu-") == ["gpu-a", "gpu-b"]
    for query in ("label=gpu", "label==h100", "label=GPU=h100", "label=gpu=h100,", "status=sleeping",
                  "page_size=0"):  # fmt: skip
        assert_error(reader.get(f"/api/v1/hosts/?{query}"), 400)


def test_the_host_list_reads_a_fixed_number_of_queries(api, users, django_assert_max_num_queries):
    reader = api.as_user(users.viewer)
    reader.get("/api/v1/hosts/")  # the session and roles, once
    with audit_context(source="cli", actor=users.operator):
        for n in range(30):
            services.host_register(actor=users.operator, name=f"gpu-{n}", inventory=INVENTORY, labels={"n": str(n)})
    with django_assert_max_num_queries(4):
        r = reader.get("/api/v1/hosts/?page_size=30")
    assert len(r.json()["results"]) == 30


# --- bad input ---------------------------------------------------------------------------------------


def _without(mapping: dict, key: str) -> dict:
    copied = copy.deepcopy(mapping)
    copied.pop(key)
    return copied


BAD_REGISTRATIONS = [
    ({"name": "GPU_1"}, "invalid_name"),
    ({"name": "-gpu"}, "invalid_name"),
    ({"name": "g" * 61}, "invalid_name"),
    ({"labels": ["gpu=h100"]}, "invalid_labels"),
    ({"labels": "gpu=h100"}, "invalid_labels"),
    ({"labels": {"GPU": "h100"}}, "invalid_labels"),
    ({"labels": {"gpu": "h" * 64}}, "invalid_labels"),
    ({"labels": {"gpu": ""}}, "invalid_labels"),
    ({"labels": {"gpu": 100}}, "invalid_labels"),
    ({"labels": {f"k{n}": "v" for n in range(33)}}, "invalid_labels"),
    ({"inventory": []}, "invalid_inventory"),
    ({"inventory": "a100"}, "invalid_inventory"),
    ({"inventory": _without(INVENTORY, "gpus")}, "invalid_inventory"),
    ({"inventory": _without(INVENTORY, "cpu_cores")}, "invalid_inventory"),
    ({"inventory": {**INVENTORY, "cpu_cores": 0}}, "invalid_inventory"),
    ({"inventory": {**INVENTORY, "cpu_cores": True}}, "invalid_inventory"),
    ({"inventory": {**INVENTORY, "cpu_cores": "192"}}, "invalid_inventory"),
    ({"inventory": {**INVENTORY, "memory_total_bytes": -1}}, "invalid_inventory"),
    ({"inventory": {**INVENTORY, "disk": "2 TB"}}, "invalid_inventory"),
    ({"inventory": {**INVENTORY, "cpu_model": "x" * 201}}, "invalid_inventory"),
    ({"inventory": {**INVENTORY, "gpus": {"0": H100}}}, "invalid_inventory"),
    ({"inventory": {**INVENTORY, "gpus": [_without(H100, "name")]}}, "invalid_inventory"),
    ({"inventory": {**INVENTORY, "gpus": [H100, H100]}}, "invalid_inventory"),
    ({"inventory": {**INVENTORY, "gpus": [{**H100, "memory_total_bytes": 1.5}]}}, "invalid_inventory"),
    ({"inventory": {**INVENTORY, "gpus": ["H100"]}}, "invalid_inventory"),
    ({"agent_version": "1.0; rm -rf /"}, "invalid_agent_version"),
    ({"hostname": "gpu-box"}, "unknown_field"),
]


@pytest.mark.parametrize(("change", "code"), BAD_REGISTRATIONS, ids=[f"{c}-{n}" for n, (_, c) in
                                                                      enumerate(BAD_REGISTRATIONS)])  # fmt: skip
def test_a_bad_registration_is_400_with_its_code_and_stores_nothing(api, users, agent, change, code):
    before = governed_state(), list(Host.objects.values())
    body = assert_error(register(agent, **change), 400, code)
    assert code == "unknown_field" or body.get("fields"), body  # the field named, where there is one
    assert (governed_state(), list(Host.objects.values())) == before


BAD_HEARTBEATS = [
    ({"gpus": {"0": {}}}, "invalid_gpu_stats"),
    ({"gpus": [{"memory_used_bytes": 1}]}, "invalid_gpu_stats"),
    ({"gpus": [{"index": 5, "memory_used_bytes": 1}]}, "unknown_gpu"),
    ({"gpus": [{"index": 0, "utilization_percent": 101}]}, "invalid_gpu_stats"),
    ({"gpus": [{"index": 0, "utilization_percent": "87%"}]}, "invalid_gpu_stats"),
    ({"gpus": [{"index": 0}, {"index": 0}]}, "invalid_gpu_stats"),
    ({"gpus": [{"index": 0, "temperature": 71}]}, "invalid_gpu_stats"),
    ({"gpu": []}, "unknown_field"),
]


@pytest.mark.parametrize(("body", "code"), BAD_HEARTBEATS, ids=[c for _, c in BAD_HEARTBEATS])
def test_a_bad_heartbeat_is_400_with_its_code_and_changes_nothing(api, agent, body, code):
    host = Host.objects.get(pk=register(agent).json()["id"])
    Host.objects.filter(pk=host.pk).update(last_heartbeat_at=timezone.now() - dt.timedelta(minutes=10))
    host.refresh_from_db()
    assert_error(agent.post(f"/api/v1/hosts/{host.pk}/heartbeat/", body, format="json"), 400, code)
    fresh = Host.objects.get(pk=host.pk)
    assert (fresh.last_heartbeat_at, fresh.last_gpu_stats) == (host.last_heartbeat_at, host.last_gpu_stats)
