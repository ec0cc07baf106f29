"""The fake Anthropic Files API is faithful: the official ``anthropic`` SDK drives it, not the gateway.

What a provider test relies on is proven here: the SDK's own calls and types work against it, both
response shapes (GA, and beta with ``anthropic-beta: files-api-2025-04-14``) page through every file
exactly once, requests missing what the API requires are refused in Anthropic's envelope, and the
faults (statuses, hangs, resets, 413, storage quota) behave as a client sees them.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import anthropic
import httpx
import httpx2
import pytest
from anthropic.pagination import SyncPage
from anthropic.types import FileExpiredError, FileNotDownloadableError, StorageQuotaExceededError
from anthropic.types.beta import BetaFileMetadata
from anthropic.types.shared import ErrorResponse

from tenants.services import provider_for
from tests.conftest import MULTIPART, Tenant, multipart_body
from tests.upstream_anthropic import FILES_BETA, FakeAnthropic
from tests.upstreams import add_upstream_account

BETA = {"anthropic-beta": FILES_BETA}
MiB = 1024 * 1024


@pytest.fixture
def sdk(fake_anthropic: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    # max_retries=0: every test sees the fake's first answer.
    client = anthropic.Anthropic(base_url=fake_anthropic.url, api_key=fake_anthropic.api_key, max_retries=0)
    yield client
    client.close()


def raw(fake: FakeAnthropic, method: str, path: str = "", **headers: str) -> httpx.Response:
    """A request with exactly the headers given (the SDK would add its own)."""
    return httpx.request(method, f"{fake.url}/v1/files{path}", headers=headers, timeout=5)


def auth(fake: FakeAnthropic, **extra: str) -> dict[str, str]:
    return {"x-api-key": fake.api_key, "anthropic-version": "2023-06-01", **extra}


def beta_pages(sdk: anthropic.Anthropic, **params: Any) -> SyncPage[BetaFileMetadata]:
    """The beta list through the SDK's own ID-cursor paginator (what it uses for before_id/after_id lists)."""
    return sdk.get_api_list(
        "/v1/files",
        model=BetaFileMetadata,
        page=SyncPage[BetaFileMetadata],
        options={"params": params, "headers": BETA},
    )


def assert_error(response: httpx.Response, status: int, error_type: str, message: str = "") -> None:
    assert response.status_code == status
    envelope = ErrorResponse.model_validate(response.json())
    assert envelope.error.type == error_type and message in envelope.error.message
    assert envelope.request_id == response.headers["request-id"] and envelope.request_id.startswith("req_011C")


# Upload.


def test_it_answers_an_upload_with_the_sdks_file_metadata(sdk, fake_anthropic):
    content = os.urandom(300 * 1024)
    before = datetime.now(UTC)
    response = sdk.beta.files.with_raw_response.upload(file=("notes.txt", content, "text/plain"))
    made = response.parse()

    assert made.id.startswith("file_011C") and len(made.id) == len("file_011CNha8iCJcU1wXNR6q4V8w")
    assert (made.type, made.filename, made.mime_type, made.size_bytes) == (
        "file",
        "notes.txt",
        "text/plain",
        len(content),
    )
    assert made.downloadable is False and before <= made.created_at <= datetime.now(UTC)
    assert response.json()["expires_at"] is None  # GA objects always carry it
    assert response.headers["request-id"].startswith("req_011C")
    assert fake_anthropic.files[made.id].sha256 == hashlib.sha256(content).hexdigest()


def test_it_takes_the_key_as_x_api_key_or_as_a_bearer_token(sdk, fake_anthropic):
    sdk.beta.files.list()  # the SDK 2.10.0 sends "Authorization: Bearer <key>"
    assert raw(fake_anthropic, "GET", **auth(fake_anthropic)).status_code == 200
    assert "x-api-key" not in fake_anthropic.requests[0].headers
    assert fake_anthropic.requests[1].headers["x-api-key"] == fake_anthropic.api_key


def test_it_refuses_any_upload_field_but_the_file(sdk, fake_anthropic):
    with pytest.raises(anthropic.BadRequestError) as raised:
        sdk.beta.files.upload(file=("a.jsonl", b"{}\n"), extra_body={"purpose": "batch"})

    assert raised.value.body["error"]["message"] == "purpose: Extra inputs are not permitted"
    assert fake_anthropic.files == {} and fake_anthropic.uploads[0].is_complete
    assert list(fake_anthropic.root.iterdir()) == []


def test_it_refuses_an_upload_without_a_file_part(fake_anthropic):
    body = multipart_body(("expires_in_seconds", "3600", None))
    response = httpx.post(
        f"{fake_anthropic.url}/v1/files", content=body, headers={**auth(fake_anthropic), "content-type": MULTIPART}
    )

    assert_error(response, 400, "invalid_request_error", "file: Field required")


def test_it_keeps_the_expiry_asked_for(sdk, fake_anthropic):
    made = sdk.beta.files.upload(file=("a.txt", b"a"), expires_in_seconds=3600)

    assert made.expires_at is not None
    assert abs((made.expires_at - made.created_at).total_seconds() - 3600) < 0.001
    with pytest.raises(anthropic.BadRequestError):
        sdk.beta.files.upload(file=("a.txt", b"a"), expires_in_seconds=60)


def test_it_keeps_the_last_path_component_and_refuses_forbidden_characters(sdk, fake_anthropic):
    assert sdk.beta.files.upload(file=("reports/q1.txt", b"a")).filename == "q1.txt"
    with pytest.raises(anthropic.BadRequestError, match="Invalid filename"):
        sdk.beta.files.upload(file=("q1: draft?.txt", b"a"))
    assert len(fake_anthropic.files) == 1


# Lists.


def test_the_sdk_pages_through_every_file_exactly_once(sdk, fake_anthropic):
    made = fake_anthropic.seed(25)

    seen = [file.id for file in sdk.beta.files.list(limit=10)]

    assert seen == made[::-1]  # newest first
    pages = fake_anthropic.calls("GET")
    assert len(pages) == 3 and "page" not in pages[0].query
    assert all(call.query["page"][0].startswith("page_") for call in pages[1:])


def test_the_beta_pages_go_both_ways_by_before_id_and_after_id(sdk, fake_anthropic):
    newest_first = fake_anthropic.seed(10)[::-1]

    after = [[file.id for file in page.data] for page in beta_pages(sdk, limit=4).iter_pages()]
    before = [
        [file.id for file in page.data] for page in beta_pages(sdk, limit=4, before_id=newest_first[-1]).iter_pages()
    ]

    assert after == [newest_first[0:4], newest_first[4:8], newest_first[8:10]]
    assert before == [newest_first[5:9], newest_first[1:5], newest_first[0:1]]
    assert fake_anthropic.calls("GET")[1].query["after_id"] == [newest_first[3]]


def test_the_beta_header_chooses_the_beta_shapes(fake_anthropic):
    fake_anthropic.seed(3)

    beta = raw(fake_anthropic, "GET", "?limit=2", **auth(fake_anthropic, **BETA)).json()
    ga = raw(fake_anthropic, "GET", "?limit=2", **auth(fake_anthropic)).json()

    assert set(beta) == {"data", "has_more", "first_id", "last_id"} and beta["has_more"] is True
    assert "expires_at" not in beta["data"][0]
    assert set(ga) == {"data", "next_page"} and ga["next_page"].startswith("page_")
    assert ga["data"][0]["expires_at"] is None


def test_id_cursors_need_the_beta_header(fake_anthropic):
    [file_id] = fake_anthropic.seed(1)

    response = raw(fake_anthropic, "GET", f"?after_id={file_id}", **auth(fake_anthropic))

    assert_error(response, 400, "invalid_request_error", FILES_BETA)


def test_a_list_by_ids_names_files_and_takes_no_limit(sdk, fake_anthropic):
    made = fake_anthropic.seed(5)

    page = sdk.beta.files.list(ids=[made[1], made[3], "file_011Cgone"])

    assert [file.id for file in page.data] == [made[3], made[1]] and page.next_page is None
    with pytest.raises(anthropic.BadRequestError):
        sdk.beta.files.list(ids=[made[1]], limit=2)


@pytest.mark.parametrize(("limit", "status"), [(0, 400), (1000, 200), (1001, 400)])
def test_a_page_holds_1_to_1000_files(fake_anthropic, limit, status):
    assert raw(fake_anthropic, "GET", f"?limit={limit}", **auth(fake_anthropic)).status_code == status


def test_it_seeds_thousands_of_files_quickly(sdk, fake_anthropic):
    started = time.monotonic()
    fake_anthropic.seed(3000)
    seeded = time.monotonic() - started

    assert seeded < 2, f"seeding 3,000 files took {seeded:.2f} s"
    assert len(list(sdk.beta.files.list(limit=1000))) == 3000 and len(fake_anthropic.calls("GET")) == 3


# Retrieve, download, delete.


def test_it_retrieves_downloads_and_deletes_a_tool_made_file(sdk, fake_anthropic):
    content = os.urandom(MiB + 7)
    file_id = fake_anthropic.add_file(content, filename="chart.png")

    assert sdk.beta.files.retrieve_metadata(file_id).mime_type == "image/png"
    download = sdk.beta.files.download(file_id)
    assert download.headers["content-type"] == "image/png" and download.read() == content
    deleted = sdk.beta.files.delete(file_id)
    assert (deleted.id, deleted.type) == (file_id, "file_deleted")
    with pytest.raises(anthropic.NotFoundError):
        sdk.beta.files.retrieve_metadata(file_id)
    assert list(fake_anthropic.root.iterdir()) == []


def test_an_uploaded_file_cannot_be_downloaded(sdk, fake_anthropic):
    made = sdk.beta.files.upload(file=("a.txt", b"secret"))

    with pytest.raises(FileNotDownloadableError) as raised:
        sdk.beta.files.download(made.id)

    assert (raised.value.status_code, raised.value.error_code) == (400, "file_not_downloadable")


def test_an_expired_file_cannot_be_downloaded(sdk, fake_anthropic):
    file_id = fake_anthropic.add_file(b"old", expires_at=time.time() - 1)

    with pytest.raises(FileExpiredError):
        sdk.beta.files.download(file_id)
    assert sdk.beta.files.retrieve_metadata(file_id).expires_at is not None


def test_a_missing_file_is_a_404_in_the_envelope(fake_anthropic):
    response = raw(fake_anthropic, "DELETE", "/file_011Cmissing", **auth(fake_anthropic))

    assert_error(response, 404, "not_found_error", "file_011Cmissing")


# What every request needs.


@pytest.mark.parametrize(
    ("drop", "extra", "status", "error_type", "message"),
    [
        ("x-api-key", {}, 401, "authentication_error", "x-api-key header is required"),
        ("", {"x-api-key": "sk-ant-wrong"}, 401, "authentication_error", "invalid x-api-key"),
        ("anthropic-version", {}, 400, "invalid_request_error", "anthropic-version: header is required"),
        ("", {"anthropic-beta": "files-api-2099-01-01"}, 400, "invalid_request_error", "files-api-2099-01-01"),
    ],
)
def test_it_refuses_a_request_missing_what_the_api_requires(fake_anthropic, drop, extra, status, error_type, message):
    headers = {name: value for name, value in auth(fake_anthropic, **extra).items() if name != drop}

    for method, path in [
        ("GET", ""),
        ("GET", "/file_011Cx"),
        ("GET", "/file_011Cx/content"),
        ("DELETE", "/file_011Cx"),
    ]:
        assert_error(raw(fake_anthropic, method, path, **headers), status, error_type, message)


# Faults.


@pytest.mark.parametrize(
    ("status", "error", "error_type"),
    [
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
    ],
)
def test_a_status_fault_is_answered_in_the_envelope(sdk, fake_anthropic, status, error, error_type):
    fake_anthropic.fail("list", status=status)

    with pytest.raises(error) as raised:
        sdk.beta.files.list()

    assert (raised.value.status_code, raised.value.type) == (status, error_type)
    assert raised.value.response.headers.get("retry-after") == ("7" if status != 500 else None)
    assert sdk.beta.files.list().data == []  # one fault, then the API is back


def test_a_rate_limit_can_come_without_retry_after(sdk, fake_anthropic):
    fake_anthropic.fail("retrieve", status=429, retry_after=None)

    with pytest.raises(anthropic.RateLimitError) as raised:
        sdk.beta.files.retrieve_metadata("file_011Cx")

    assert "retry-after" not in raised.value.response.headers


def test_a_hang_runs_into_the_clients_timeout(sdk, fake_anthropic):
    fake_anthropic.fail("retrieve", "hang")
    started = time.monotonic()

    with pytest.raises(anthropic.APITimeoutError):
        sdk.beta.files.retrieve_metadata("file_011Cx", timeout=0.5)

    assert time.monotonic() - started < 3


def test_a_reset_cuts_a_download_midway(sdk, fake_anthropic):
    file_id = fake_anthropic.add_file(os.urandom(2 * MiB))
    fake_anthropic.fail("content", "reset", after_bytes=MiB // 2)
    received = 0

    with pytest.raises(httpx2.TransportError), sdk.beta.files.with_streaming_response.download(file_id) as response:
        for chunk in response.iter_bytes():
            received += len(chunk)

    assert received <= MiB // 2
    assert sdk.beta.files.download(file_id).read() == fake_anthropic.content_of(file_id)


def test_a_reset_cuts_an_upload_midway_and_keeps_nothing(sdk, fake_anthropic):
    fake_anthropic.fail("upload", "reset", after_bytes=256 * 1024)

    with pytest.raises(anthropic.APIConnectionError):
        sdk.beta.files.upload(file=("big.bin", os.urandom(2 * MiB)))

    fake_anthropic.wait_for(lambda: len(fake_anthropic.uploads) == 1)
    assert not fake_anthropic.uploads[0].is_complete and fake_anthropic.uploads[0].size <= 256 * 1024
    assert fake_anthropic.files == {} and list(fake_anthropic.root.iterdir()) == []


def test_an_upload_over_the_size_limit_is_cloudflares_413(sdk, fake_anthropic):
    fake_anthropic.max_upload_bytes = 100 * 1024

    with pytest.raises(anthropic.ContentTooLargeError) as raised:
        sdk.beta.files.upload(file=("big.bin", os.urandom(MiB)))

    assert raised.value.body["error"]["type"] == "request_too_large"
    assert "request-id" not in raised.value.response.headers  # sent before the request reaches Anthropic
    assert fake_anthropic.uploads == [] and fake_anthropic.files == {}  # refused on its Content-Length


def test_a_chunked_upload_is_refused_as_it_crosses_the_size_limit(fake_anthropic):
    fake_anthropic.max_upload_bytes = 100 * 1024
    body = multipart_body(("file", os.urandom(MiB), "big.bin"))

    response = httpx.post(
        f"{fake_anthropic.url}/v1/files",
        content=(body[start : start + 64 * 1024] for start in range(0, len(body), 64 * 1024)),
        headers={**auth(fake_anthropic), "content-type": MULTIPART},
    )

    assert response.status_code == 413 and response.headers["connection"] == "close"
    assert [upload.is_complete for upload in fake_anthropic.uploads] == [False]
    assert fake_anthropic.uploads[0].size <= 100 * 1024 and list(fake_anthropic.root.iterdir()) == []


def test_an_upload_past_the_storage_quota_is_refused(sdk, fake_anthropic):
    fake_anthropic.storage_limit = 1000
    sdk.beta.files.upload(file=("a.txt", b"a" * 600))

    with pytest.raises(StorageQuotaExceededError) as raised:
        sdk.beta.files.upload(file=("b.txt", b"b" * 600))

    assert (raised.value.status_code, raised.value.error_code) == (400, "storage_quota_exceeded")
    assert len(fake_anthropic.files) == 1 and len(list(fake_anthropic.root.iterdir())) == 1


# Accounts on the fake.


def test_an_account_on_the_fake_is_of_the_anthropic_kind(tenant_a: Tenant, fake_anthropic):
    assert fake_anthropic.account_config() == {"api_key": fake_anthropic.api_key, "base_url": fake_anthropic.url}
    account = add_upstream_account(tenant_a, fake_anthropic, timeout=5)

    assert (account.name, account.kind, account.settings["base_url"]) == ("anthropic", "anthropic", fake_anthropic.url)
    assert account.get_secrets()["api_key"] == fake_anthropic.api_key
    provider_for(account).check()  # the fake takes the kind's requests, headers and all
    [listed] = fake_anthropic.calls("GET")
    assert listed.headers["anthropic-beta"] == FILES_BETA
