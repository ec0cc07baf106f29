"""Retrieves of recorded upstream files: answered from the record while the upstream's confirmation is
fresh (UPSTREAM_RECHECK_SECONDS), from the upstream otherwise, which also catches deletions made there."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from files_api.models import AuditEvent, File
from tests.conftest import Tenant, upload
from tests.upstreams import FakeFilesServer, add_upstream_account


def uploaded(tenant: Tenant, server: FakeFilesServer, content: bytes = b"abc") -> dict:
    response = upload(tenant.client, content, account="up")
    assert response.status_code == 200, response.json()
    body = response.json()
    if body["status"] != "processed":  # Azure answers `pending`: the first retrieve asks and settles it
        assert tenant.client.get(f"/v1/files/{body['id']}").json()["status"] == "processed"
    return tenant.client.get(f"/v1/files/{body['id']}").json()


def retrieves_upstream(server: FakeFilesServer, file_id: str) -> int:
    return len(server.calls("GET", f"/{file_id}"))


def age(file_id: str, seconds: float) -> None:
    File.objects.filter(public_id=file_id).update(checked_at=timezone.now() - timedelta(seconds=seconds))


def test_a_freshly_confirmed_file_is_answered_from_the_record(tenant_a, upstream, settings):
    settings.UPSTREAM_RECHECK_SECONDS = 60
    body = uploaded(tenant_a, upstream)
    asked = retrieves_upstream(upstream, body["id"])
    for _ in range(3):
        assert tenant_a.client.get(f"/v1/files/{body['id']}").json() == body
    assert retrieves_upstream(upstream, body["id"]) == asked


def test_after_the_window_the_upstream_is_asked_once_and_the_record_is_fresh_again(tenant_a, upstream, settings):
    settings.UPSTREAM_RECHECK_SECONDS = 60
    body = uploaded(tenant_a, upstream)
    asked = retrieves_upstream(upstream, body["id"])
    age(body["id"], 61)
    assert tenant_a.client.get(f"/v1/files/{body['id']}").json() == body
    assert retrieves_upstream(upstream, body["id"]) == asked + 1
    assert timezone.now() - File.objects.get(public_id=body["id"]).checked_at < timedelta(seconds=5)
    assert tenant_a.client.get(f"/v1/files/{body['id']}").json() == body
    assert retrieves_upstream(upstream, body["id"]) == asked + 1


def test_a_file_deleted_upstream_is_marked_missing_at_the_next_check_and_forgotten_once_confirmed(
    tenant_a, upstream, settings
):
    settings.UPSTREAM_RECHECK_SECONDS = 60
    settings.MISSING_FILE_CONFIRM_SECONDS = 600
    body = uploaded(tenant_a, upstream, b"12345")
    upstream.files.pop(body["id"]).path.unlink()
    assert tenant_a.client.get(f"/v1/files/{body['id']}").status_code == 200  # within the window
    age(body["id"], 61)
    response = tenant_a.client.get(f"/v1/files/{body['id']}")
    assert response.status_code == 404, response.content
    # One 404 is not proof: the record, and its charge, stay; the audit trail says what happened.
    record = File.objects.get(public_id=body["id"])
    assert (record.deleted_at, record.missing_since is not None) == (None, True)
    assert used_bytes(tenant_a) == 5
    assert audit_actions(body["id"]) == ["file.create", "file.missing"]
    assert tenant_a.client.get(f"/v1/files/{body['id']}").status_code == 404  # asked again, not yet confirmed
    assert used_bytes(tenant_a) == 5
    File.objects.filter(pk=record.pk).update(missing_since=timezone.now() - timedelta(seconds=601))
    assert tenant_a.client.get(f"/v1/files/{body['id']}").status_code == 404
    assert File.objects.get(pk=record.pk).deleted_at is not None
    assert used_bytes(tenant_a) == 0
    assert audit_actions(body["id"]) == ["file.create", "file.missing", "file.gone"]


def test_a_file_missing_for_a_moment_is_kept_and_found_again(tenant_a, upstream, settings):
    settings.UPSTREAM_RECHECK_SECONDS = 0
    body = uploaded(tenant_a, upstream, b"12345")
    upstream.fail("retrieve", status=404)
    assert tenant_a.client.get(f"/v1/files/{body['id']}").status_code == 404
    assert File.objects.get(public_id=body["id"]).missing_since is not None
    assert tenant_a.client.get(f"/v1/files/{body['id']}").status_code == 200
    record = File.objects.get(public_id=body["id"])
    assert (record.missing_since, record.deleted_at) == (None, None)
    assert used_bytes(tenant_a) == 5


def used_bytes(tenant: Tenant) -> int:
    tenant.org.refresh_from_db()
    return tenant.org.used_bytes


def audit_actions(file_id: str) -> list[str]:
    return list(AuditEvent.objects.filter(file_id=file_id).order_by("id").values_list("action", flat=True))


def test_zero_asks_the_upstream_on_every_retrieve(tenant_a, upstream, settings):
    settings.UPSTREAM_RECHECK_SECONDS = 0
    body = uploaded(tenant_a, upstream)
    asked = retrieves_upstream(upstream, body["id"])
    for _ in range(2):
        assert tenant_a.client.get(f"/v1/files/{body['id']}").status_code == 200
    assert retrieves_upstream(upstream, body["id"]) == asked + 2


def test_a_file_not_yet_processed_is_always_asked_about(tenant_a, fake_azure, settings):
    settings.UPSTREAM_RECHECK_SECONDS = 60
    add_upstream_account(tenant_a, fake_azure, name="up")
    response = upload(tenant_a.client, b"abc", account="up")
    file_id = response.json()["id"]
    assert response.json()["status"] == "pending"
    assert File.objects.get(public_id=file_id).checked_at is not None  # recorded at upload...
    assert tenant_a.client.get(f"/v1/files/{file_id}").json()["status"] == "processed"  # ...yet asked
    assert retrieves_upstream(fake_azure, file_id) == 1
