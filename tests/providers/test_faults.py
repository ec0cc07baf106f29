"""Upstream faults seen through the gateway: each ends with the right error and the books balanced
(``tests/faults.py``: no stray record or upstream file, exact usage, nothing held).

Every test runs against each kind with a Files API of its own (OpenAI, Azure OpenAI, Anthropic, Groq).
What a kind accepts differs: Groq keeps batch files only (``payload`` makes one), and Anthropic never
lets uploaded files be downloaded (``readable_file`` makes one as its tools would). The gateway's own
database failing after the upstream stored a file is in ``test_database_faults.py``."""

from __future__ import annotations

import os
import socket
from typing import Any

import httpx
import pytest

from config.errors import UpstreamError
from files_api.models import AuditEvent, File
from tenants.models import Organization, ProviderAccount, QuotaReservation
from tests.conftest import Tenant, batch_file, batch_line, upload
from tests.faults import HTTP_KINDS, assert_books_balanced, upstream_books
from tests.upstream_server import FakeServer
from tests.upstreams import add_upstream_account

MiB = 1024 * 1024


@pytest.fixture(params=list(HTTP_KINDS))
def upstream(request: pytest.FixtureRequest, tenant_a: Tenant) -> FakeServer:
    """A fake upstream of each kind, with an account of tenant_a named ``up`` on it."""
    server = request.getfixturevalue(HTTP_KINDS[request.param])
    add_upstream_account(tenant_a, server, name="up")
    return server


def payload(server: FakeServer, size: int) -> bytes:
    """About ``size`` bytes the kind accepts: a batch file for Groq, random bytes for the others."""
    return batch_file(size) if server.kind == "groq" else os.urandom(size)


def send(tenant: Tenant, server: FakeServer, content: bytes, *, account: str = "up") -> Any:
    if server.kind == "groq":
        return upload(tenant.client, content, filename="batch.jsonl", purpose="batch", account=account)
    return upload(tenant.client, content, account=account)


def assert_usage(org: Organization, used_bytes: int) -> None:
    org.refresh_from_db()
    assert (org.used_bytes, org.reserved_bytes) == (used_bytes, 0)
    assert not QuotaReservation.objects.filter(organization=org).exists()


def assert_error(response: Any, status: int, error_type: str, code: str | None) -> None:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert (error["type"], error["code"]) == (error_type, code)


def assert_balanced(tenant: Tenant, server: FakeServer, *, orphans: tuple[str, ...] = ()) -> None:
    """The books of the ``up`` account balance (``tests.faults.assert_books_balanced``)."""
    account = ProviderAccount.objects.get(organization=tenant.org, name="up")
    assert_books_balanced(upstream_books(tenant, server, account), orphans=orphans)


def assert_nothing_recorded(tenant: Tenant, server: FakeServer) -> None:
    assert not File.objects.filter(organization=tenant.org).exists()
    assert server.files == {}
    assert_balanced(tenant, server)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Uploads.


def test_an_upstream_500_on_upload_is_a_502_and_is_not_retried(tenant_a, upstream):
    upstream.fail("upload", status=500)
    response = send(tenant_a, upstream, payload(upstream, 100))
    assert_error(response, 502, "server_error", "upstream_error")
    assert_nothing_recorded(tenant_a, upstream)
    assert len(upstream.calls("POST")) == 1
    event = AuditEvent.objects.get(action=AuditEvent.Action.CREATE)
    assert event.outcome == "upstream_error"


@pytest.mark.parametrize("retry_after", ["9", None])
def test_an_upstream_429_on_upload_keeps_retry_after_when_there_is_one(tenant_a, upstream, retry_after):
    upstream.fail("upload", status=429, retry_after=retry_after)
    response = send(tenant_a, upstream, payload(upstream, 100))
    assert_error(response, 429, "rate_limit_error", "rate_limit_exceeded")
    assert response.get("Retry-After") == retry_after
    assert_nothing_recorded(tenant_a, upstream)


def test_an_upstream_that_does_not_answer_is_a_504(tenant_a, upstream):
    add_upstream_account(tenant_a, upstream, name="slow", timeout="0.3")
    upstream.fail("upload", "hang")
    response = send(tenant_a, upstream, payload(upstream, 64 * 1024), account="slow")
    assert_error(response, 504, "server_error", "upstream_timeout")
    assert_nothing_recorded(tenant_a, upstream)


def test_a_connection_reset_midway_through_an_upload_is_a_502_with_nothing_left(tenant_a, upstream):
    upstream.fail("upload", "reset", after_bytes=512 * 1024)
    response = send(tenant_a, upstream, payload(upstream, 3 * MiB))
    assert_error(response, 502, "server_error", "upstream_error")
    upstream.wait_for(lambda: len(upstream.uploads) == 1)
    assert not upstream.uploads[0].is_complete
    assert_nothing_recorded(tenant_a, upstream)
    assert list(upstream.root.iterdir()) == []


def test_refused_account_credentials_are_a_403_that_does_not_blame_the_clients_key(tenant_a, upstream):
    add_upstream_account(tenant_a, upstream, name="stale", api_key="sk-stale-key-00000000")
    response = send(tenant_a, upstream, payload(upstream, 100), account="stale")
    assert_error(response, 403, "invalid_request_error", "upstream_authentication_failed")
    assert "WWW-Authenticate" not in response
    assert "sk-stale" not in response.json()["error"]["message"]
    assert_nothing_recorded(tenant_a, upstream)


def test_a_refused_connection_is_a_503(tenant_a, upstream):
    add_upstream_account(tenant_a, upstream, name="down", base_url=f"http://127.0.0.1:{free_port()}")
    response = send(tenant_a, upstream, payload(upstream, 100), account="down")
    assert_error(response, 503, "server_error", "upstream_unavailable")
    assert_nothing_recorded(tenant_a, upstream)


def test_a_bad_batch_line_late_in_the_file_leaves_nothing_upstream(tenant_a, upstream):
    lines = b"".join(batch_line(f"req-{n}") for n in range(20_000)) + b'{"custom_id": "late"}\n'
    assert len(lines) > 2 * MiB  # several chunks went upstream before the bad line arrived
    response = upload(tenant_a.client, lines, filename="batch.jsonl", purpose="batch", account="up")
    if upstream.kind == "anthropic":  # no batch files on Anthropic: refused before a byte goes upstream
        assert_error(response, 400, "invalid_request_error", "unsupported_purpose")
        assert upstream.requests == []
        return assert_nothing_recorded(tenant_a, upstream)
    assert_error(response, 400, "invalid_request_error", "invalid_batch_file")
    assert "line 20001" in response.json()["error"]["message"]
    upstream.wait_for(lambda: len(upstream.uploads) == 1)
    assert upstream.uploads[0].size > MiB and not upstream.uploads[0].is_complete
    assert_nothing_recorded(tenant_a, upstream)


def test_an_oversize_upload_is_refused_before_anything_goes_upstream(tenant_a, upstream):
    Organization.objects.filter(pk=tenant_a.org.pk).update(max_file_size_bytes=MiB)
    tenant_a.api_key.organization.refresh_from_db()
    response = send(tenant_a, upstream, payload(upstream, 2 * MiB))
    assert_error(response, 413, "invalid_request_error", "file_too_large")
    assert upstream.requests == []
    assert_usage(tenant_a.org, 0)


# Reads and deletes.


def uploaded(tenant: Tenant, server: FakeServer, size: int) -> tuple[str, int]:
    """A file uploaded through the gateway: its id and size."""
    content = payload(server, size)
    response = send(tenant, server, content)
    assert response.status_code == 200, response.json()
    return response.json()["id"], len(content)


def readable_file(tenant: Tenant, server: FakeServer, content: bytes) -> tuple[str, bool]:
    """A file whose content can be downloaded, and whether the gateway recorded it. Anthropic never
    lets uploads be downloaded: there it is made upstream, as Anthropic's tools make such files."""
    if server.kind == "anthropic":
        return server.add_file(content), False
    response = send(tenant, server, content)
    assert response.status_code == 200, response.json()
    return response.json()["id"], True


def test_a_connection_reset_midway_through_a_download_ends_the_stream_with_an_error(tenant_a, upstream):
    content = payload(upstream, 2 * MiB)
    file_id, is_recorded = readable_file(tenant_a, upstream, content)
    upstream.fail("content", "reset", after_bytes=MiB // 2)
    response = tenant_a.client.get(f"/v1/files/{file_id}/content", HTTP_X_PROVIDER_ACCOUNT="up")
    assert response.status_code == 200 and response["Content-Length"] == str(len(content))
    with pytest.raises(UpstreamError):
        b"".join(response.streaming_content)
    assert File.objects.filter(public_id=file_id, deleted_at__isnull=True).exists() is is_recorded
    assert_usage(tenant_a.org, len(content) if is_recorded else 0)
    assert file_id in upstream.files
    assert_balanced(tenant_a, upstream, orphans=() if is_recorded else (file_id,))  # Anthropic's: made outside


def test_a_download_cut_off_is_never_complete_for_an_http_client(live_server, tenant_a, fake_openai):
    add_upstream_account(tenant_a, fake_openai, name="up")
    content = os.urandom(2 * MiB)
    file_id, _ = readable_file(tenant_a, fake_openai, content)
    fake_openai.fail("content", "reset", after_bytes=MiB // 2)
    headers = {"Authorization": f"Bearer {tenant_a.key}"}
    received = bytearray()
    with (
        httpx.Client(base_url=live_server.url, headers=headers, timeout=1) as client,
        client.stream("GET", f"/v1/files/{file_id}/content") as response,
    ):
        assert response.headers["Content-Length"] == str(len(content))
        # The declared length makes the cut an error, never a shorter file. Gunicorn closes the
        # connection (RemoteProtocolError); Django's dev server keeps it open (ReadTimeout).
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadTimeout)):
            for chunk in response.iter_bytes():
                received += chunk
    assert 0 < len(received) < len(content)


def test_list_failures_are_retried_then_a_502(tenant_a, upstream, settings):
    settings.UPSTREAM_RETRIES = 2
    upstream.fail("list", status=500, times=10)
    response = tenant_a.client.get("/v1/files", HTTP_X_PROVIDER_ACCOUNT="up")
    assert_error(response, 502, "server_error", "upstream_error")
    assert len(upstream.calls("GET")) == 3


def test_a_transient_retrieve_failure_is_retried_away(tenant_a, upstream, settings):
    settings.UPSTREAM_RECHECK_SECONDS = 0  # ask the upstream, not the fresh record
    file_id, _ = uploaded(tenant_a, upstream, 3)
    upstream.fail("retrieve", status=503)
    assert tenant_a.client.get(f"/v1/files/{file_id}").status_code == 200
    assert len(upstream.calls("GET", f"/{file_id}")) == 2


def test_a_rate_limited_retrieve_keeps_retry_after(tenant_a, upstream, settings):
    settings.UPSTREAM_RECHECK_SECONDS = 0
    file_id, _ = uploaded(tenant_a, upstream, 3)
    upstream.fail("retrieve", status=429, retry_after="3")
    response = tenant_a.client.get(f"/v1/files/{file_id}")
    assert_error(response, 429, "rate_limit_error", "rate_limit_exceeded")
    assert response["Retry-After"] == "3"
    upstream.fail("retrieve", status=429, retry_after=None)
    response = tenant_a.client.get(f"/v1/files/{file_id}")
    assert_error(response, 429, "rate_limit_error", "rate_limit_exceeded")
    assert "Retry-After" not in response


def test_a_failed_delete_keeps_the_record_and_the_charge(tenant_a, upstream, settings):
    settings.UPSTREAM_RETRIES = 2
    file_id, size = uploaded(tenant_a, upstream, 5)
    upstream.fail("delete", status=500, times=3)
    assert_error(tenant_a.client.delete(f"/v1/files/{file_id}"), 502, "server_error", "upstream_error")
    assert File.objects.get(public_id=file_id).deleted_at is None
    assert_usage(tenant_a.org, size)
    assert tenant_a.client.delete(f"/v1/files/{file_id}").json()["deleted"] is True
    assert File.objects.get(public_id=file_id).deleted_at is not None
    assert_usage(tenant_a.org, 0)
    assert_balanced(tenant_a, upstream)


def test_a_file_already_gone_upstream_is_deleted_and_released(tenant_a, upstream):
    file_id, _ = uploaded(tenant_a, upstream, 5)
    upstream.files.pop(file_id).path.unlink()
    response = tenant_a.client.delete(f"/v1/files/{file_id}")
    assert response.json() == {"id": file_id, "object": "file", "deleted": True}
    assert File.objects.get(public_id=file_id).deleted_at is not None
    assert_usage(tenant_a.org, 0)


# Refusals of the provider's own limits.


def test_an_upload_over_the_providers_size_limit_is_a_413_with_nothing_left(tenant_a, upstream):
    upstream.max_upload_bytes = 256 * 1024
    response = send(tenant_a, upstream, payload(upstream, MiB))
    code = {"anthropic": "file_too_large", "groq": "request_too_large"}.get(upstream.kind, "upstream_error")
    assert_error(response, 413, "invalid_request_error", code)
    assert_nothing_recorded(tenant_a, upstream)


def test_anthropics_storage_limit_is_a_403_of_its_own_with_nothing_left(tenant_a, fake_anthropic):
    add_upstream_account(tenant_a, fake_anthropic, name="up")
    fake_anthropic.storage_limit = 1000
    response = send(tenant_a, fake_anthropic, os.urandom(2000))
    assert_error(response, 403, "insufficient_quota", "provider_storage_quota_exceeded")
    assert "Anthropic account's file storage is full" in response.json()["error"]["message"]
    assert_nothing_recorded(tenant_a, fake_anthropic)
    assert list(fake_anthropic.root.iterdir()) == []


def test_an_overloaded_anthropic_is_a_503_that_reads_retry_away(tenant_a, fake_anthropic, settings):
    settings.UPSTREAM_RECHECK_SECONDS = 0
    add_upstream_account(tenant_a, fake_anthropic, name="up")
    fake_anthropic.fail("upload", status=529, retry_after="20")
    response = send(tenant_a, fake_anthropic, b"%PDF hello")
    assert_error(response, 503, "server_error", "upstream_unavailable")
    assert response["Retry-After"] == "20"
    assert_nothing_recorded(tenant_a, fake_anthropic)
    file_id, _ = uploaded(tenant_a, fake_anthropic, 10)
    fake_anthropic.fail("retrieve", status=529)
    assert tenant_a.client.get(f"/v1/files/{file_id}").status_code == 200
    assert len(fake_anthropic.calls("GET", f"/{file_id}")) == 2
