"""What the schema promises, the API holds: each disagreement schemathesis found, pinned (issue 11).

tests/test_api_fuzz.py finds them; these say, one by one, what was wrong and how it answers now.
"""

from __future__ import annotations

import io

import pytest
import yaml
from django.core.management import call_command

from tests.conftest import assert_error, governed_state

pytestmark = pytest.mark.usefixtures("fast_passwords")


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    path = tmp_path_factory.mktemp("schema") / "openapi.yaml"
    call_command("spectacular", "--validate", "--file", str(path), stdout=io.StringIO())
    return yaml.safe_load(path.read_text())


def test_every_operation_documents_the_refusals_every_request_can_meet(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert "429" in codes, (method, path, sorted(codes))
            if {} not in operation.get("security", [{}]):  # open to everyone: the audit public key
                assert {"401", "403"} <= codes, (method, path, sorted(codes))
            if method in {"post", "put", "patch", "delete"}:
                assert {"411", "413", "415"} <= codes, (method, path, sorted(codes))
            if "{" in path:
                assert "404" in codes, (method, path, sorted(codes))


def test_request_bodies_refuse_unknown_fields_and_say_so(schema, api, users, api_world):
    body = schema["paths"]["/api/v1/models/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]["additionalProperties"] is False
    r = api.as_user(users.author).post("/api/v1/models/", {"name": "x", "team": api_world.team.pk, "colour": "red"})
    assert_error(r, 400, "unknown_field")


def test_nullable_fields_are_documented_as_nullable(schema):
    components = schema["components"]["schemas"]
    assert components["PolicyOut"]["properties"]["team_name"].get("nullable") is True
    for name in ("created_by", "decided_by"):
        assert components["PolicyRevisionOut"]["properties"][name].get("nullable") is True


def test_card_revisions_are_documented_as_the_list_they_are(schema, api, users, api_world):
    response = schema["paths"]["/api/v1/versions/{id}/card/revisions/"]["get"]["responses"]["200"]
    assert response["content"]["application/json"]["schema"]["type"] == "array"
    assert isinstance(api.as_user(users.author).get(f"/api/v1/versions/{api_world.v2.pk}/card/revisions/").json(), list)


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", 0), ("name", 7.2e287), ("description", False), ("use_case", ["a"]), ("owners", [5])],
)
def test_a_json_value_of_the_wrong_type_is_refused_not_converted(api, users, api_world, field, value):
    """DRF's text fields took ``0`` as ``"0"``: a team renamed to "7.285841553637218e+287" was a 200."""
    client = api.as_user(users.author)
    before = governed_state()
    r = client.patch(f"/api/v1/models/{api_world.model.pk}/", {field: value})
    assert field in assert_error(r, 400, "invalid")["fields"]
    assert governed_state() == before


def test_only_the_uploads_read_multipart_and_the_rest_reads_json(api, users, api_world):
    client = api.as_user(users.author)
    form = client.patch(f"/api/v1/models/{api_world.model.pk}/", {"description": "x"}, format="multipart")
    assert_error(form, 415, "unsupported_media_type")
    json_upload = client.post("/api/v1/versions/", {"model": api_world.model.pk}, format="json")
    assert_error(json_upload, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/models/?team=0", "team"),
        ("/api/v1/models/?team=99999999999999999999", "team"),
        ("/api/v1/versions/?model=0", "model"),
        ("/api/v1/versions/?model=abc", "model"),
        ("/api/v1/notifications/?unread=null", "unread"),
        ("/api/v1/approval-requests/?awaiting_me=maybe", "awaiting_me"),
        ("/api/v1/policies/assignments/?state=-58800", "state"),
        ("/api/v1/memberships/?team=abc", "team"),
        ("/api/v1/models/?page_size=0", "page_size"),
        ("/api/v1/audit-events/?page_size=abc", "page_size"),
        ("/api/v1/models/?q=a%00b", "q"),
        ("/api/v1/versions/?model=" + "9" * 5000, "model"),
    ],
)
def test_a_query_parameter_off_its_schema_is_a_400_naming_it(api, users, api_world, url, field):
    """Each was quietly ignored (a 200 with the unfiltered list), or a 500 for an id past a bigint."""
    body = assert_error(api.as_user(users.author).get(url), 400)
    assert field in body["fields"], body


def test_an_empty_query_parameter_means_no_filter(schema, api, users, api_world):
    parameters = schema["paths"]["/api/v1/audit-events/"]["get"]["parameters"]
    assert all(p.get("allowEmptyValue") for p in parameters if not p.get("required"))
    client = api.as_user(users.author)
    assert client.get("/api/v1/audit-events/?since=&until=&team=&page_size=").status_code == 200
    filtered = client.get("/api/v1/memberships/?team=").json()
    assert filtered["count"] == client.get("/api/v1/memberships/").json()["count"]


def test_a_team_nobody_can_see_filters_to_nothing_rather_than_an_error(api, users, api_world):
    """The membership and webhook lists looked the team up and answered 400 for an id that was valid."""
    client = api.as_user(users.author)
    for url in ("/api/v1/memberships/?team=987654", "/api/v1/webhooks/?team=987654"):
        r = client.get(url)
        assert r.status_code == 200, r.content
        assert r.json()["results"] == []


def test_a_team_name_needs_a_letter_or_digit_as_the_schema_says(schema, api, users):
    pattern = schema["components"]["schemas"]["TeamInRequest"]["properties"]["name"]["pattern"]
    admin = api.as_user(users.superuser)
    assert_error(admin.post("/api/v1/teams/", {"name": "\u009e"}), 400, "invalid_name")
    assert_error(admin.post("/api/v1/teams/", {"name": "é"}), 400, "invalid_name")
    assert admin.post("/api/v1/teams/", {"name": "Équipe 7"}).status_code == 201
    assert pattern == "[A-Za-z0-9]"


def test_a_validation_message_about_the_whole_input_still_has_fields_as_an_object(api, users, api_world):
    body = assert_error(api.as_user(users.author).get("/api/v1/models/?search=a%00"), 400)
    assert isinstance(body["fields"], dict), body


def test_a_download_answers_a_request_for_its_own_type(api, users, api_world):
    """``Accept: application/octet-stream``, the artifact's documented type, was a 406."""
    client = api.as_user(users.author)
    url = f"/api/v1/versions/{api_world.v1.pk}/artifact/"
    r = client.get(url, HTTP_ACCEPT="application/octet-stream")
    assert r.status_code == 200, r.content[:300]
    assert b"".join(r.streaming_content) if r.streaming else r.content
    assert_error(client.get(f"/api/v1/versions/{api_world.foreign_version.pk}/artifact/",
                            HTTP_ACCEPT="application/octet-stream"), 404)  # fmt: skip


def test_a_version_id_to_compare_with_is_a_bounded_whole_number(api, users, api_world):
    """``against`` of 4,300 digits or more was a 500: Python's ``int()`` refuses to read it."""
    client = api.as_user(users.author)
    for against in ("9" * 5000, "9223372036854775808", "0", "x"):
        body = assert_error(client.get(f"/api/v1/versions/{api_world.v2.pk}/diff/?against={against}"), 400)
        assert "against" in body["fields"]
    assert client.get(f"/api/v1/versions/{api_world.v2.pk}/diff/?against={api_world.v1.pk}").status_code == 200
