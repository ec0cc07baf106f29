"""The audit trail: who did what to which file, with how many bytes and what came of it."""

from __future__ import annotations

from typing import Any

from files_api.models import AuditEvent
from tests.conftest import Tenant, upload
from tests.fakes import FakeProvider


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_an_upload_writes_a_create_event(tenant_a: Tenant) -> None:
    file_id = upload(tenant_a.client, b"x" * 42).json()["id"]
    [event] = events(AuditEvent.Action.CREATE)
    assert (event.organization, event.api_key, event.file_id) == (tenant_a.org, tenant_a.api_key, file_id)
    assert (event.provider_account, event.bytes, event.outcome, event.detail) == ("disk", 42, "success", "")


def test_a_download_writes_a_content_event(tenant_a: Tenant) -> None:
    file_id = upload(tenant_a.client, b"x" * 42).json()["id"]
    b"".join(tenant_a.client.get(f"/v1/files/{file_id}/content").streaming_content)
    [event] = events(AuditEvent.Action.CONTENT)
    assert (event.api_key, event.file_id, event.bytes, event.outcome) == (tenant_a.api_key, file_id, 42, "success")


def test_a_delete_writes_a_delete_event(tenant_a: Tenant) -> None:
    file_id = upload(tenant_a.client, b"x" * 42).json()["id"]
    tenant_a.client.delete(f"/v1/files/{file_id}")
    [event] = events(AuditEvent.Action.DELETE)
    assert (event.api_key, event.file_id, event.bytes, event.outcome) == (tenant_a.api_key, file_id, 42, "success")
    assert event.provider_account == "disk"


def test_list_and_retrieve_write_no_event(tenant_a: Tenant) -> None:
    file_id = upload(tenant_a.client).json()["id"]
    tenant_a.client.get("/v1/files")
    tenant_a.client.get(f"/v1/files/{file_id}")
    assert [event.action for event in AuditEvent.objects.all()] == [AuditEvent.Action.CREATE]


def test_a_validation_failure_is_recorded_with_what_the_client_was_told(tenant_a: Tenant) -> None:
    upload(tenant_a.client, purpose="training")
    [event] = events(AuditEvent.Action.CREATE)
    assert (event.api_key, event.file_id, event.outcome) == (tenant_a.api_key, "", "InvalidRequest")
    assert event.detail.startswith("Invalid value for 'purpose': 'training'.")


def test_a_coded_failure_is_recorded_by_its_code(tenant_a: Tenant) -> None:
    upload(tenant_a.client, b"")
    [event] = events(AuditEvent.Action.CREATE)
    assert (event.outcome, event.detail) == ("empty_file", "The file is empty.")


def test_an_upstream_failure_is_recorded_with_the_account(
    tenant_a: Tenant, fake_account_a: Any, fake_provider: type[FakeProvider]
) -> None:
    fake_provider.fail_on["upload"] = "timeout"
    upload(tenant_a.client, account="fake")
    [event] = events(AuditEvent.Action.CREATE)
    assert (event.provider_account, event.outcome) == ("fake", "upstream_timeout")


def test_a_bug_is_recorded_by_class_name_without_its_message(
    tenant_a: Tenant, fake_account_a: Any, fake_provider: type[FakeProvider]
) -> None:
    fake_provider.fail_on["upload"] = "bug"
    upload(tenant_a.client, account="fake")
    [event] = events(AuditEvent.Action.CREATE)
    assert (event.outcome, event.detail) == ("RuntimeError", "unexpected error")


def test_a_failed_download_is_recorded(
    tenant_a: Tenant, fake_account_a: Any, fake_provider: type[FakeProvider]
) -> None:
    file_id = upload(tenant_a.client, account="fake").json()["id"]
    fake_provider.fail_on["content"] = "unavailable"
    assert tenant_a.client.get(f"/v1/files/{file_id}/content").status_code == 503
    [event] = events(AuditEvent.Action.CONTENT)
    assert (event.file_id, event.provider_account, event.outcome) == (file_id, "fake", "upstream_unavailable")


def test_a_failed_delete_is_recorded(tenant_a: Tenant, fake_account_a: Any, fake_provider: type[FakeProvider]) -> None:
    file_id = upload(tenant_a.client, account="fake").json()["id"]
    fake_provider.fail_on["delete"] = "error"
    tenant_a.client.delete(f"/v1/files/{file_id}")
    [event] = events(AuditEvent.Action.DELETE)
    assert (event.file_id, event.outcome) == (file_id, "upstream_error")


def test_events_belong_to_the_organisation_that_acted(tenant_a: Tenant, tenant_b: Tenant) -> None:
    file_id = upload(tenant_a.client).json()["id"]
    tenant_b.client.get(f"/v1/files/{file_id}/content")
    tenant_b.client.delete(f"/v1/files/{file_id}")
    assert not AuditEvent.objects.filter(organization=tenant_a.org).exclude(api_key=tenant_a.api_key).exists()
    assert not AuditEvent.objects.filter(organization=tenant_a.org, action=AuditEvent.Action.DELETE).exists()


def test_events_outlive_a_deleted_key(tenant_a: Tenant) -> None:
    upload(tenant_a.client)
    tenant_a.api_key.delete()
    [event] = events(AuditEvent.Action.CREATE)
    assert (event.api_key, event.outcome) == (None, "success")
