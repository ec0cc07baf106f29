"""``OpenAIProvider`` at the HTTP boundary, against the fake OpenAI server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import socket
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured

from config.errors import (
    FileNotFound,
    InvalidRequest,
    PayloadTooLarge,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from files_api.models import File
from files_api.upload import FileStream
from providers import registry
from providers.base import CHUNK_SIZE, UploadOptions
from providers.batch import BatchLineValidator
from providers.openai import OpenAIProvider
from tests.conftest import batch_line
from tests.upstreams import OPENAI_KEY, OPENAI_ORG, OPENAI_PROJECT, FakeFilesServer, add_upstream_account, openai_config

MiB = 1024 * 1024


def file_stream(*chunks: bytes, max_bytes: int = 10 * MiB, validator: Any = None) -> FileStream:
    """The gateway's real upload stream over a generator: not seekable, read once."""
    return FileStream(
        (chunk for chunk in chunks), max_bytes=max_bytes, too_large_message="too large", validator=validator
    )


def options(**overrides: Any) -> UploadOptions:
    values: dict[str, Any] = {"filename": "notes.txt", "purpose": "assistants", "namespace": "org-a", **overrides}
    return UploadOptions(**values)


def sha256(*chunks: bytes) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def first_page(provider: OpenAIProvider, *, limit: int = 1, order: str = "desc", purpose: str | None = None) -> list:
    return next(provider.iter_pages(purpose=purpose, order=order, after=None, page_size=limit))


@pytest.fixture
def provider(fake_openai: FakeFilesServer) -> OpenAIProvider:
    return OpenAIProvider(**openai_config(fake_openai))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Upload.


def test_it_streams_a_non_seekable_upload_as_chunked_multipart(provider, fake_openai):
    # Bytes that look like multipart framing must survive both parsers untouched.
    chunks = [os.urandom(300_000) + b"\r\n--filegate-\r\n\r\n" for _ in range(4)]
    remote = provider.upload(
        file_stream(*chunks),
        options(filename='report "final".txt', content_type="text/plain", expires_after_seconds=3600),
    )
    received = fake_openai.uploads[-1]
    assert received.is_complete
    assert (received.size, received.sha256) == (sum(map(len, chunks)), sha256(*chunks))
    assert received.fields == {
        "purpose": "assistants",
        "expires_after[anchor]": "created_at",
        "expires_after[seconds]": "3600",
    }
    assert (received.filename, received.content_type) == ('report "final".txt', "text/plain")
    assert received.headers["transfer-encoding"] == "chunked" and "content-length" not in received.headers
    assert remote.id in fake_openai.files
    assert (remote.bytes, remote.purpose, remote.status) == (received.size, "assistants", "processed")
    assert remote.expires_at is not None and remote.expires_at >= remote.created_at + 3600


def test_it_sends_the_account_key_organization_and_project(provider, fake_openai):
    provider.upload(file_stream(b"hi"), options())
    headers = fake_openai.calls("POST")[-1].headers
    assert headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert (headers["openai-organization"], headers["openai-project"]) == (OPENAI_ORG, OPENAI_PROJECT)


def test_it_sends_no_organization_or_project_headers_unless_configured(fake_openai):
    provider = OpenAIProvider(api_key=OPENAI_KEY, base_url=fake_openai.url)
    first_page(provider)
    headers = fake_openai.calls("GET")[-1].headers
    assert "openai-organization" not in headers and "openai-project" not in headers


@pytest.mark.parametrize(
    ("chunks", "validator", "error"),
    [
        ([b"x" * 500_000] * 4, None, PayloadTooLarge),
        (
            [batch_line("a") * 1, batch_line("b"), b"{not json}\n", batch_line("c")],
            BatchLineValidator(max_line_bytes=CHUNK_SIZE),
            InvalidRequest,
        ),
        # The last line has no newline: only the validator's finish() sees it, after the last chunk.
        (
            [batch_line("a"), batch_line("b"), b'{"custom_id": "c"}'],
            BatchLineValidator(max_line_bytes=CHUNK_SIZE),
            InvalidRequest,
        ),
    ],
    ids=["too-large", "bad-batch-line", "bad-last-line"],
)
def test_a_stream_error_midway_aborts_the_upload_and_leaves_nothing_upstream(
    provider, fake_openai, chunks, validator, error
):
    stream = file_stream(*chunks, max_bytes=1_500_000, validator=validator)
    with pytest.raises(error) as raised:
        provider.upload(stream, options(filename="batch.jsonl", purpose="batch"))
    assert raised.type is error  # propagated unchanged, not wrapped as an upstream failure
    fake_openai.wait_for(lambda: len(fake_openai.uploads) == 1)
    assert not fake_openai.uploads[0].is_complete
    assert fake_openai.files == {}
    assert list(fake_openai.root.iterdir()) == []


def test_a_valid_batch_file_goes_through_whole(provider, fake_openai):
    lines = [batch_line(f"req-{n}") for n in range(50)]
    remote = provider.upload(
        file_stream(*lines, validator=BatchLineValidator(max_line_bytes=CHUNK_SIZE)), options(purpose="batch")
    )
    assert fake_openai.content_of(remote.id) == b"".join(lines)


def test_an_upload_is_never_retried(provider, fake_openai):
    fake_openai.fail("upload", status=500)
    with pytest.raises(UpstreamError):
        provider.upload(file_stream(b"data"), options())
    assert len(fake_openai.calls("POST")) == 1
    assert fake_openai.files == {}


# List, retrieve, content, delete.


def test_it_passes_list_parameters_through_and_pages(provider, fake_openai):
    ids = [fake_openai.add_file(b"x", purpose="assistants") for _ in range(3)]
    fake_openai.add_file(b"y", purpose="batch", filename="b.jsonl")
    pages = provider.iter_pages(purpose="assistants", order="asc", after=None, page_size=2)
    assert [f.id for f in next(pages)] == ids[:2]
    assert fake_openai.calls("GET")[-1].query == {"limit": ["2"], "order": ["asc"], "purpose": ["assistants"]}
    assert [f.id for f in next(pages)] == ids[2:]  # the upstream said has_more: the next page follows
    assert fake_openai.calls("GET")[-1].query["after"] == [ids[1]]
    assert next(pages, None) is None  # ...and it said no more: no third call
    assert len(fake_openai.calls("GET")) == 2


def test_it_retrieves_a_file_object(provider, fake_openai):
    file_id = fake_openai.add_file(b"12345", filename="five.txt", purpose="user_data")
    remote = provider.retrieve(file_id)
    assert (remote.id, remote.bytes, remote.filename, remote.purpose) == (file_id, 5, "five.txt", "user_data")
    assert fake_openai.calls("GET", f"/{file_id}")


def test_a_missing_file_is_file_not_found(provider):
    with pytest.raises(FileNotFound):
        provider.retrieve("file-missing")


def test_ids_that_cannot_be_upstream_ids_never_reach_the_upstream(provider, fake_openai):
    for bad in ("..", "../files", "file-a/content", "%2e%2e", ""):
        with pytest.raises(FileNotFound):
            provider.retrieve(bad)
        assert provider.delete(bad) is False
    assert fake_openai.requests == []


def test_it_streams_content_in_bounded_chunks_with_the_upstream_length(provider, fake_openai):
    content = os.urandom(3 * MiB + 17)
    file_id = fake_openai.add_file(content)
    download = provider.open_content(file_id)
    assert download.size == len(content)
    chunks = list(download.chunks)
    assert b"".join(chunks) == content and max(map(len, chunks)) <= CHUNK_SIZE
    assert fake_openai.calls("GET", f"/{file_id}/content")[-1].headers["accept-encoding"] == "identity"


def test_open_content_raises_file_not_found_before_the_first_chunk(provider):
    with pytest.raises(FileNotFound):
        provider.open_content("file-missing")


def test_closing_an_unread_download_releases_the_upstream_connection(provider, fake_openai):
    file_id = fake_openai.add_file(os.urandom(4 * MiB))
    provider.open_content(file_id).chunks.close()  # type: ignore[attr-defined]
    fake_openai.wait_for(lambda: not fake_openai.open_connections())


def test_a_download_cut_off_midway_raises_upstream_error(provider, fake_openai):
    file_id = fake_openai.add_file(os.urandom(2 * MiB))
    fake_openai.fail("content", "reset", after_bytes=MiB // 2)
    download = provider.open_content(file_id)
    with pytest.raises(UpstreamError):
        for _ in download.chunks:
            pass


def test_delete_is_idempotent(provider, fake_openai):
    file_id = fake_openai.add_file(b"x")
    assert provider.delete(file_id) is True
    assert fake_openai.files == {}
    assert provider.delete(file_id) is False


def test_one_pooled_connection_serves_many_calls(provider, fake_openai):
    file_id = fake_openai.add_file(b"x")
    for _ in range(5):
        provider.retrieve(file_id)
        first_page(provider, limit=10)
    assert fake_openai.connections == 1


def test_gateway_requests_share_the_accounts_pooled_connection(tenant_a, fake_openai):
    add_upstream_account(tenant_a, fake_openai)
    for _ in range(3):
        response = tenant_a.client.get("/v1/files", HTTP_X_PROVIDER_ACCOUNT="openai")
        assert response.status_code == 200, response.json()
    assert (len(fake_openai.requests), fake_openai.connections) == (3, 1)


def test_the_registry_reuses_one_provider_and_client_per_account_config(fake_openai):
    config = openai_config(fake_openai)
    first = registry.get_provider("openai", config, cache_key="1")
    assert registry.get_provider("openai", dict(config), cache_key="1") is first
    assert registry.get_provider("openai", {**config, "timeout": "5"}, cache_key="1") is not first


# Error mapping.


@pytest.mark.parametrize(
    ("status", "error", "client_status"),
    [
        (400, UpstreamRejected, 400),
        (404, UpstreamRejected, 404),  # on a list: the endpoint, not a file, is missing
        (409, UpstreamRejected, 409),
        (413, UpstreamRejected, 413),
        (429, UpstreamRateLimited, 429),
        (500, UpstreamError, 502),
        (503, UpstreamError, 502),
    ],
)
def test_upstream_statuses_map_to_gateway_errors(provider, fake_openai, status, error, client_status):
    fake_openai.fail("list", status=status, times=10, message="Something about purpose.")
    with pytest.raises(error) as raised:
        first_page(provider)
    assert raised.type is error and raised.value.status_code == client_status
    if status < 500:
        assert raised.value.message == "Something about purpose."


def test_upstream_messages_lose_credentials_account_ids_and_address(provider, fake_openai):
    leaky = f"Key {OPENAI_KEY} (sk-abc***wxyz) of {OPENAI_ORG} / {OPENAI_PROJECT} at 127.0.0.1 cannot do that."
    fake_openai.fail("list", status=400, message=leaky)
    with pytest.raises(UpstreamRejected) as raised:
        first_page(provider)
    message = raised.value.message
    for secret in (OPENAI_KEY, "sk-abc", OPENAI_ORG, OPENAI_PROJECT, "UpstreamOrg123", "127.0.0.1"):
        assert secret not in message
    assert message.endswith("cannot do that.")


def test_upstream_param_and_code_are_kept_when_they_are_plain_tokens(provider, fake_openai):
    fake_openai.fail("upload", status=400, param="purpose", code="invalid_purpose")
    with pytest.raises(UpstreamRejected) as raised:
        provider.upload(file_stream(b"x"), options())
    assert (raised.value.param, raised.value.code) == ("purpose", "invalid_purpose")
    fake_openai.fail("upload", status=400, param="a param with spaces", code="<script>")
    with pytest.raises(UpstreamRejected) as raised:
        provider.upload(file_stream(b"x"), options())
    assert (raised.value.param, raised.value.code) == (None, "upstream_error")


def test_refused_credentials_are_the_accounts_problem_not_the_clients(fake_openai):
    provider = OpenAIProvider(**openai_config(fake_openai, api_key="sk-wrong-key-0000000000"))
    with pytest.raises(UpstreamRejected) as raised:
        first_page(provider)
    error = raised.value
    assert (error.status_code, error.code) == (403, "upstream_authentication_failed")
    assert "provider account" in error.message
    assert "sk-wrong" not in error.message and "0000" not in error.message


def test_rate_limiting_keeps_retry_after(provider, fake_openai):
    fake_openai.fail("retrieve", status=429, retry_after="12")
    with pytest.raises(UpstreamRateLimited) as raised:
        provider.retrieve("file-abc")
    assert raised.value.headers == {"Retry-After": "12"}
    assert len(fake_openai.calls("GET", "/file-abc")) == 1  # 429 is the client's to retry, not ours


def test_gets_are_retried_on_5xx(provider, fake_openai):
    file_id = fake_openai.add_file(b"x")
    fake_openai.fail("retrieve", status=502, times=2)
    assert provider.retrieve(file_id).id == file_id
    assert len(fake_openai.calls("GET", f"/{file_id}")) == 3


def test_retries_stop_after_upstream_retries(provider, fake_openai, settings):
    settings.UPSTREAM_RETRIES = 1
    fake_openai.fail("retrieve", status=500, times=5)
    with pytest.raises(UpstreamError):
        provider.retrieve("file-abc")
    assert len(fake_openai.calls("GET", "/file-abc")) == 2


def test_deletes_are_retried_after_a_connection_reset(provider, fake_openai):
    file_id = fake_openai.add_file(b"x")
    fake_openai.fail("delete", "reset")
    assert provider.delete(file_id) is True
    assert len(fake_openai.calls("DELETE", f"/{file_id}")) == 2 and fake_openai.files == {}


def test_a_refused_connection_is_unavailable(fast_retries):
    provider = OpenAIProvider(api_key="sk-x", base_url=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(UpstreamUnavailable) as raised:
        provider.retrieve("file-abc")
    assert raised.value.status_code == 503


def test_a_slow_upstream_times_out_after_the_accounts_timeout(fake_openai):
    provider = OpenAIProvider(**openai_config(fake_openai, timeout="0.3"))
    fake_openai.fail("list", "hang")
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as raised:
        first_page(provider)
    assert time.monotonic() - started < 2  # a read timeout is not retried
    assert raised.value.status_code == 504 and "0.3 seconds" in raised.value.message


def test_answers_that_are_not_file_objects_are_upstream_errors(provider):
    class Body(httpx.SyncByteStream):  # streamed, as a real transport's answers are
        def __init__(self, data: bytes) -> None:
            self.data = data

        def __iter__(self):
            yield self.data

    answers = iter(
        [httpx.Response(200, stream=Body(b"<html>")), httpx.Response(200, stream=Body(b'{"object": "file"}'))]
    )
    provider.client = httpx.Client(
        base_url=provider.client.base_url, transport=httpx.MockTransport(lambda r: next(answers))
    )
    for _ in range(2):
        with pytest.raises(UpstreamError):
            provider.retrieve("file-abc")


# check() and configuration.


def test_check_makes_one_cheap_authenticated_call(provider, fake_openai):
    provider.check()
    [call] = fake_openai.requests
    assert (call.method, call.query["limit"], call.headers["authorization"]) == ("GET", ["1"], f"Bearer {OPENAI_KEY}")
    assert call.headers["user-agent"] == "filegate"


def test_json_answers_may_come_compressed(provider, fake_openai):
    file_ids = [fake_openai.add_file(b"x" * 10, filename=f"f{n}.txt") for n in range(50)]
    page = first_page(provider, limit=100, order="asc")
    assert [remote.id for remote in page] == file_ids
    assert fake_openai.compressed_answers == 1


def test_check_raises_the_mapped_error(fake_openai):
    with pytest.raises(UpstreamRejected) as raised:
        OpenAIProvider(**openai_config(fake_openai, api_key="sk-bad-key-123456")).check()
    assert raised.value.code == "upstream_authentication_failed"


def test_the_default_base_url_is_openai():
    assert str(OpenAIProvider(api_key="sk-x").client.base_url) == "https://api.openai.com/v1/"


@pytest.mark.parametrize(
    "config",
    [
        {"api_key": "sk-x", "region": "eu"},
        {"base_url": "https://api.openai.com/v1"},
        {"api_key": "sk-x", "timeout": "soon"},
        {"api_key": "sk-x", "timeout": "0"},
        {"api_key": "sk-x", "base_url": "ftp://files.example"},
    ],
    ids=["unknown-key", "no-api-key", "bad-timeout", "zero-timeout", "bad-base-url"],
)
def test_bad_configuration_is_improperly_configured(config):
    with pytest.raises(ImproperlyConfigured):
        OpenAIProvider(**config)


def test_the_cli_keys_split_into_settings_and_secrets():
    config = {"api_key": "sk-x", "base_url": "https://e.test/v1", "organization": "o", "project": "p", "timeout": "9"}
    settings_part, secrets_part = registry.split_config("openai", config)
    assert secrets_part == {"api_key": "sk-x"}
    assert set(settings_part) == {"base_url", "organization", "project", "timeout"}


# Memory: a big upload through the gateway stays bounded by a chunk.


def write_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    block = os.urandom(MiB)
    with open(path, "wb") as out:
        for n in range(size // MiB):
            chunk = n.to_bytes(8, "big") + block[8:]  # every MiB differs, cheaply
            out.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


def test_a_256_mib_upload_keeps_peak_memory_under_32_mib(live_server, tenant_a, fake_openai, tmp_path):
    size = 256 * MiB
    path = tmp_path / "big.bin"
    expected_sha256 = write_file(path, size)
    add_upstream_account(tenant_a, fake_openai)
    headers = {"Authorization": f"Bearer {tenant_a.key}", "X-Provider-Account": "openai"}
    with httpx.Client(base_url=live_server.url, headers=headers, timeout=120) as client, open(path, "rb") as handle:
        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            response = client.post("/v1/files", data={"purpose": "assistants"}, files={"file": ("big.bin", handle)})
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert response.status_code == 200, response.text
    assert peak - baseline < 32 * MiB, f"peak grew by {(peak - baseline) / MiB:.1f} MiB"
    [received] = fake_openai.uploads
    assert (received.size, received.sha256, received.is_complete) == (size, expected_sha256, True)
    file = File.objects.get(public_id=response.json()["id"])
    assert (file.bytes, file.sha256) == (size, expected_sha256)
