"""``AzureOpenAIProvider`` at the HTTP boundary, against the fake Azure OpenAI server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from config.errors import InvalidRequest, UpstreamRejected
from files_api.models import File
from files_api.upload import FileStream
from providers import registry
from providers.azure import AzureOpenAIProvider
from providers.base import UploadOptions
from tests.conftest import upload
from tests.upstreams import AZURE_KEY, FakeFilesServer, add_upstream_account, azure_config


def file_stream(data: bytes) -> FileStream:
    return FileStream(iter([data]), max_bytes=1024 * 1024, too_large_message="too large")


def options(**overrides: object) -> UploadOptions:
    return UploadOptions(filename="train.jsonl", purpose="fine-tune", namespace="org-a", **overrides)  # type: ignore[arg-type]


@pytest.fixture
def provider(fake_azure: FakeFilesServer) -> AzureOpenAIProvider:
    return AzureOpenAIProvider(**azure_config(fake_azure))


@pytest.fixture
def fake_azure_v1(tmp_path: Path, fast_retries: None) -> Iterator[FakeFilesServer]:
    server = FakeFilesServer(tmp_path / "fake-azure-v1", flavor="azure", api_key=AZURE_KEY, api_version="v1").start()
    yield server
    server.stop()


def test_it_calls_the_openai_path_with_api_key_and_api_version(provider, fake_azure):
    next(provider.iter_pages(purpose="batch", order="desc", after=None, page_size=5))
    [call] = fake_azure.requests
    assert call.path == "/openai/files"
    assert call.query == {"api-version": ["2024-10-21"], "limit": ["5"], "order": ["desc"], "purpose": ["batch"]}
    assert call.headers["api-key"] == AZURE_KEY and "authorization" not in call.headers


def test_an_upload_answered_201_pending_is_a_success(provider, fake_azure):
    remote = provider.upload(file_stream(b'{"prompt": "a"}\n'), options())
    assert remote.status == "pending" and remote.id in fake_azure.files
    assert fake_azure.content_of(remote.id) == b'{"prompt": "a"}\n'
    assert provider.retrieve(remote.id).status == "processed"


def test_the_2024_api_version_is_not_sent_expires_after(provider, fake_azure):
    provider.upload(file_stream(b"x"), options(expires_after_seconds=7200))
    assert fake_azure.uploads[-1].fields == {"purpose": "fine-tune"}


def test_newer_api_versions_are_sent_expires_after(tmp_path, fast_retries):
    server = FakeFilesServer(
        tmp_path / "azure-2025", flavor="azure", api_key=AZURE_KEY, api_version="2025-04-01-preview"
    )
    server.start()
    try:
        provider = AzureOpenAIProvider(**azure_config(server, api_version="2025-04-01-preview"))
        provider.upload(file_stream(b"x"), options(expires_after_seconds=7200))
        assert server.uploads[-1].fields["expires_after[seconds]"] == "7200"
    finally:
        server.stop()


def test_api_version_v1_uses_the_v1_surface_without_api_version(fake_azure_v1):
    provider = AzureOpenAIProvider(**azure_config(fake_azure_v1, api_version="v1"))
    remote = provider.upload(file_stream(b"x"), options())
    assert provider.retrieve(remote.id).id == remote.id
    assert {call.path for call in fake_azure_v1.requests} == {"/openai/v1/files", f"/openai/v1/files/{remote.id}"}
    assert all("api-version" not in call.query for call in fake_azure_v1.requests)


def test_an_endpoint_copied_with_its_openai_suffix_still_works(fake_azure):
    provider = AzureOpenAIProvider(**azure_config(fake_azure, base_url=fake_azure.url + "/openai/"))
    provider.check()
    assert fake_azure.requests[-1].path == "/openai/files"


def test_a_file_size_azure_does_not_know_yet_is_the_size_sent(provider):
    remote = provider.parse_file(
        {
            "id": "file-1",
            "object": "file",
            "bytes": None,
            "created_at": 1,
            "filename": "a",
            "purpose": "batch",
            "status": "pending",
        },
        default_bytes=42,
    )
    assert (remote.bytes, remote.status) == (42, "pending")


def test_refused_keys_do_not_leak_into_the_message(fake_azure):
    provider = AzureOpenAIProvider(**azure_config(fake_azure, api_key="ffffffffffffffffffffffffffffffff"))
    with pytest.raises(UpstreamRejected) as raised:
        provider.check()
    assert raised.value.code == "upstream_authentication_failed"
    assert "ffff" not in raised.value.message


def test_an_azure_account_needs_an_endpoint():
    with pytest.raises(InvalidRequest) as raised:
        registry.split_config("azure_openai", {"api_key": "k"})
    assert raised.value.param == "base_url"
    settings_part, secrets_part = registry.split_config(
        "azure_openai", {"api_key": "k", "base_url": "https://r.openai.azure.com", "api_version": "v1", "timeout": "5"}
    )
    assert secrets_part == {"api_key": "k"} and set(settings_part) == {"base_url", "api_version", "timeout"}


def test_the_gateway_records_pending_and_refreshes_it_on_retrieve(tenant_a, fake_azure):
    add_upstream_account(tenant_a, fake_azure)
    created = upload(
        tenant_a.client, b'{"prompt": "p"}\n', filename="train.jsonl", purpose="fine-tune", account="azure-openai"
    )
    assert created.status_code == 200, created.json()
    body = created.json()
    assert body["status"] == "pending"
    assert File.objects.get(public_id=body["id"]).status == "pending"
    retrieved = tenant_a.client.get(f"/v1/files/{body['id']}")
    assert retrieved.json()["status"] == "processed"
    assert File.objects.get(public_id=body["id"]).status == "processed"
