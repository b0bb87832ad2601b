"""Input that used to be a 500 (issue 11's fuzzing) is a 400 with a code naming the field, and stores nothing.

Four kinds: a time-zone offset PostgreSQL cannot represent in a date filter, an edited pagination
cursor, JSON values PostgreSQL's ``jsonb`` refuses (NUL, lone surrogates, infinite numbers) and JSON
nested deeper than any real document.
"""

from __future__ import annotations

import base64
from datetime import UTC, timedelta
from urllib.parse import quote, urlencode

import pytest
from django.utils import timezone

from governance.core.jsoninput import MAX_DEPTH
from governance.registry.models import ModelVersion
from tests.conftest import assert_error, governed_state, make_artifact

pytestmark = pytest.mark.usefixtures("fast_passwords")

ARTIFACT = b"\x80\x04" + b"0123456789" * 20


# --- 1. date filters: offsets outside what PostgreSQL stores --------------------------------------

BAD_DATES = [
    "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
    "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
    "0001-01-01T00:00:00+21:01",
]
# Python (and RFC 3339) take any offset under 24 h, PostgreSQL only up to 15:59: these were a 500, then
# a 400; they are instants like any other, compared in UTC, and the database never sees their offset.
FAR_OFFSETS = ["2026-01-01T00:00:00+21:01", "2026-01-01T00:00:00-16:00", "2026-01-01T00:00:00+23:59:59"]
DATE_FILTERS = [
    ("/api/v1/audit-events/", "since"),
    ("/api/v1/audit-events/", "until"),
    ("/api/v1/versions/", "created_after"),
    ("/api/v1/versions/", "created_before"),
    ("/api/v1/versions/?model={w.model.pk}&", "created_after"),
]


@pytest.mark.parametrize("value", BAD_DATES)
@pytest.mark.parametrize(("url", "field"), DATE_FILTERS, ids=[f"{u.split('/')[3]}-{f}" for u, f in DATE_FILTERS])
def test_date_filter_offset_out_of_range_is_a_400(api, users, api_world, url, field, value):
    url = url.format(w=api_world)
    sep = "" if url.endswith("&") else "?"
    r = api.as_user(users.auditor).get(f"{url}{sep}{field}={value.replace('+', '%2B')}")
    error = assert_error(r, 400, "invalid")
    assert field in error["fields"], error


@pytest.mark.parametrize("value", FAR_OFFSETS)
@pytest.mark.parametrize(("url", "field"), DATE_FILTERS, ids=[f"{u.split('/')[3]}-{f}" for u, f in DATE_FILTERS])
def test_date_filter_with_an_offset_postgresql_cannot_store_is_compared_in_utc(api, users, api_world, url, field,
                                                                                value):  # fmt: skip
    url = url.format(w=api_world)
    sep = "" if url.endswith("&") else "?"
    r = api.as_user(users.auditor).get(f"{url}{sep}{field}={value.replace('+', '%2B')}")
    assert r.status_code == 200, r.content[:300]


@pytest.mark.parametrize("hours", [14, 23])
def test_date_filter_offset_filters_in_utc(api, users, api_world, hours):
    """+14:00 is a real offset (Kiribati); +23:00 is none, but RFC 3339 allows it (and PostgreSQL could not
    store it): either is the same instant as the UTC time that many hours earlier."""
    client = api.as_user(users.auditor)
    created = api_world.v2.created_at.astimezone(UTC)
    at = (created + timedelta(seconds=1)).astimezone(timezone.get_fixed_timezone(hours * 60))
    stamp = at.isoformat().replace("+", "%2B")
    r = client.get(f"/api/v1/versions/?created_before={stamp}&model={api_world.model.pk}")
    assert r.status_code == 200, r.content[:300]
    assert {row["id"] for row in r.json()["results"]} == {api_world.v1.pk, api_world.v2.pk}
    r = client.get(f"/api/v1/versions/?created_after={stamp}&model={api_world.model.pk}")
    assert r.status_code == 200 and r.json()["results"] == []


@pytest.mark.parametrize("field", ["since", "until"])
def test_audit_page_names_a_date_out_of_range_instead_of_failing(login, users, api_world, field):
    """The page shares the API's filterset; like any filter it cannot read, it says so and leaves it out."""
    r = login(users.auditor).get(f"/audit/?{field}=9999-12-31T23:59:59-01:00")
    assert r.status_code == 200, r.status_code
    assert "Some filters were ignored" in r.content.decode()
    assert r.context["filterset"].form.errors[field] == [
        "The date is out of range: in UTC it falls outside the years 1 to 9999."
    ]


# --- 2. pagination cursors -------------------------------------------------------------------------


def _cursor(text: str) -> str:
    return quote(base64.b64encode(text.encode()).decode())


BAD_CURSORS = {
    "position-not-a-number": _cursor("p=abc"),  # the cD1hYmM=
    "position-nul": _cursor("p=\x00"),
    "position-beyond-bigint": _cursor("p=99999999999999999999999"),
    "position-a-float": _cursor("p=1.5"),
    "offset-negative": _cursor("o=-1&p=5"),
    "reverse-not-a-number": _cursor("r=x&p=5"),
    "not-base64": "%%%",
    "not-utf8": quote(base64.b64encode(b"p=\xff\xfe").decode()),
}
CURSOR_LISTS = [
    "/api/v1/versions/",
    "/api/v1/versions/?model={w.model.pk}",
    "/api/v1/audit-events/",
    "/api/v1/approval-requests/",
    "/api/v1/evaluations/",
    "/api/v1/notifications/",
    "/api/v1/models/{w.model.pk}/audit/",
    "/api/v1/versions/{w.v1.pk}/audit/",
]


@pytest.mark.parametrize("cursor", BAD_CURSORS.values(), ids=BAD_CURSORS.keys())
@pytest.mark.parametrize("url", CURSOR_LISTS)
def test_an_edited_cursor_is_a_400(api, users, api_world, url, cursor):
    url = url.format(w=api_world)
    sep = "&" if "?" in url else "?"
    r = api.as_user(users.admin).get(f"{url}{sep}cursor={cursor}")
    error = assert_error(r, 400, "invalid_cursor")
    assert "cursor" in error["fields"], error


def test_a_position_that_is_no_value_of_the_chosen_ordering_is_a_400(api, users, api_world):
    """A list whose ordering can be chosen pages on that field: the position is checked as its type
    (a time like a date filter, text for NUL)."""
    client = api.as_user(users.admin)
    url = "/api/v1/approval-requests/?ordering={}&cursor={}"
    for ordering, position in [
        ("requested_at", "0001-01-01 00:00:00+21:01"),  # before year 1 in UTC
        ("requested_at", "2026-01-01 00:00:00"),  # the list writes aware times only
        ("requested_at", "yesterday"),
        ("status", "open\x00"),
    ]:
        assert_error(client.get(url.format(ordering, _cursor(urlencode({"p": position})))), 400, "invalid_cursor")
    for ordering, position in [
        ("requested_at", "2026-01-01 00:00:00+14:00"),
        ("requested_at", "2026-01-01 00:00:00+21:01"),  # an offset PostgreSQL cannot store: compared in UTC
        ("status", "open"),
    ]:
        r = client.get(url.format(ordering, _cursor(urlencode({"p": position}))))
        assert r.status_code == 200, r.content[:300]


@pytest.mark.parametrize("query", ["", "model={w.model.pk}&"])
def test_the_cursors_the_api_hands_out_still_work(api, users, api_world, make_version, query):
    for _ in range(3):
        make_version(api_world.model)
    client = api.as_user(users.admin)
    seen, url = [], f"/api/v1/versions/?{query.format(w=api_world)}page_size=2"
    while url:
        r = client.get(url)
        assert r.status_code == 200, r.content[:300]
        seen += [row["id"] for row in r.json()["results"]]
        url = r.json()["next"]
    ours = set(ModelVersion.objects.filter(model=api_world.model).values_list("pk", flat=True))
    assert ours <= set(seen) and len(seen) == len(set(seen))


@pytest.mark.parametrize("param", ["before", "after"])
def test_audit_page_position_beyond_bigint_is_no_500(login, users, api_world, param):
    r = login(users.auditor).get(f"/audit/?{param}=99999999999999999999999")
    assert r.status_code == 200, r.status_code


# --- 3. JSON the database cannot store -------------------------------------------------------------

# as sent in a JSON body or a multipart field: JSON text, escapes and all
UNSTORABLE = {
    "nul-in-value": '{"k": "a\\u0000b"}',
    "nul-in-key": '{"a\\u0000b": 1}',
    "lone-surrogate": '{"k": "\\ud800"}',
    "infinite-number": '{"k": 1e999}',
    "negative-infinite-number": '{"k": [-1e999]}',
}
UNSTORABLE_METRICS = {
    "nul-in-key": '{"a\\u0000b": 1}',
    "infinite-number": '{"auc": 1e999}',
}
UNSTORABLE_TAGS = {
    "nul-in-tag": '["a\\u0000b"]',
    "lone-surrogate": '["\\udfff"]',
}
UNSTORABLE_PROFILE = {
    "nul-in-column-name": '{"columns": {"a\\u0000": {"kind": "numeric", "dtype": "float64", "missing_share": 0}}}',
    "infinite-statistic": '{"columns": {"a": {"kind": "numeric", "dtype": "float64", "missing_share": 0, "max": 1e999}}}',
}


def _registration_cases():
    for name, text in UNSTORABLE.items():
        yield f"hyperparameters-{name}", "hyperparameters", text
    for name, text in UNSTORABLE_METRICS.items():
        yield f"metrics-{name}", "metrics", text
    for name, text in UNSTORABLE_TAGS.items():
        yield f"tags-{name}", "tags", text
    for name, text in UNSTORABLE_PROFILE.items():
        yield f"training_profile-{name}", "training_profile", text


REGISTRATION = list(_registration_cases())


@pytest.mark.parametrize(("field", "text"), [c[1:] for c in REGISTRATION], ids=[c[0] for c in REGISTRATION])
def test_registration_with_unstorable_json_is_a_400(api, users, api_world, field, text):
    client = api.as_user(users.author)
    before = governed_state()
    r = client.post(
        "/api/v1/versions/",
        {"model": api_world.model.pk, "artifact": make_artifact(ARTIFACT), field: text},
        format="multipart",
    )
    error = assert_error(r, 400, "invalid")
    assert field in error["fields"], error
    assert governed_state() == before


EDITABLE = [c for c in REGISTRATION if c[1] != "training_profile"]


@pytest.mark.parametrize(("field", "text"), [c[1:] for c in EDITABLE], ids=[c[0] for c in EDITABLE])
def test_patch_with_unstorable_json_is_a_400(api, users, api_world, field, text):
    client = api.as_user(users.author)
    before = governed_state()
    body = f'{{"{field}": {text}}}'
    r = client.patch(f"/api/v1/versions/{api_world.v1.pk}/", data=body, content_type="application/json")
    error = assert_error(r, 400, "invalid")
    assert field in error["fields"], error
    assert governed_state() == before


@pytest.mark.parametrize(("field", "text"), [c[1:] for c in EDITABLE if c[1] != "tags"],
                         ids=[c[0] for c in EDITABLE if c[1] != "tags"])  # the form takes tags as text  # fmt: skip
def test_registration_form_with_unstorable_json_is_a_400(login, users, api_world, field, text):
    client = login(users.author)
    before = governed_state()
    r = client.post(
        f"/models/{api_world.model.pk}/versions/new/",
        {"artifact": make_artifact(ARTIFACT), "framework": "sklearn", "artifact_format": "sklearn-joblib", field: text},
    )
    assert r.status_code == 400, r.status_code
    assert field in r.context["form"].errors, r.context["form"].errors
    assert governed_state() == before


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/v1/models/", '{{"team": {w.team.pk}, "name": "m", "business_kpis": [{{"name": "a\\u0000"}}]}}',
         "business_kpis"),
        ("/api/v1/models/", '{{"team": {w.team.pk}, "name": "m\\ud800"}}', "name"),
        ("/api/v1/versions/{w.v2.pk}/card/", '{{"sections": {{"intended_use": "x\\udc00"}}}}', "sections"),
        ("/api/v1/policies/", '{{"name": "p", "team": {w.team.pk}, "rules": {{"staging": {{"min": 1e999}}}}}}',
         "rules"),
    ],
    ids=["model-kpi-nul", "model-name-lone-surrogate", "card-section-lone-surrogate", "policy-rules-infinite"],
)  # fmt: skip
def test_any_json_body_with_unstorable_values_is_a_400(api, users, api_world, url, body, field):
    """Whatever endpoint a JSON body goes to, its parser refuses such values first, naming the field."""
    client = api.as_user(users.admin)
    before = governed_state()
    method = client.put if url.endswith("/card/") else client.post
    r = method(url.format(w=api_world), data=body.format(w=api_world), content_type="application/json")
    error = assert_error(r, 400, "invalid")
    assert field in error["fields"], error
    assert governed_state() == before


# --- 4. JSON nested deeper than any document ---------------------------------------------------------


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 10_000])
@pytest.mark.parametrize(
    ("method", "url", "field"),
    [
        ("patch", "/api/v1/versions/{w.v1.pk}/", "hyperparameters"),
        ("post", "/api/v1/models/", "business_kpis"),
        ("post", "/api/v1/policies/", "rules"),
        ("put", "/api/v1/versions/{w.v2.pk}/card/", "sections"),
        ("post", "/api/v1/versions/{w.v1.pk}/transition/", "to"),
    ],
)
def test_a_json_body_nested_too_deep_is_a_400(api, users, api_world, method, url, field, depth):
    client = api.as_user(users.admin)
    before = governed_state()
    body = f'{{"{field}": {_nested(depth)}}}'
    r = getattr(client, method)(url.format(w=api_world), data=body, content_type="application/json")
    error = assert_error(r, 400, "too_deep")
    if depth == MAX_DEPTH + 1:  # read, then measured: the field is known
        assert field in error["fields"], error
    assert governed_state() == before


def test_json_nested_to_the_limit_is_accepted(api, users, api_world):
    nested = {"k": 1}
    for _ in range(MAX_DEPTH - 2):
        nested = {"k": nested}
    r = api.as_user(users.author).patch(
        f"/api/v1/versions/{api_world.v1.pk}/", {"hyperparameters": {"k": nested}}, format="json"
    )
    assert r.status_code == 200, r.content[:300]
    api_world.v1.refresh_from_db()
    assert api_world.v1.hyperparameters == {"k": nested}


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 10_000])
@pytest.mark.parametrize("field", ["hyperparameters", "metrics", "tags"])
def test_a_registration_field_nested_too_deep_is_a_400(api, users, api_world, field, depth):
    client = api.as_user(users.author)
    before = governed_state()
    r = client.post(
        "/api/v1/versions/",
        {"model": api_world.model.pk, "artifact": make_artifact(ARTIFACT), field: _nested(depth)},
        format="multipart",
    )
    error = assert_error(r, 400, "too_deep")
    assert field in error["fields"], error
    assert governed_state() == before


@pytest.mark.parametrize("field", ["hyperparameters", "metrics"])
def test_a_registration_form_field_nested_too_deep_is_a_400(login, users, api_world, field):
    client = login(users.author)
    before = governed_state()
    r = client.post(
        f"/models/{api_world.model.pk}/versions/new/",
        {"artifact": make_artifact(ARTIFACT), "framework": "sklearn", "artifact_format": "sklearn-joblib",
         field: f'{{"k": {_nested(10_000)}}}'},
    )  # fmt: skip
    assert r.status_code == 400, r.status_code
    assert field in r.context["form"].errors, r.context["form"].errors
    assert governed_state() == before


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 10_000])
def test_an_evaluation_request_nested_too_deep_is_a_400(api, users, api_world, depth):
    """A multipart ``parameters`` field, through the evaluations API's own parser; the endpoint takes
    an upload, so a JSON body is refused before anything reads it."""
    client = api.as_user(users.author)
    before = governed_state()
    body = f'{{"version": {api_world.v1.pk}, "kind": "performance", "parameters": {_nested(depth)}}}'
    r = client.post("/api/v1/evaluations/", data=body, content_type="application/json")
    assert_error(r, 415, "unsupported_media_type")
    r = client.post(
        "/api/v1/evaluations/",
        {"version": api_world.v1.pk, "kind": "performance", "parameters": _nested(depth),
         "data": make_artifact(b"a,b\n1,2\n", name="data.csv")},
        format="multipart",
    )  # fmt: skip
    assert "parameters" in assert_error(r, 400, "too_deep")["fields"]
    assert governed_state() == before


def test_evaluation_and_policy_forms_nested_too_deep_are_form_errors(login, users, api_world):
    author, admin = login(users.author), login(users.admin)  # sign-ins are events too: before the snapshot
    before = governed_state()
    r = author.post(
        f"/versions/{api_world.v1.pk}/evaluate/",
        {"kind": "performance", "data": make_artifact(b"a,b\n1,2\n", name="data.csv"), "target_column": "b",
         "parameters": _nested(10_000)},
    )  # fmt: skip
    assert r.status_code == 400 and "parameters" in r.context["form"].errors
    r = admin.post("/policies/new/", {"name": "Deep", "rules": f'{{"gates": {_nested(10_000)}}}'})
    assert r.status_code in (200, 400) and "rules" in r.context["form"].errors, r.status_code
    assert governed_state() == before


def test_a_token_prefix_that_is_no_hex_is_a_401_not_a_500(db):
    from rest_framework.test import APIClient

    api = APIClient()
    for prefix in ("ab\x00cd", "zzzzzzzzzzzz", "ABCDEF012345", ""):
        r = api.get("/api/v1/versions/", HTTP_AUTHORIZATION=f"Bearer chr_{prefix}_secret")
        assert r.status_code == 401, (prefix, r.status_code)
