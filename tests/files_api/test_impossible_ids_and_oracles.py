"""Ids no file can have, answers that would reveal another organisation's ids, listings past hidden
files, and a purge that must not stop."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from files_api.models import AuditEvent, File
from tenants.models import Organization, ProviderAccount
from tests.conftest import Tenant, upload
from tests.fakes import FakeProvider

LONG_ID = "file-" + "x" * 100  # within the route's 128 characters, beyond File.public_id's 64

BY_ID = {
    "retrieve": lambda client, file_id, **headers: client.get(f"/v1/files/{file_id}", **headers),
    "content": lambda client, file_id, **headers: client.get(f"/v1/files/{file_id}/content", **headers),
    "delete": lambda client, file_id, **headers: client.delete(f"/v1/files/{file_id}", **headers),
}


def envelope_without_id(response: Any, file_id: str) -> tuple[int, dict[str, Any]]:
    error = dict(response.json()["error"])
    error["message"] = error["message"].replace(file_id, "<id>")
    return response.status_code, error


@pytest.mark.parametrize("operation", BY_ID)
@pytest.mark.parametrize("file_id", [LONG_ID, "file-a%00b"], ids=["longer-than-64", "nul"])
def test_an_id_no_file_can_have_is_a_clean_404_without_an_upstream_call(
    tenant_a: Tenant, fake_account_a: ProviderAccount, operation: str, file_id: str
) -> None:
    # On a pass-through account an unknown id is looked up upstream, and the failure audited: an id
    # PostgreSQL cannot store in varchar(64) (or at all, with NUL) used to end in a 500 there.
    response = BY_ID[operation](tenant_a.client, file_id, HTTP_X_PROVIDER_ACCOUNT="fake")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert FakeProvider.calls == []
    assert all(len(event.file_id) <= 64 for event in AuditEvent.objects.all())


@pytest.mark.parametrize("operation", BY_ID)
def test_a_long_or_nul_id_is_a_404_on_a_storage_account_too(client_a: Any, operation: str) -> None:
    for file_id in (LONG_ID, "file-a%00b"):
        response = BY_ID[operation](client_a, file_id)
        assert response.status_code == 404, (file_id, response.json())


@pytest.mark.parametrize("operation", BY_ID)
@pytest.mark.parametrize("header", ["no-such-account", None], ids=["unknown-account", "no-default-account"])
def test_the_account_header_does_not_reveal_whether_an_id_exists_in_another_org(
    tenant_a: Tenant, tenant_b: Tenant, operation: str, header: str | None
) -> None:
    a_file = upload(tenant_a.client, b"A's secret").json()["id"]
    unknown = "file-" + "0" * 24
    if header is None:
        ProviderAccount.objects.filter(organization=tenant_b.org).update(is_default=False)
    headers = {"HTTP_X_PROVIDER_ACCOUNT": header} if header else {}
    foreign = BY_ID[operation](tenant_b.client, a_file, **headers)
    missing = BY_ID[operation](tenant_b.client, unknown, **headers)
    assert envelope_without_id(foreign, a_file) == envelope_without_id(missing, unknown)
    assert foreign.status_code == 400


def test_the_account_header_is_still_ignored_for_the_callers_own_file(client_a: Any) -> None:
    file_id = upload(client_a, b"mine").json()["id"]
    response = client_a.get(f"/v1/files/{file_id}", HTTP_X_PROVIDER_ACCOUNT="no-such-account")
    assert response.status_code == 200


def test_a_nul_in_the_account_header_is_a_400_not_a_database_error(client_a: Any) -> None:
    response = client_a.get("/v1/files", HTTP_X_PROVIDER_ACCOUNT="disk\x00")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_provider_account"


def test_a_nul_in_the_api_key_is_a_401_not_a_database_error(db: Any) -> None:
    from rest_framework.test import APIClient

    response = APIClient().get("/v1/files", HTTP_AUTHORIZATION="Bearer fg_\x00" + "a" * 40)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_purge_goes_on_past_a_file_whose_account_cannot_be_built(tenant_a: Tenant, tenant_b: Tenant) -> None:
    # One organisation's broken account (here: credentials no configured key decrypts) must not stop
    # every other organisation's expired files from being purged and their bytes freed.
    broken = upload(tenant_a.client, b"aaaa").json()["id"]
    fine = upload(tenant_b.client, b"bbbbbb").json()["id"]
    File.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    ProviderAccount.objects.filter(pk=tenant_a.account.pk).update(secrets_encrypted="not-a-fernet-token")

    out = StringIO()
    call_command("purge_expired_files", stdout=out)

    assert File.objects.get(public_id=fine).is_deleted
    assert not File.objects.get(public_id=broken).is_deleted
    assert Organization.objects.get(pk=tenant_b.org.pk).used_bytes == 0
    assert Organization.objects.get(pk=tenant_a.org.pk).used_bytes == 4


def test_a_shared_upstream_page_full_of_another_orgs_files_does_not_end_the_listing(
    tenant_a: Tenant, tenant_b: Tenant, fake_provider: type[FakeProvider]
) -> None:
    # Two organisations on one upstream credential (the fake's files are shared by every account):
    # a page made only of A's files used to reach B as data=[] with has_more=true, and the SDKs
    # stop paging on an empty page, so B never saw its own older file.
    from tenants.services import provider_account_create

    for tenant in (tenant_a, tenant_b):
        provider_account_create(organization=tenant.org, name="shared", kind="fake", config={"api_key": "sk-shared"})
    b_file = upload(tenant_b.client, b"B's", account="shared").json()["id"]
    a_files = [upload(tenant_a.client, b"A's", account="shared").json()["id"] for _ in range(3)]

    listed = tenant_b.client.get("/v1/files?limit=2", HTTP_X_PROVIDER_ACCOUNT="shared").json()

    assert [file["id"] for file in listed["data"]] == [b_file]
    assert listed["has_more"] is False
    assert not set(a_files) & {listed["first_id"], listed["last_id"]}


def test_a_page_filled_past_hidden_files_says_there_is_more(
    tenant_a: Tenant, tenant_b: Tenant, fake_provider: type[FakeProvider]
) -> None:
    from tenants.services import provider_account_create

    for tenant in (tenant_a, tenant_b):
        provider_account_create(organization=tenant.org, name="shared", kind="fake", config={"api_key": "sk-shared"})
    b_files = [upload(tenant_b.client, b"B's", account="shared").json()["id"] for _ in range(3)]
    upload(tenant_a.client, b"A's", account="shared")

    seen: list[str] = []
    after = ""
    while True:
        page = tenant_b.client.get(f"/v1/files?limit=2{after}", HTTP_X_PROVIDER_ACCOUNT="shared").json()
        seen += [file["id"] for file in page["data"]]
        if not page["has_more"]:
            break
        after = f"&after={page['last_id']}"
    assert seen == b_files[::-1]
