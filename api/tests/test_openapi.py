"""The OpenAPI schema and the docs page are served."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from api.schemas import MOMENT_PATTERN, NO_NUL
from api.tests.helpers import errors_of
from rpa_monitor.errors import InvalidDateRangeError
from rpa_monitor.lib.dates import DateRange

pytestmark = pytest.mark.django_db

PATHS = {
    "/api/chains": {"get", "post"},
    "/api/chains/{chain_id}/execute": {"post"},
    "/api/triggers": {"get", "post"},
    "/api/triggers/{trigger_id}/toggle": {"post"},
    "/api/logs": {"get"},
    "/api/logs/download": {"get"},
    "/api/chain-runs/{run_id}/cancel": {"post"},
    "/api/chain-runs/{run_id}/resume": {"post"},
    "/api/workflow-runs/{run_id}/cancel": {"post"},
    "/api/secrets": {"get", "post"},
    "/api/secrets/{name}": {"get", "patch", "delete"},
}


def test_the_schema_is_valid_json_listing_every_path() -> None:
    response = Client().get("/api/openapi.json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert {path: set(ops) for path, ops in schema["paths"].items()} == PATHS
    assert set(schema["components"]["securitySchemes"]) == {"TokenAuth", "SessionAuth"}
    for operations in schema["paths"].values():
        for operation in operations.values():
            assert operation["security"] == [{"TokenAuth": []}, {"SessionAuth": []}]
            assert {"401", "403"} <= set(operation["responses"])
    zip_response = schema["paths"]["/api/logs/download"]["get"]["responses"]["200"]
    assert "application/zip" in zip_response["content"]
    levels = next(p for p in schema["paths"]["/api/logs"]["get"]["parameters"] if p["name"] == "level")
    assert levels["schema"]["anyOf"][0]["enum"] == ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def test_the_docs_page_is_served() -> None:
    response = Client().get("/api/docs")
    assert response.status_code == 200
    assert "/api/openapi.json" in response.content.decode()


@pytest.mark.parametrize("url", ["/api/", "/api/nope", "/api/chains/", "/api/chains/x/execute/extra"])
def test_unknown_api_paths_are_json_404s(api: Client, url: str) -> None:
    response = api.get(url)
    assert response.status_code == 404
    assert "path" in errors_of(response)


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("delete", "/api/chains"),
        ("put", "/api/triggers"),
        ("get", "/api/chains/x/execute"),
        ("post", "/api/logs"),
    ],
)
def test_wrong_methods_are_json_405s(api: Client, method: str, url: str) -> None:
    response = getattr(api, method)(url)
    assert response.status_code == 405
    assert "method" in errors_of(response)
    assert response["Allow"]


# -- what schemathesis found the schema and the API disagreeing on (issue 11) ------------------


def served_schema() -> dict[str, Any]:
    return json.loads(Client().get("/api/openapi.json").content)


def query_parameters(schema: dict[str, Any], path: str) -> dict[str, Any]:
    return {p["name"]: p["schema"] for p in schema["paths"][path]["get"]["parameters"]}


def test_it_documents_that_a_chain_has_one_to_max_steps_and_a_name() -> None:
    chain = served_schema()["components"]["schemas"]["ChainIn"]["properties"]
    assert chain["workflows"]["minItems"] == 1
    assert chain["workflows"]["maxItems"] == settings.RPA_MAX_CHAIN_STEPS
    assert chain["name"]["minLength"] == 1
    assert chain["slug"]["pattern"] == "^[-a-zA-Z0-9_]+$"


def test_it_documents_that_text_and_json_hold_no_nul() -> None:
    schemas = served_schema()["components"]["schemas"]
    assert schemas["ChainIn"]["properties"]["description"]["pattern"] == NO_NUL
    assert schemas["TriggerIn"]["properties"]["name"]["pattern"] == NO_NUL
    assert schemas["ExecuteIn"]["properties"]["params"]["propertyNames"] == {"pattern": NO_NUL}
    string = next(v for v in schemas["JsonValue"]["anyOf"] if v["type"] == "string")
    assert string["pattern"] == NO_NUL


@pytest.mark.parametrize("path", ["/api/logs", "/api/logs/download"])
def test_it_documents_that_every_filter_may_be_empty(path: str) -> None:
    for name, schema in query_parameters(served_schema(), path).items():
        assert {"type": "string", "maxLength": 0} in schema["anyOf"], name
        assert {"type": "null"} not in schema["anyOf"], name


def test_it_takes_an_empty_run_id_as_no_filter(api: Client) -> None:
    assert api.get("/api/logs?run_id=").status_code == 200
    assert api.get("/api/logs?run_id=x").status_code == 400


@given(moment=st.from_regex(MOMENT_PATTERN, fullmatch=True))
def test_every_date_the_schema_documents_is_accepted(moment: str) -> None:
    DateRange.parse(moment, None)
    DateRange.parse(None, moment)


@pytest.mark.parametrize(
    "moment", ["2026-02-30", "2026-13-01", "2026-11-24T25:00", "24.11.2026", "yesterday"]
)
def test_dates_the_api_refuses_are_outside_the_documented_pattern(moment: str) -> None:
    assert not re.match(MOMENT_PATTERN, moment)
    with pytest.raises(InvalidDateRangeError):
        DateRange.parse(moment, None)
