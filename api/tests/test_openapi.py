"""The OpenAPI schema and the docs page are served."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from api.tests.helpers import errors_of

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
