"""The OpenAPI schema describes the real API, and the docs pages load nothing from outside."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client
from openapi_spec_validator import validate

ERROR_REF = "#/components/schemas/Error"
ASSET_PATTERN = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    response = Client().get("/v1/openapi.json")
    assert response.status_code == 200
    assert "json" in response["Content-Type"]
    return response.json()


def _operations(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["operationId"]: op for path in schema["paths"].values() for op in path.values()}


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return schema["components"]["schemas"][name]
    if "allOf" in node:
        return _resolve(schema, node["allOf"][0])
    return node


def test_it_serves_json_without_a_format_parameter() -> None:
    response = Client().get("/v1/openapi.json", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")


def test_the_schema_is_valid_openapi(schema: dict[str, Any]) -> None:
    validate(schema)


def test_it_describes_every_files_operation(schema: dict[str, Any]) -> None:
    assert {path: sorted(ops) for path, ops in schema["paths"].items()} == {
        "/v1/files": ["get", "post"],
        "/v1/files/{id}": ["delete", "get"],
        "/v1/files/{id}/content": ["get"],
    }


def test_upload_body_is_multipart_with_a_binary_file_and_purpose_enum(schema: dict[str, Any]) -> None:
    body = _operations(schema)["createFile"]["requestBody"]
    assert list(body["content"]) == ["multipart/form-data"]
    form = _resolve(schema, body["content"]["multipart/form-data"]["schema"])
    properties = form["properties"]
    assert properties["file"] == {**properties["file"], "type": "string", "format": "binary"}
    assert set(_resolve(schema, properties["purpose"])["enum"]) == {
        "assistants",
        "batch",
        "fine-tune",
        "vision",
        "user_data",
        "evals",
    }
    assert _resolve(schema, properties["expires_after[anchor]"])["enum"] == ["created_at"]
    assert properties["expires_after[seconds]"]["minimum"] == 3600
    assert properties["expires_after[seconds]"]["maximum"] == 2592000
    assert set(form["required"]) == {"file", "purpose"}


def test_component_names_are_legal(schema: dict[str, Any]) -> None:
    # OpenAPI 3 restricts component keys; code generators choke on "ExpiresAfter[anchor]Enum".
    for name in schema["components"]["schemas"]:
        assert re.fullmatch(r"[A-Za-z0-9._-]+", name), name


def test_every_operation_takes_the_provider_account_header_and_its_truefoundry_alias(schema: dict[str, Any]) -> None:
    upload_headers = {"X-Provider-Model", "x-tfy-vertex-storage-bucket-name", "x-tfy-vertex-region"}
    for operation_id, operation in _operations(schema).items():
        headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
        expected = {"X-Provider-Account", "x-tfy-provider-name"} | (
            upload_headers if operation_id == "createFile" else set()
        )
        assert set(headers) == expected, operation_id
        assert not any(header.get("required", False) for header in headers.values())
        assert headers["x-tfy-provider-name"]["description"].startswith("Alias of X-Provider-Account, as TrueFoundry")


def test_every_operation_requires_the_bearer_key(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]
    assert len(schemes) == 1
    name, scheme = next(iter(schemes.items()))
    assert scheme["type"] == "http"
    assert scheme["scheme"] == "bearer"
    for operation_id, operation in _operations(schema).items():
        assert operation["security"] == [{name: []}], operation_id


def test_every_error_response_is_the_envelope(schema: dict[str, Any]) -> None:
    envelope = schema["components"]["schemas"]["Error"]
    assert envelope["required"] == ["error"]
    detail = _resolve(schema, envelope["properties"]["error"])
    assert set(detail["properties"]) == {"message", "type", "param", "code"}
    for operation_id, operation in _operations(schema).items():
        # 414 is gunicorn's own page (test_a_url_too_long_for_the_server_is_its_html_page).
        errors = {status: r for status, r in operation["responses"].items() if int(status) >= 400 and status != "414"}
        assert {"400", "401", "500"} <= set(errors), operation_id
        for status, response in errors.items():
            assert response["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, (operation_id, status)
            assert response["description"], (operation_id, status)


def test_a_url_too_long_for_the_server_is_its_html_page(schema: dict[str, Any]) -> None:
    # Every operation whose URL carries client input; an upload's URL is fixed.
    for operation_id, operation in _operations(schema).items():
        if operation_id == "createFile":
            assert "414" not in operation["responses"]
            continue
        too_long = operation["responses"]["414"]
        assert list(too_long["content"]) == ["text/html"], operation_id
        assert "gunicorn" in too_long["description"], operation_id


def test_error_statuses_match_what_each_operation_can_answer(schema: dict[str, Any]) -> None:
    operations = _operations(schema)
    assert {"403", "413"} <= set(operations["createFile"]["responses"])
    for operation_id in ("retrieveFile", "deleteFile", "downloadFile"):
        assert "404" in operations[operation_id]["responses"], operation_id


def test_list_takes_the_paging_parameters_and_returns_one_list_object(schema: dict[str, Any]) -> None:
    operation = _operations(schema)["listFiles"]
    query = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
    assert set(query) == {"purpose", "limit", "order", "after"}
    assert query["order"]["schema"]["enum"] == ["asc", "desc"]
    assert query["limit"]["schema"]["maximum"] == 10000
    body = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert "items" not in body  # the envelope, not an array of envelopes
    assert set(_resolve(schema, body)["properties"]) == {"object", "data", "first_id", "last_id", "has_more"}


def test_content_is_described_as_bytes(schema: dict[str, Any]) -> None:
    ok = _operations(schema)["downloadFile"]["responses"]["200"]["content"]
    assert ok == {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


@pytest.mark.django_db  # closing a streamed response fires request_finished, which checks the connection
@pytest.mark.parametrize("page", ["/docs/", "/redoc/"])
def test_docs_pages_load_every_asset_from_this_server(page: str) -> None:
    client = Client()
    response = client.get(page)
    assert response.status_code == 200
    html = response.content.decode()
    assert "http://" not in html
    assert "https://" not in html
    assets = ASSET_PATTERN.findall(html)
    assert any(asset.endswith(".js") for asset in assets)
    for asset in assets:
        parts = urlsplit(asset)
        assert not parts.scheme and not parts.netloc, asset
        asset_response = client.get(asset)
        asset_response.close()
        assert asset_response.status_code == 200, asset
        assert int(asset_response["Content-Length"]) > 0, asset


def test_docs_pages_point_at_the_schema() -> None:
    client = Client()
    assert "/v1/openapi.json" in client.get("/docs/").content.decode()
    assert "/v1/openapi.json" in client.get("/redoc/").content.decode()
