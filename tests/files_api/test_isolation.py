"""Two organisations side by side: B never sees, reads, deletes or pages through A's files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from files_api.models import File
from tenants.models import Organization
from tenants.services import provider_account_create
from tests.conftest import Tenant, upload

UNKNOWN_ID = "file-000000000000000000000000"

BY_ID = {
    "retrieve": lambda client, file_id: client.get(f"/v1/files/{file_id}"),
    "content": lambda client, file_id: client.get(f"/v1/files/{file_id}/content"),
    "delete": lambda client, file_id: client.delete(f"/v1/files/{file_id}"),
}


@pytest.fixture
def a_file(tenant_a: Tenant) -> str:
    response = upload(tenant_a.client, b"A's secret", filename="a-secret.txt")
    assert response.status_code == 200
    return response.json()["id"]


def error_without_id(response: Any, file_id: str) -> tuple[int, dict[str, Any]]:
    error = dict(response.json()["error"])
    error["message"] = error["message"].replace(file_id, "<id>")
    return response.status_code, error


@pytest.mark.parametrize("operation", BY_ID)
def test_org_b_gets_404_for_org_as_file(client_b: Any, a_file: str, operation: str) -> None:
    response = BY_ID[operation](client_b, a_file)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("operation", BY_ID)
def test_org_b_gets_the_same_answer_for_org_as_file_as_for_a_nonexistent_one(
    client_b: Any, a_file: str, operation: str
) -> None:
    foreign = BY_ID[operation](client_b, a_file)
    missing = BY_ID[operation](client_b, UNKNOWN_ID)
    assert error_without_id(foreign, a_file) == error_without_id(missing, UNKNOWN_ID)


def test_org_b_cannot_delete_org_as_file(tenant_a: Tenant, client_b: Any, a_file: str) -> None:
    client_b.delete(f"/v1/files/{a_file}")
    assert tenant_a.client.get(f"/v1/files/{a_file}").status_code == 200
    assert (Path(settings.DATA_DIR) / "files" / "org-a" / a_file).read_bytes() == b"A's secret"
    assert Organization.objects.get(pk=tenant_a.org.pk).used_bytes == len(b"A's secret")


def test_org_as_files_never_appear_in_org_bs_list(client_a: Any, client_b: Any, a_file: str) -> None:
    b_file = upload(client_b, b"B's own").json()["id"]
    listed = client_b.get("/v1/files").json()
    assert [file["id"] for file in listed["data"]] == [b_file]
    assert a_file not in str(listed)


def test_org_bs_empty_list_stays_empty_while_org_a_has_files(client_b: Any, a_file: str) -> None:
    listed = client_b.get("/v1/files?order=asc&limit=100").json()
    assert listed == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


def test_org_b_cannot_page_with_org_as_id_as_cursor(client_b: Any, a_file: str) -> None:
    upload(client_b, b"B's own")
    response = client_b.get(f"/v1/files?after={a_file}")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "after"


def test_org_as_id_as_cursor_gets_the_same_answer_as_a_nonexistent_id(client_b: Any, a_file: str) -> None:
    upload(client_b, b"B's own")
    foreign = client_b.get(f"/v1/files?after={a_file}")
    missing = client_b.get(f"/v1/files?after={UNKNOWN_ID}")
    assert error_without_id(foreign, a_file) == error_without_id(missing, UNKNOWN_ID)


def test_org_b_cannot_upload_to_org_as_account_by_naming_it(tenant_a: Tenant, client_b: Any, tmp_path: Path) -> None:
    provider_account_create(
        organization=tenant_a.org, name="a-private", kind="local", config={"path": str(tmp_path / "a-private")}
    )
    response = upload(client_b, b"intruder", account="a-private")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_provider_account"
    assert not File.objects.exists()
    assert not (tmp_path / "a-private").exists()


def test_org_b_cannot_list_org_as_account_by_naming_it(tenant_a: Tenant, client_b: Any) -> None:
    provider_account_create(organization=tenant_a.org, name="a-private", kind="local", config={})
    response = client_b.get("/v1/files", HTTP_X_PROVIDER_ACCOUNT="a-private")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_provider_account"


def test_an_account_name_both_orgs_use_resolves_to_the_callers_own(tenant_a: Tenant, tenant_b: Tenant) -> None:
    assert tenant_a.account.name == tenant_b.account.name == "disk"
    b_file = upload(tenant_b.client, b"mine", account="disk").json()["id"]
    record = File.objects.get(public_id=b_file)
    assert (record.organization, record.provider_account) == (tenant_b.org, tenant_b.account)
    assert (Path(settings.DATA_DIR) / "files" / "org-b" / b_file).exists()
    assert tenant_a.client.get("/v1/files", HTTP_X_PROVIDER_ACCOUNT="disk").json()["data"] == []


def test_org_bs_usage_is_not_charged_for_org_as_uploads(tenant_a: Tenant, tenant_b: Tenant) -> None:
    upload(tenant_a.client, b"x" * 500)
    assert Organization.objects.get(pk=tenant_b.org.pk).used_bytes == 0
    assert Organization.objects.get(pk=tenant_a.org.pk).used_bytes == 500
