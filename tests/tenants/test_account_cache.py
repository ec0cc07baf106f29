"""The per-process provider-account cache: a saved change is seen at once here, elsewhere within the TTL."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings as django_settings

from config.errors import InvalidRequest
from tenants import services
from tenants.models import ProviderAccount
from tenants.services import (
    provider_account_create,
    provider_account_get,
    provider_account_resolve,
    provider_account_save,
)
from tests.conftest import Tenant


def test_a_cached_account_is_read_without_a_query(tenant_a: Tenant, django_assert_num_queries: Any) -> None:
    provider_account_get(account_id=tenant_a.account.pk)
    with django_assert_num_queries(0):
        account = provider_account_get(account_id=tenant_a.account.pk)
    assert (account.pk, account.kind) == (tenant_a.account.pk, tenant_a.account.kind)


def test_an_account_changed_elsewhere_is_seen_once_its_entry_expires(
    tenant_a: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(services.time, "monotonic", lambda: clock[0])
    provider_account_get(account_id=tenant_a.account.pk)
    ProviderAccount.objects.filter(pk=tenant_a.account.pk).update(name="renamed")
    assert provider_account_get(account_id=tenant_a.account.pk).name == tenant_a.account.name
    clock[0] += django_settings.PROVIDER_ACCOUNT_CACHE_SECONDS
    assert provider_account_get(account_id=tenant_a.account.pk).name == "renamed"


def test_an_account_saved_in_this_process_is_seen_at_once(tenant_a: Tenant) -> None:
    provider_account_get(account_id=tenant_a.account.pk)
    account = ProviderAccount.objects.get(pk=tenant_a.account.pk)
    account.name = "renamed"
    provider_account_save(account)
    assert provider_account_get(account_id=tenant_a.account.pk).name == "renamed"


def test_provider_account_cache_seconds_0_turns_the_cache_off(
    tenant_a: Tenant, settings: Any, django_assert_num_queries: Any
) -> None:
    settings.PROVIDER_ACCOUNT_CACHE_SECONDS = 0
    provider_account_get(account_id=tenant_a.account.pk)
    with django_assert_num_queries(1):
        provider_account_get(account_id=tenant_a.account.pk)


def test_each_caller_gets_its_own_copy(tenant_a: Tenant) -> None:
    first = provider_account_get(account_id=tenant_a.account.pk)
    first.name = "changed-by-a-caller"
    assert provider_account_get(account_id=tenant_a.account.pk).name == tenant_a.account.name


def test_an_account_saved_while_another_request_reads_it_is_not_cached_stale(
    tenant_a: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save (and forget) that lands between another request's read and its cache write must win."""

    real_get = ProviderAccount.objects.get

    def get(**lookup: Any) -> ProviderAccount:
        stale = real_get(**lookup)
        saved = real_get(**lookup)
        saved.name = "renamed"
        provider_account_save(saved)  # the admin, in another thread of this process
        return stale

    monkeypatch.setattr(ProviderAccount.objects, "get", get)
    assert provider_account_get(account_id=tenant_a.account.pk).name == tenant_a.account.name
    monkeypatch.undo()
    assert provider_account_get(account_id=tenant_a.account.pk).name == "renamed"


def test_an_account_named_in_a_header_is_resolved_from_the_cache_until_it_changes(
    tenant_a: Tenant, django_assert_num_queries: Any
) -> None:
    account = provider_account_create(organization=tenant_a.org, name="second", kind="local", config={})
    assert provider_account_resolve(organization=tenant_a.org, name="second").pk == account.pk
    assert provider_account_resolve(organization=tenant_a.org, name=None).pk == tenant_a.account.pk
    with django_assert_num_queries(0):
        assert provider_account_resolve(organization=tenant_a.org, name="second").pk == account.pk
        assert provider_account_resolve(organization=tenant_a.org, name=None).pk == tenant_a.account.pk
    account.name = "renamed"
    provider_account_save(account)  # this process sees the change at once
    with pytest.raises(InvalidRequest):
        provider_account_resolve(organization=tenant_a.org, name="second")
    assert provider_account_resolve(organization=tenant_a.org, name="renamed").pk == account.pk
