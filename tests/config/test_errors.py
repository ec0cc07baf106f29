"""Every error is OpenAI's envelope: one test per row of the table in config/errors.py, and the real paths."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.test import Client, RequestFactory
from rest_framework import exceptions as drf_exceptions
from rest_framework.test import APIClient

from config import errors
from tests.conftest import Tenant, upload
from tests.fakes import FakeProvider

GENERIC_500 = "The server had an error while processing your request."

# (class name in the docstring table, the error raised, status, type, code)
TABLE = [
    ("InvalidRequest", errors.InvalidRequest("bad"), 400, "invalid_request_error", None),
    ("UnsupportedOperation", errors.UnsupportedOperation(), 400, "invalid_request_error", "operation_not_supported"),
    ("FileNotDownloadable", errors.FileNotDownloadable(), 400, "invalid_request_error", "file_not_downloadable"),
    ("AuthenticationFailed", errors.AuthenticationFailed(), 401, "invalid_request_error", "invalid_api_key"),
    ("PermissionDenied", errors.PermissionDenied(), 403, "invalid_request_error", "permission_denied"),
    ("QuotaExceeded", errors.QuotaExceeded(), 403, "insufficient_quota", "storage_quota_exceeded"),
    (
        "ProviderStorageFull",
        errors.ProviderStorageFull(),
        403,
        "insufficient_quota",
        "provider_storage_quota_exceeded",
    ),
    ("FileNotFound", errors.FileNotFound(), 404, "invalid_request_error", None),
    ("UnknownURL", errors.UnknownURL(), 404, "invalid_request_error", "unknown_url"),
    ("MethodNotAllowed", errors.MethodNotAllowed(), 405, "invalid_request_error", "method_not_allowed"),
    ("RequestTimeout", errors.RequestTimeout(), 408, "invalid_request_error", "request_timeout"),
    ("PayloadTooLarge", errors.PayloadTooLarge(), 413, "invalid_request_error", "file_too_large"),
    ("UpstreamRejected", errors.UpstreamRejected(status_code=422), 422, "invalid_request_error", "upstream_error"),
    ("RateLimited", errors.RateLimited(), 429, "rate_limit_error", "api_key_rate_limit_exceeded"),
    ("UpstreamRateLimited", errors.UpstreamRateLimited(), 429, "rate_limit_error", "rate_limit_exceeded"),
    ("InternalError", errors.InternalError(), 500, "server_error", "internal_error"),
    (
        "ProviderMisconfigured",
        errors.ProviderMisconfigured(),
        500,
        "server_error",
        "provider_account_misconfigured",
    ),
    ("UpstreamError", errors.UpstreamError(), 502, "server_error", "upstream_error"),
    ("UpstreamUnavailable", errors.UpstreamUnavailable(), 503, "server_error", "upstream_unavailable"),
    ("DatabaseUnavailable", errors.DatabaseUnavailable(), 503, "server_error", "database_unavailable"),
    ("UpstreamTimeout", errors.UpstreamTimeout(), 504, "server_error", "upstream_timeout"),
]


def docstring_table() -> list[tuple[str, str, str, str]]:
    rows = []
    for line in (errors.__doc__ or "").splitlines():
        match = re.fullmatch(r"(\w+)\s+(\d{3}|4xx)\s+(\w+)\s+(.+?)\s*", line)
        if match and match.group(1) != "class":
            rows.append(match.groups())
    return rows


def test_the_table_lists_exactly_the_tested_classes() -> None:
    assert [row[0] for row in docstring_table()] == [row[0] for row in TABLE]


@pytest.mark.parametrize(("name", "error", "status", "error_type", "code"), TABLE, ids=[row[0] for row in TABLE])
def test_table_row(
    client_a: APIClient,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    error: errors.GatewayError,
    status: int,
    error_type: str,
    code: str | None,
) -> None:
    [documented] = [row for row in docstring_table() if row[0] == name]
    assert documented[1] in (str(status), "4xx")
    assert documented[2] == error_type
    assert documented[3].split()[0] in ((code,) if code else ("(per", "None"))
    assert type(error).__name__ == name

    def fail(**kwargs: Any) -> None:
        raise error

    monkeypatch.setattr("files_api.services.file_retrieve", fail)
    response = client_a.get("/v1/files/file-any")
    assert response.status_code == status
    assert response.json() == {"error": {"message": error.message, "type": error_type, "param": None, "code": code}}


def test_an_authentication_failure_carries_www_authenticate(
    client_a: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(**kwargs: Any) -> None:
        raise errors.AuthenticationFailed()

    monkeypatch.setattr("files_api.services.file_retrieve", fail)
    assert client_a.get("/v1/files/file-any")["WWW-Authenticate"] == 'Bearer realm="api"'


def test_an_error_keeps_its_param_and_headers(client_a: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(**kwargs: Any) -> None:
        raise errors.UpstreamRateLimited("slow down", param="file", headers={"Retry-After": "7"})

    monkeypatch.setattr("files_api.services.file_retrieve", fail)
    response = client_a.get("/v1/files/file-any")
    assert response["Retry-After"] == "7"
    assert response.json()["error"]["param"] == "file"


def test_an_upstream_rate_limit_keeps_retry_after(
    tenant_a: Tenant, fake_account_a: Any, fake_provider: type[FakeProvider]
) -> None:
    fake_provider.fail_on["upload"] = "rate_limited"
    response = upload(tenant_a.client, account="fake")
    assert (response.status_code, response["Retry-After"]) == (429, "7")
    assert response.json()["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize("debug", [False, True], ids=["debug_off", "debug_on"])
@pytest.mark.parametrize("path", ["/v1/nothing", "/v1/files/file-abc/nothing", "/v1/files/", "/v1"])
def test_an_unknown_url_under_v1_is_a_404_envelope(db: Any, settings: Any, debug: bool, path: str) -> None:
    settings.DEBUG = debug
    response = Client().get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "error": {
            "message": f"Invalid URL (GET {path})",
            "type": "invalid_request_error",
            "param": None,
            "code": "unknown_url",
        }
    }


def test_an_unknown_url_outside_v1_is_a_404_envelope(db: Any) -> None:
    response = Client().get("/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_url"


@pytest.mark.parametrize("operation", ["list", "retrieve"])
def test_an_unexpected_exception_is_a_500_with_a_generic_message(
    tenant_a: Tenant, fake_account_a: Any, fake_provider: type[FakeProvider], operation: str
) -> None:
    fake_provider.fail_on[operation] = "bug"
    path = "/v1/files" if operation == "list" else "/v1/files/fake-unknown"
    response = tenant_a.client.get(path, HTTP_X_PROVIDER_ACCOUNT="fake")
    assert response.status_code == 500
    assert response.json() == {
        "error": {"message": GENERIC_500, "type": "server_error", "param": None, "code": "internal_error"}
    }


def test_an_unexpected_exception_is_logged_with_its_traceback_not_returned(
    tenant_a: Tenant, fake_account_a: Any, fake_provider: type[FakeProvider], caplog: pytest.LogCaptureFixture
) -> None:
    fake_provider.fail_on["upload"] = "bug"
    with caplog.at_level(logging.ERROR, logger="filegate.errors"):
        response = upload(tenant_a.client, account="fake")
    assert response.status_code == 500
    assert b"a bug inside the provider" not in response.content
    assert b"Traceback" not in response.content
    [record] = [r for r in caplog.records if r.name == "filegate.errors"]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert "a bug inside the provider" in caplog.text


def test_an_unexpected_exception_is_a_500_envelope_with_debug_on(
    tenant_a: Tenant, fake_account_a: Any, fake_provider: type[FakeProvider], settings: Any
) -> None:
    settings.DEBUG = True
    fake_provider.fail_on["retrieve"] = "bug"
    response = tenant_a.client.get("/v1/files/fake-unknown", HTTP_X_PROVIDER_ACCOUNT="fake")
    assert response.status_code == 500
    assert response.json()["error"]["message"] == GENERIC_500


@pytest.mark.parametrize(
    ("method", "path"),
    [("put", "/v1/files"), ("patch", "/v1/files"), ("put", "/v1/files/file-abc"), ("post", "/v1/files/file-abc")],
)
def test_a_wrong_method_is_405(client_a: APIClient, method: str, path: str) -> None:
    response = getattr(client_a, method)(path)
    assert response.status_code == 405
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "method_not_allowed")
    assert error["message"] == f'Method "{method.upper()}" not allowed.'


def test_a_wrong_method_on_content_is_405(client_a: APIClient) -> None:
    assert client_a.post("/v1/files/file-abc/content").status_code == 405


def test_a_drf_validation_error_becomes_its_first_field_error() -> None:
    exc = drf_exceptions.ValidationError({"limit": ["too small", "and odd"], "order": ["bad"]})
    response = errors.exception_handler(exc, {})
    assert response.status_code == 400
    assert response.data == {
        "error": {"message": "too small", "type": "invalid_request_error", "param": "limit", "code": None}
    }


def test_a_nested_validation_error_names_the_path_as_param() -> None:
    exc = drf_exceptions.ValidationError({"expires_after": {"seconds": ["too long"]}})
    assert errors.exception_handler(exc, {}).data["error"]["param"] == "expires_after.seconds"


def test_a_non_field_validation_error_has_no_param() -> None:
    exc = drf_exceptions.ValidationError({"non_field_errors": ["inconsistent"]})
    error = errors.exception_handler(exc, {}).data["error"]
    assert (error["message"], error["param"]) == ("inconsistent", None)


@pytest.mark.parametrize(
    ("exc", "status", "error_type", "code"),
    [
        (drf_exceptions.ParseError(), 400, "invalid_request_error", None),
        (drf_exceptions.UnsupportedMediaType("text/csv"), 400, "invalid_request_error", None),
        (drf_exceptions.NotAuthenticated(), 401, "invalid_request_error", "invalid_api_key"),
        (drf_exceptions.PermissionDenied(), 403, "invalid_request_error", "permission_denied"),
        (drf_exceptions.NotFound(), 404, "invalid_request_error", None),
        (drf_exceptions.Throttled(), 429, "invalid_request_error", "throttled"),
        (Http404(), 404, "invalid_request_error", None),
        (DjangoPermissionDenied(), 403, "invalid_request_error", "permission_denied"),
        (ValueError("secret detail"), 500, "server_error", "internal_error"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_other_exceptions_are_rendered_as_the_envelope(
    exc: Exception, status: int, error_type: str, code: str | None
) -> None:
    response = errors.exception_handler(exc, {})
    assert response.status_code == status
    assert set(response.data["error"]) == {"message", "type", "param", "code"}
    assert (response.data["error"]["type"], response.data["error"]["code"]) == (error_type, code)
    assert "secret detail" not in response.data["error"]["message"]


@pytest.mark.parametrize(
    ("handler", "status", "code"),
    [
        (errors.handler400, 400, None),
        (errors.handler403, 403, "permission_denied"),
        (errors.handler404, 404, "unknown_url"),
    ],
)
def test_django_error_handlers_render_the_envelope(handler: Any, status: int, code: str | None) -> None:
    response = handler(RequestFactory().get("/somewhere"), Exception("x"))
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)["error"]["code"] == code


def test_the_django_500_handler_renders_the_generic_envelope() -> None:
    response = errors.handler500(RequestFactory().get("/somewhere"))
    assert response.status_code == 500
    assert json.loads(response.content) == {
        "error": {"message": GENERIC_500, "type": "server_error", "param": None, "code": "internal_error"}
    }


def test_a_database_failure_is_a_503_to_retry_not_a_500(client_a: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db.utils import OperationalError

    def fail(**kwargs: Any) -> None:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("files_api.services.file_retrieve", fail)
    response = client_a.get("/v1/files/file-abc")
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "database_unavailable"
    assert "server closed" not in response.json()["error"]["message"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_connections_a_database_restart_broke_cost_one_retryable_answer(live_server: Any, tenant_a: Any) -> None:
    """Without health checks, a pooled connection the server dropped fails one request (a 503 the SDKs
    retry); the pool then hands out a sound one. (A live server: Django's test client keeps one
    connection for the whole test, which no real request does.)"""
    import httpx
    import psycopg
    from django.db import connection

    file_id = upload(tenant_a.client, b"kept").json()["id"]
    url, headers = f"{live_server.url}/v1/files/{file_id}", {"Authorization": f"Bearer {tenant_a.key}"}
    assert httpx.get(url, headers=headers).status_code == 200  # the server's pool holds a connection now
    params = connection.get_connection_params()
    admin_params = {name: params[name] for name in ("dbname", "user", "password", "host", "port") if params.get(name)}
    with psycopg.connect(**admin_params, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid() AND pid <> %s",
            [params["dbname"], connection.connection.info.backend_pid],  # the test's own stays
        )
    answers = [httpx.get(url, headers=headers) for _ in range(4)]
    statuses = [answer.status_code for answer in answers]
    assert statuses[0] == 503 and statuses[-1] == 200, statuses
    assert answers[0].json()["error"]["code"] == "database_unavailable"
    assert answers[0].headers["retry-after"] == "1"
