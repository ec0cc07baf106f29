"""expires_after, expired files reading as gone, and the purge command. Time moves by editing expires_at."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from files_api.models import AuditEvent, File
from tenants.models import Organization, QuotaReservation
from tenants.services import quota_reserve
from tests.conftest import Tenant, upload
from tests.fakes import FakeProvider

HOUR = 3600


def upload_expiring(client: Any, content: bytes = b"short-lived", seconds: int = HOUR) -> str:
    fields = {"expires_after[anchor]": "created_at", "expires_after[seconds]": str(seconds)}
    response = upload(client, content, **fields)
    assert response.status_code == 200, response.json()
    return response.json()["id"]


def expire(file_id: str) -> None:
    File.objects.filter(public_id=file_id).update(expires_at=timezone.now() - timedelta(seconds=1))


def stored(file_id: str) -> Path:
    return Path(settings.DATA_DIR) / "files" / "org-a" / file_id


def purge(*args: str) -> str:
    out = StringIO()
    call_command("purge_expired_files", *args, stdout=out)
    return out.getvalue()


def used_bytes(tenant: Tenant) -> int:
    return Organization.objects.get(pk=tenant.org.pk).used_bytes


def test_expires_after_sets_expires_at_on_the_record(client_a: Any) -> None:
    file_id = upload_expiring(client_a, seconds=2 * HOUR)
    file = File.objects.get(public_id=file_id)
    assert file.expires_at - file.created_at == timedelta(seconds=2 * HOUR)
    assert client_a.get(f"/v1/files/{file_id}").json()["expires_at"] == file.expires_at_unix


def test_a_file_without_expires_after_never_expires(client_a: Any) -> None:
    file_id = upload(client_a).json()["id"]
    assert File.objects.get(public_id=file_id).expires_at is None


@pytest.mark.parametrize(
    "request_file",
    [
        lambda client, file_id: client.get(f"/v1/files/{file_id}"),
        lambda client, file_id: client.get(f"/v1/files/{file_id}/content"),
        lambda client, file_id: client.delete(f"/v1/files/{file_id}"),
    ],
    ids=["retrieve", "content", "delete"],
)
def test_an_expired_file_reads_as_404(client_a: Any, request_file: Any) -> None:
    file_id = upload_expiring(client_a)
    expire(file_id)
    response = request_file(client_a, file_id)
    assert response.status_code == 404
    assert response.json()["error"]["message"] == f"No such File object: {file_id}"


def test_a_file_is_readable_until_it_expires(client_a: Any) -> None:
    file_id = upload_expiring(client_a)
    File.objects.filter(public_id=file_id).update(expires_at=timezone.now() + timedelta(seconds=30))
    assert client_a.get(f"/v1/files/{file_id}").status_code == 200


def test_an_expired_file_is_absent_from_the_list(client_a: Any) -> None:
    expired = upload_expiring(client_a)
    kept = upload_expiring(client_a)
    expire(expired)
    assert [file["id"] for file in client_a.get("/v1/files").json()["data"]] == [kept]


def test_dry_run_lists_expired_files_and_changes_nothing(tenant_a: Tenant) -> None:
    file_id = upload_expiring(tenant_a.client, b"12345")
    expire(file_id)
    output = purge("--dry-run")
    assert f"Would purge {file_id} (org-a, 5 bytes)" in output
    assert "Would purge 1 expired file(s)" in output
    assert stored(file_id).read_bytes() == b"12345"
    assert File.objects.get(public_id=file_id).deleted_at is None
    assert used_bytes(tenant_a) == 5
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.EXPIRE).exists()


def test_purge_deletes_the_stored_object(client_a: Any) -> None:
    file_id = upload_expiring(client_a)
    expire(file_id)
    purge()
    assert not stored(file_id).exists()


def test_purge_marks_the_record_deleted(client_a: Any) -> None:
    file_id = upload_expiring(client_a)
    expire(file_id)
    output = purge()
    file = File.objects.get(public_id=file_id)
    assert (file.is_deleted, file.status) == (True, "deleted")
    assert f"Purged {file_id}" in output


def test_purge_frees_the_bytes(tenant_a: Tenant) -> None:
    kept = upload(tenant_a.client, b"kept").json()["id"]
    file_id = upload_expiring(tenant_a.client, b"x" * 100)
    expire(file_id)
    purge()
    assert used_bytes(tenant_a) == File.objects.get(public_id=kept).bytes == 4


def test_purge_writes_a_file_expire_audit_event(tenant_a: Tenant) -> None:
    file_id = upload_expiring(tenant_a.client, b"x" * 10)
    expire(file_id)
    purge()
    event = AuditEvent.objects.get(action=AuditEvent.Action.EXPIRE)
    assert (event.organization, event.file_id, event.bytes, event.outcome) == (tenant_a.org, file_id, 10, "success")
    assert (event.api_key, event.provider_account) == (None, "disk")


def test_purge_leaves_unexpired_files_alone(client_a: Any) -> None:
    later = upload_expiring(client_a)
    never = upload(client_a).json()["id"]
    assert "Purged 0 expired file(s)" in purge()
    assert stored(later).exists()
    assert stored(never).exists()
    assert not File.objects.filter(deleted_at__isnull=False).exists()


def test_purge_works_through_many_files_in_batches(tenant_a: Tenant) -> None:
    ids = [upload_expiring(tenant_a.client) for _ in range(5)]
    for file_id in ids:
        expire(file_id)
    assert "Purged 5 expired file(s)" in purge("--batch-size", "2")
    assert File.objects.filter(deleted_at__isnull=False).count() == 5
    assert used_bytes(tenant_a) == 0


def test_purge_is_idempotent(client_a: Any) -> None:
    file_id = upload_expiring(client_a)
    expire(file_id)
    purge()
    assert "Purged 0 expired file(s)" in purge()
    assert AuditEvent.objects.filter(action=AuditEvent.Action.EXPIRE).count() == 1


def test_purge_keeps_a_file_whose_provider_fails_for_the_next_run(
    tenant_a: Tenant, fake_account_a: Any, fake_provider: type[FakeProvider]
) -> None:
    fields = {"expires_after[anchor]": "created_at", "expires_after[seconds]": str(HOUR)}
    file_id = upload(tenant_a.client, b"upstream", account="fake", **fields).json()["id"]
    expire(file_id)
    fake_provider.fail_on["delete"] = "unavailable"
    assert "Purged 0 expired file(s)" in purge()
    assert File.objects.get(public_id=file_id).deleted_at is None
    assert used_bytes(tenant_a) == 8
    fake_provider.fail_on.clear()
    assert "Purged 1 expired file(s)" in purge()
    assert used_bytes(tenant_a) == 0
    assert file_id not in fake_provider.files


def test_purge_releases_stale_quota_reservations(tenant_a: Tenant) -> None:
    reservation = quota_reserve(organization_id=tenant_a.org.pk, nbytes=100)
    QuotaReservation.objects.filter(pk=reservation.pk).update(created_at=timezone.now() - timedelta(days=1))
    assert "released 1 stale quota reservation(s)" in purge()
    assert Organization.objects.get(pk=tenant_a.org.pk).reserved_bytes == 0
