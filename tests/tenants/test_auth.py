"""API-key authentication: 401s that say why, hashed keys found by prefix, and a rate-limited last_used_at."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from config.errors import AuthenticationFailed
from tenants import services
from tenants.authentication import MISSING_KEY_MESSAGE
from tenants.models import ApiKey
from tenants.services import PREFIX_LENGTH, api_key_authenticate, api_key_create, api_key_revoke
from tests.conftest import Tenant

ENDPOINTS = [
    ("post", "/v1/files"),
    ("get", "/v1/files"),
    ("get", "/v1/files/file-abc"),
    ("get", "/v1/files/file-abc/content"),
    ("delete", "/v1/files/file-abc"),
]


def call(client: APIClient, authorization: str | None, method: str = "get", path: str = "/v1/files") -> Any:
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    return getattr(client, method)(path, **headers)


def assert_401(response: Any, message: str | None = None) -> None:
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_api_key", None)
    if message is not None:
        assert error["message"] == message


def key_updates(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "tenants_apikey"')]


def test_a_valid_key_is_accepted(client_a: APIClient) -> None:
    assert client_a.get("/v1/files").status_code == 200


def test_the_bearer_scheme_is_case_insensitive(tenant_a: Tenant) -> None:
    assert call(APIClient(), f"bearer {tenant_a.key}").status_code == 200


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_answers_401_without_a_key(db: Any, method: str, path: str) -> None:
    assert_401(call(APIClient(), None, method, path), MISSING_KEY_MESSAGE)


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token fg_abcdefghijklmnopqrstuvwxyz"],
    ids=["empty", "scheme_only", "blank_token", "basic", "other_scheme"],
)
def test_a_malformed_authorization_header_is_401(db: Any, authorization: str) -> None:
    assert_401(call(APIClient(), authorization), MISSING_KEY_MESSAGE)


@pytest.mark.parametrize(
    "token",
    ["sk-proj-abcdefghijklmnopqrstuvwxyz0123", "fg_short", "fg_" + "a" * 43],
    ids=["foreign_key", "too_short", "unknown_key"],
)
def test_an_unknown_key_is_401_with_a_masked_echo(db: Any, token: str) -> None:
    response = call(APIClient(), f"Bearer {token}")
    assert_401(response)
    message = response.json()["error"]["message"]
    assert message.startswith("Incorrect API key provided: ")
    assert token not in message


def test_a_key_with_a_known_prefix_but_wrong_secret_is_401(tenant_a: Tenant) -> None:
    forged = tenant_a.key[:PREFIX_LENGTH] + "x" * (len(tenant_a.key) - PREFIX_LENGTH)
    assert_401(call(APIClient(), f"Bearer {forged}"))


def test_a_revoked_key_is_401(tenant_a: Tenant) -> None:
    api_key_revoke(api_key=tenant_a.api_key)
    assert_401(call(APIClient(), f"Bearer {tenant_a.key}"), "This API key has been revoked.")


def test_revoking_one_key_leaves_the_orgs_other_keys_working(tenant_a: Tenant) -> None:
    other = api_key_create(organization=tenant_a.org, name="second")
    api_key_revoke(api_key=tenant_a.api_key)
    assert call(APIClient(), f"Bearer {other.plaintext}").status_code == 200


def test_only_a_hash_of_the_key_is_stored(tenant_a: Tenant) -> None:
    row = ApiKey.objects.filter(pk=tenant_a.api_key.pk).values().get()
    assert row["key_hash"] == hashlib.sha256(tenant_a.key.encode()).hexdigest()
    assert row["prefix"] == tenant_a.key[:PREFIX_LENGTH]
    assert not any(tenant_a.key in str(value) for value in row.values())


def test_issued_keys_are_long_random_and_distinct(tenant_a: Tenant) -> None:
    keys = {api_key_create(organization=tenant_a.org).plaintext for _ in range(20)}
    assert len(keys) == 20
    assert all(key.startswith("fg_") and len(key) >= 40 for key in keys)
    assert len({key[:PREFIX_LENGTH] for key in keys}) == 20


def test_the_key_is_looked_up_by_its_prefix(tenant_a: Tenant) -> None:
    with CaptureQueriesContext(connection) as queries:
        api_key_authenticate(plaintext=tenant_a.key)
    [select] = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert '"tenants_apikey"."prefix" = ' in select
    assert "key_hash" not in select.split("WHERE", 1)[1]
    assert tenant_a.key[:PREFIX_LENGTH] in select
    assert tenant_a.key not in select


def test_the_first_use_records_last_used_at(tenant_a: Tenant) -> None:
    assert ApiKey.objects.get(pk=tenant_a.api_key.pk).last_used_at is None
    before = timezone.now()
    call(APIClient(), f"Bearer {tenant_a.key}")
    last_used = ApiKey.objects.get(pk=tenant_a.api_key.pk).last_used_at
    assert last_used is not None
    assert last_used >= before


def test_last_used_at_is_written_at_most_once_per_resolution_window(tenant_a: Tenant) -> None:
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert call(APIClient(), f"Bearer {tenant_a.key}").status_code == 200
    assert len(key_updates(queries)) == 1


def test_last_used_at_is_written_again_once_the_window_has_passed(tenant_a: Tenant, settings: Any) -> None:
    settings.API_KEY_LAST_USED_RESOLUTION_SECONDS = 60
    earlier = timezone.now() - timedelta(seconds=61)
    ApiKey.objects.filter(pk=tenant_a.api_key.pk).update(last_used_at=earlier)
    with CaptureQueriesContext(connection) as queries:
        call(APIClient(), f"Bearer {tenant_a.key}")
        call(APIClient(), f"Bearer {tenant_a.key}")
    assert len(key_updates(queries)) == 1
    assert ApiKey.objects.get(pk=tenant_a.api_key.pk).last_used_at > earlier


def test_last_used_at_is_not_written_within_the_window(tenant_a: Tenant) -> None:
    recent = timezone.now() - timedelta(seconds=5)
    ApiKey.objects.filter(pk=tenant_a.api_key.pk).update(last_used_at=recent)
    call(APIClient(), f"Bearer {tenant_a.key}")
    assert ApiKey.objects.get(pk=tenant_a.api_key.pk).last_used_at == recent


def test_a_key_authenticates_as_its_own_organisation(tenant_a: Tenant, tenant_b: Tenant) -> None:
    assert api_key_authenticate(plaintext=tenant_b.key).organization == tenant_b.org
    assert api_key_authenticate(plaintext=tenant_a.key).organization == tenant_a.org


def test_a_cached_key_authenticates_without_a_query(tenant_a: Tenant, django_assert_num_queries: Any) -> None:
    api_key_authenticate(plaintext=tenant_a.key)
    with django_assert_num_queries(0):
        api_key = api_key_authenticate(plaintext=tenant_a.key)
    assert api_key.pk == tenant_a.api_key.pk
    assert api_key.organization.pk == tenant_a.org.pk
    assert api_key.organization.max_file_size_bytes == tenant_a.org.max_file_size_bytes


def test_a_cached_key_revoked_in_this_process_is_refused_at_once(tenant_a: Tenant) -> None:
    assert call(APIClient(), f"Bearer {tenant_a.key}").status_code == 200
    api_key_revoke(api_key=tenant_a.api_key)
    assert_401(call(APIClient(), f"Bearer {tenant_a.key}"), "This API key has been revoked.")


def test_a_key_revoked_elsewhere_is_refused_once_its_cache_entry_expires(
    tenant_a: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(services.time, "monotonic", lambda: clock[0])
    api_key_authenticate(plaintext=tenant_a.key)
    # Another process revokes it: this one keeps accepting it for at most API_KEY_CACHE_SECONDS.
    ApiKey.objects.filter(pk=tenant_a.api_key.pk).update(revoked_at=timezone.now())
    api_key_authenticate(plaintext=tenant_a.key)
    clock[0] += django_settings.API_KEY_CACHE_SECONDS
    with pytest.raises(AuthenticationFailed, match="revoked"):
        api_key_authenticate(plaintext=tenant_a.key)


def test_api_key_cache_seconds_0_turns_the_cache_off(
    tenant_a: Tenant, settings: Any, django_assert_num_queries: Any
) -> None:
    settings.API_KEY_CACHE_SECONDS = 0
    api_key_authenticate(plaintext=tenant_a.key)
    with django_assert_num_queries(1):
        api_key_authenticate(plaintext=tenant_a.key)


def test_each_request_gets_its_own_copy_of_a_cached_key(tenant_a: Tenant) -> None:
    first = api_key_authenticate(plaintext=tenant_a.key)
    first.organization.max_file_size_bytes = 1
    second = api_key_authenticate(plaintext=tenant_a.key)
    assert second is not first
    assert second.organization.max_file_size_bytes == tenant_a.org.max_file_size_bytes
