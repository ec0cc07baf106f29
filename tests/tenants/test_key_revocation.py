"""A revoked or deleted key stops working: at once in the process that did it, within
API_KEY_CACHE_SECONDS in every other, however it was deleted (service, admin, ORM cascade)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from config.errors import AuthenticationFailed
from tenants import services
from tenants.models import ApiKey, Organization
from tenants.services import api_key_authenticate, api_key_delete, api_key_revoke
from tests.conftest import Tenant


@pytest.fixture
def elsewhere() -> ModuleType:
    """``tenants.services`` as another worker process has it: the same database, a key cache of its own."""
    spec = importlib.util.find_spec("tenants.services")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The monotonic clock both caches read; move it forward by hand."""
    now = [1000.0]
    monkeypatch.setattr(services.time, "monotonic", lambda: now[0])
    return now


def accepted(authenticate: Callable[..., ApiKey], tenant: Tenant) -> bool:
    try:
        return authenticate(plaintext=tenant.key).pk == tenant.api_key.pk
    except AuthenticationFailed:
        return False


def remove_by_service(tenant: Tenant, how: str) -> None:
    if how == "revoke":
        api_key_revoke(api_key=tenant.api_key)
    else:
        api_key_delete(api_key=tenant.api_key)


@pytest.mark.parametrize("how", ["revoke", "delete"])
def test_a_key_removed_through_the_service_is_refused_here_at_once_and_elsewhere_within_the_cache_time(
    tenant_a: Tenant, elsewhere: ModuleType, clock: list[float], how: str
) -> None:
    assert accepted(api_key_authenticate, tenant_a) and accepted(elsewhere.api_key_authenticate, tenant_a)
    remove_by_service(tenant_a, how)
    assert not accepted(api_key_authenticate, tenant_a)
    # The other process still holds it, for at most API_KEY_CACHE_SECONDS after it cached it.
    clock[0] += settings.API_KEY_CACHE_SECONDS - 0.001
    assert accepted(elsewhere.api_key_authenticate, tenant_a)
    clock[0] += 0.001
    assert not accepted(elsewhere.api_key_authenticate, tenant_a)


def test_deleting_a_key_twice_is_harmless(tenant_a: Tenant) -> None:
    api_key_delete(api_key=tenant_a.api_key)
    api_key_delete(api_key=tenant_a.api_key)
    assert not ApiKey.objects.filter(pk=tenant_a.api_key.pk).exists()


DELETIONS = {
    "key": lambda tenant: ApiKey.objects.get(pk=tenant.api_key.pk).delete(),
    "key_queryset": lambda tenant: ApiKey.objects.filter(organization=tenant.org).delete(),
    "organization": lambda tenant: Organization.objects.get(pk=tenant.org.pk).delete(),
}


@pytest.mark.parametrize("deletion", list(DELETIONS))
def test_a_cached_key_deleted_through_the_orm_is_refused_at_once(tenant_a: Tenant, deletion: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tenant_a.key}")
    assert client.get("/v1/files").status_code == 200  # cached now
    DELETIONS[deletion](tenant_a)
    response = client.get("/v1/files")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_a_key_deleted_in_admin_is_refused_at_once(tenant_a: Tenant) -> None:
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser(username="root", email="", password="x"))
    assert accepted(api_key_authenticate, tenant_a)
    url = f"/admin/tenants/apikey/{tenant_a.api_key.pk}/delete/"
    assert admin.post(url, {"post": "yes"}).status_code == 302
    assert not ApiKey.objects.filter(pk=tenant_a.api_key.pk).exists()
    assert not accepted(api_key_authenticate, tenant_a)


def test_a_cached_organisation_deleted_elsewhere_is_refused_within_the_cache_time(
    tenant_a: Tenant, elsewhere: ModuleType, clock: list[float]
) -> None:
    assert accepted(elsewhere.api_key_authenticate, tenant_a)
    Organization.objects.get(pk=tenant_a.org.pk).delete()
    clock[0] += settings.API_KEY_CACHE_SECONDS
    assert not accepted(elsewhere.api_key_authenticate, tenant_a)


REMOVALS = {
    "revoke": lambda api_key: api_key_revoke(api_key=api_key),
    "delete": lambda api_key: ApiKey.objects.filter(pk=api_key.pk).delete(),
}


@pytest.mark.parametrize("removal", list(REMOVALS))
def test_a_key_removed_while_it_is_being_looked_up_is_not_cached(
    tenant_a: Tenant, monkeypatch: pytest.MonkeyPatch, removal: str
) -> None:
    """A revoke or deletion that lands between another request's database read and its cache write must win."""
    live = services._live_api_key

    def read_then_remove(plaintext: str, key_hash: str) -> ApiKey:
        api_key = live(plaintext, key_hash)
        REMOVALS[removal](api_key)  # another thread revokes or deletes it meanwhile
        return api_key

    monkeypatch.setattr(services, "_live_api_key", read_then_remove)
    api_key_authenticate(plaintext=tenant_a.key)  # this request read the key while it was live
    monkeypatch.setattr(services, "_live_api_key", live)
    assert not accepted(api_key_authenticate, tenant_a)


def test_a_key_cached_again_before_its_deletion_commits_is_forgotten_at_the_commit(
    tenant_a: Tenant, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    """Until the deletion commits, other requests still find the row and may cache the key again."""
    live = services._live_api_key
    stale = live(tenant_a.key, tenant_a.api_key.key_hash)
    with django_capture_on_commit_callbacks(execute=True):
        ApiKey.objects.filter(pk=tenant_a.api_key.pk).delete()
        monkeypatch.setattr(services, "_live_api_key", lambda plaintext, key_hash: stale)  # a reader before the commit
        assert accepted(api_key_authenticate, tenant_a)
        monkeypatch.setattr(services, "_live_api_key", live)
    assert not accepted(api_key_authenticate, tenant_a)
