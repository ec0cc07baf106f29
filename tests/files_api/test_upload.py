"""The five operations on the default ``local`` provider: what the client gets and what the gateway keeps."""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path
from typing import Any

from django.conf import settings

from files_api.models import File
from tenants.models import Organization, ProviderAccount
from tenants.services import provider_account_create
from tests.conftest import Tenant, batch_line, make_tenant, upload

FILE_KEYS = {"id", "object", "bytes", "created_at", "expires_at", "filename", "purpose", "status", "status_details"}


def stored_path(org_slug: str, file_id: str) -> Path:
    return Path(settings.DATA_DIR) / "files" / org_slug / file_id


def content_of(response: Any) -> bytes:
    return b"".join(response.streaming_content)


def test_it_returns_an_openai_file_object(client_a: Any) -> None:
    before = int(time.time())
    response = upload(client_a, b"hello world", filename="notes.txt", purpose="assistants")
    assert response.status_code == 200
    file = response.json()
    assert set(file) == FILE_KEYS
    assert re.fullmatch(r"file-[A-Za-z0-9]{24}", file["id"])
    assert file["object"] == "file"
    assert (file["bytes"], file["filename"], file["purpose"]) == (11, "notes.txt", "assistants")
    assert (file["status"], file["status_details"], file["expires_at"]) == ("processed", None, None)
    assert before <= file["created_at"] <= int(time.time())


def test_it_mints_a_new_id_for_every_upload(client_a: Any) -> None:
    ids = {upload(client_a, b"same bytes").json()["id"] for _ in range(5)}
    assert len(ids) == 5


def test_it_stores_the_bytes_under_the_organisation_folder(client_a: Any) -> None:
    file_id = upload(client_a, b"on disk").json()["id"]
    assert stored_path("org-a", file_id).read_bytes() == b"on disk"
    assert not list(stored_path("org-a", file_id).parent.glob("*.part"))


def test_it_records_the_file_with_its_key_account_and_checksum(tenant_a: Tenant) -> None:
    file_id = upload(tenant_a.client, b"recorded").json()["id"]
    file = File.objects.get(public_id=file_id)
    assert (file.organization, file.provider_account) == (tenant_a.org, tenant_a.account)
    assert file.api_key == tenant_a.api_key
    assert (file.bytes, file.sha256) == (8, hashlib.sha256(b"recorded").hexdigest())
    assert file.storage_key == f"org-a/{file_id}"
    assert file.deleted_at is None


def test_it_charges_the_real_size_and_holds_nothing_after_an_upload(tenant_a: Tenant) -> None:
    upload(tenant_a.client, b"x" * 1234)
    org = Organization.objects.get(pk=tenant_a.org.pk)
    assert (org.used_bytes, org.reserved_bytes) == (1234, 0)
    assert not org.reservations.exists()


def test_it_retrieves_what_the_upload_returned(client_a: Any) -> None:
    created = upload(client_a, b"retrieve me").json()
    response = client_a.get(f"/v1/files/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created


def test_it_streams_the_content_back_byte_for_byte(client_a: Any) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks, not chunk-aligned
    file_id = upload(client_a, data, filename="blob.bin").json()["id"]
    response = client_a.get(f"/v1/files/{file_id}/content")
    assert response.status_code == 200
    assert response.streaming
    assert content_of(response) == data


def test_it_sends_download_headers(client_a: Any) -> None:
    file_id = upload(client_a, b"12345", filename="report.csv").json()["id"]
    response = client_a.get(f"/v1/files/{file_id}/content")
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Length"] == "5"
    assert response["Content-Disposition"] == "attachment; filename=\"report.csv\"; filename*=UTF-8''report.csv"


def test_it_encodes_a_non_ascii_filename_in_the_download_header(client_a: Any) -> None:
    file_id = upload(client_a, b"x", filename='naïve "quote".txt').json()["id"]
    disposition = client_a.get(f"/v1/files/{file_id}/content")["Content-Disposition"]
    assert disposition == ("attachment; filename=\"na_ve _quote_.txt\"; filename*=UTF-8''na%C3%AFve%20%22quote%22.txt")


def test_it_serves_content_whatever_the_accept_header(client_a: Any) -> None:
    file_id = upload(client_a, b"binary please").json()["id"]
    response = client_a.get(f"/v1/files/{file_id}/content", HTTP_ACCEPT="application/binary")
    assert response.status_code == 200
    assert content_of(response) == b"binary please"


def test_it_deletes_the_file_and_its_stored_object(tenant_a: Tenant) -> None:
    file_id = upload(tenant_a.client, b"bye").json()["id"]
    response = tenant_a.client.delete(f"/v1/files/{file_id}")
    assert response.status_code == 200
    assert response.json() == {"id": file_id, "object": "file", "deleted": True}
    assert not stored_path("org-a", file_id).exists()
    file = File.objects.get(public_id=file_id)
    assert (file.is_deleted, file.status) == (True, "deleted")
    assert Organization.objects.get(pk=tenant_a.org.pk).used_bytes == 0


def test_it_answers_404_for_every_operation_on_a_deleted_file(client_a: Any) -> None:
    file_id = upload(client_a).json()["id"]
    client_a.delete(f"/v1/files/{file_id}")
    assert client_a.get(f"/v1/files/{file_id}").status_code == 404
    assert client_a.get(f"/v1/files/{file_id}/content").status_code == 404
    assert client_a.delete(f"/v1/files/{file_id}").status_code == 404


def test_it_answers_404_with_the_envelope_for_an_unknown_id(client_a: Any) -> None:
    response = client_a.get("/v1/files/file-doesnotexist")
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "No such File object: file-doesnotexist",
            "type": "invalid_request_error",
            "param": "id",
            "code": None,
        }
    }


def test_it_answers_404_when_the_stored_object_vanished(client_a: Any) -> None:
    file_id = upload(client_a, b"gone").json()["id"]
    stored_path("org-a", file_id).unlink()
    response = client_a.get(f"/v1/files/{file_id}/content")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_it_uploads_to_the_account_named_in_the_header(tenant_a: Tenant, tmp_path: Path) -> None:
    other = provider_account_create(
        organization=tenant_a.org, name="archive", kind="local", config={"path": str(tmp_path / "archive")}
    )
    file_id = upload(tenant_a.client, b"archived", account="archive").json()["id"]
    assert File.objects.get(public_id=file_id).provider_account == other
    assert (tmp_path / "archive" / "org-a" / file_id).read_bytes() == b"archived"
    assert not stored_path("org-a", file_id).exists()


def test_it_reads_a_file_by_id_from_the_account_it_was_uploaded_to(tenant_a: Tenant, tmp_path: Path) -> None:
    provider_account_create(
        organization=tenant_a.org, name="archive", kind="local", config={"path": str(tmp_path / "archive")}
    )
    file_id = upload(tenant_a.client, b"archived", account="archive").json()["id"]
    response = tenant_a.client.get(f"/v1/files/{file_id}/content")
    assert content_of(response) == b"archived"


def test_it_refuses_an_upload_when_the_org_has_no_default_account(tenant_a: Tenant) -> None:
    ProviderAccount.objects.filter(pk=tenant_a.account.pk).update(is_default=False)
    response = upload(tenant_a.client)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "no_provider_account"
    assert response.json()["error"]["param"] == "X-Provider-Account"


def test_it_gives_batch_files_openais_default_30_day_expiry(client_a: Any) -> None:
    file = upload(client_a, batch_line(), filename="b.jsonl", purpose="batch").json()
    assert file["expires_at"] == file["created_at"] + 30 * 24 * 3600


def test_it_keeps_an_explicit_expiry_for_batch_files(client_a: Any) -> None:
    fields = {"expires_after[anchor]": "created_at", "expires_after[seconds]": "3600"}
    file = upload(client_a, batch_line(), filename="b.jsonl", purpose="batch", **fields).json()
    assert file["expires_at"] == file["created_at"] + 3600


def test_it_keeps_the_same_file_name_apart_per_upload(client_a: Any) -> None:
    first = upload(client_a, b"one", filename="same.txt").json()["id"]
    second = upload(client_a, b"two", filename="same.txt").json()["id"]
    assert content_of(client_a.get(f"/v1/files/{first}/content")) == b"one"
    assert content_of(client_a.get(f"/v1/files/{second}/content")) == b"two"


def test_it_serves_each_organisation_from_its_own_folder(tenant_a: Tenant) -> None:
    tenant_c = make_tenant("org-c")
    a_id = upload(tenant_a.client, b"a").json()["id"]
    c_id = upload(tenant_c.client, b"c").json()["id"]
    assert stored_path("org-a", a_id).exists()
    assert stored_path("org-c", c_id).exists()
    assert not stored_path("org-c", a_id).exists()
