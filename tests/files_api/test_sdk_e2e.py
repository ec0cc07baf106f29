"""The official ``openai`` SDK against a live gateway: the five operations, paging and error types."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from files_api.models import AuditEvent
from tenants.models import Organization
from tests.conftest import Tenant, batch_line

pytestmark = pytest.mark.django_db(transaction=True)


def gateway(live_server: Any, key: str, *, max_retries: int = 0, **options: Any) -> openai.OpenAI:
    # Use it in a `with`: an open keep-alive connection keeps a server thread and its database session alive.
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=key, max_retries=max_retries, timeout=30, **options)


@pytest.fixture
def sdk(live_server: Any, tenant_a: Tenant) -> Iterator[openai.OpenAI]:
    with gateway(live_server, tenant_a.key) as client:
        yield client


def test_it_uploads_a_file(sdk: openai.OpenAI) -> None:
    file = sdk.files.create(file=("notes.txt", b"hello from the sdk"), purpose="assistants")
    assert file.id.startswith("file-")
    assert (file.object, file.bytes, file.filename, file.purpose, file.status) == (
        "file",
        18,
        "notes.txt",
        "assistants",
        "processed",
    )


def test_it_uploads_a_batch_file_with_an_expiry(sdk: openai.OpenAI) -> None:
    file = sdk.files.create(
        file=("requests.jsonl", batch_line("a") + batch_line("b")),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert file.purpose == "batch"
    assert file.expires_at == file.created_at + 3600


def test_it_retrieves_a_file(sdk: openai.OpenAI) -> None:
    created = sdk.files.create(file=("a.txt", b"abc"), purpose="user_data")
    assert sdk.files.retrieve(created.id) == created


def test_it_downloads_the_content(sdk: openai.OpenAI) -> None:
    data = bytes(range(256)) * 1000
    created = sdk.files.create(file=("blob.bin", data), purpose="assistants")
    assert sdk.files.content(created.id).read() == data


def test_it_streams_the_content(sdk: openai.OpenAI) -> None:
    data = b"z" * (3 * 1024 * 1024)
    created = sdk.files.create(file=("z.bin", data), purpose="assistants")
    with sdk.with_streaming_response.files.content(created.id) as response:
        assert b"".join(response.iter_bytes()) == data


def test_it_deletes_a_file(sdk: openai.OpenAI) -> None:
    created = sdk.files.create(file=("a.txt", b"abc"), purpose="assistants")
    deleted = sdk.files.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "file", True)
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve(created.id)


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_it_auto_pages_through_every_file_once_in_order(sdk: openai.OpenAI, order: str) -> None:
    ids = [sdk.files.create(file=(f"{n}.txt", b"x"), purpose="assistants").id for n in range(5)]
    listed = [file.id for file in sdk.files.list(limit=2, order=order)]
    assert listed == (ids if order == "asc" else ids[::-1])


def test_it_reports_pages_as_the_sdk_expects(sdk: openai.OpenAI) -> None:
    ids = [sdk.files.create(file=(f"{n}.txt", b"x"), purpose="assistants").id for n in range(3)]
    page = sdk.files.list(limit=2)
    assert [file.id for file in page.data] == [ids[2], ids[1]]
    assert page.has_next_page()
    last = page.get_next_page()
    assert [file.id for file in last.data] == [ids[0]]
    assert not last.has_next_page()


def test_it_filters_the_list_by_purpose(sdk: openai.OpenAI) -> None:
    sdk.files.create(file=("a.txt", b"x"), purpose="assistants")
    batch = sdk.files.create(file=("b.jsonl", batch_line()), purpose="batch")
    assert [file.id for file in sdk.files.list(purpose="batch")] == [batch.id]


def test_it_uses_the_account_named_in_a_default_header(live_server: Any, tenant_a: Tenant) -> None:
    from tenants.services import provider_account_create

    provider_account_create(organization=tenant_a.org, name="archive", kind="local", config={})
    with gateway(live_server, tenant_a.key, default_headers={"X-Provider-Account": "archive"}) as archive:
        created = archive.files.create(file=("a.txt", b"x"), purpose="assistants")
        assert [file.id for file in archive.files.list()] == [created.id]
    with gateway(live_server, tenant_a.key) as default:
        assert list(default.files.list()) == []


@pytest.mark.parametrize("call", ["retrieve", "content", "delete"])
def test_an_unknown_id_raises_not_found(sdk: openai.OpenAI, call: str) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        getattr(sdk.files, call)("file-doesnotexist")
    assert raised.value.status_code == 404
    assert raised.value.type == "invalid_request_error"


def test_a_bad_key_raises_authentication_error(live_server: Any) -> None:
    with (
        gateway(live_server, "fg_not-a-real-key-at-all") as client,
        pytest.raises(openai.AuthenticationError) as raised,
    ):
        client.files.list()
    assert raised.value.code == "invalid_api_key"


def test_a_bad_purpose_raises_bad_request(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.files.create(file=("a.txt", b"x"), purpose="training")  # type: ignore[arg-type]
    assert raised.value.param == "purpose"
    assert "Invalid value for 'purpose'" in raised.value.message


def test_a_bad_cursor_raises_bad_request(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.files.list(after="file-doesnotexist")
    assert raised.value.param == "after"


def test_an_exceeded_quota_raises_permission_denied_and_is_not_retried(live_server: Any, tenant_a: Tenant) -> None:
    Organization.objects.filter(pk=tenant_a.org.pk).update(storage_quota_bytes=10)
    with (
        gateway(live_server, tenant_a.key, max_retries=2) as retrying,
        pytest.raises(openai.PermissionDeniedError) as raised,
    ):
        retrying.files.create(file=("a.txt", b"x" * 100), purpose="assistants")
    assert (raised.value.type, raised.value.code) == ("insufficient_quota", "storage_quota_exceeded")
    assert AuditEvent.objects.filter(action=AuditEvent.Action.CREATE).count() == 1


def test_a_too_large_file_raises_a_413_status_error(sdk: openai.OpenAI, tenant_a: Tenant) -> None:
    Organization.objects.filter(pk=tenant_a.org.pk).update(max_file_size_bytes=100)
    with pytest.raises(openai.APIStatusError) as raised:
        sdk.files.create(file=("a.txt", b"x" * 1000), purpose="assistants")
    assert (raised.value.status_code, raised.value.code) == (413, "file_too_large")
