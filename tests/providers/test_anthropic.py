"""``AnthropicProvider``: its translation hooks as plain functions, its error shapes at the HTTP boundary
(an in-process transport), and its paging against the fake Anthropic server on 127.0.0.1."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import openai
import pytest
from anthropic.types.beta import BetaFileMetadata

from config.errors import (
    FileNotDownloadable,
    FileNotFound,
    PayloadTooLarge,
    ProviderStorageFull,
    UnsupportedOperation,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from files_api.models import AuditEvent, File
from providers.anthropic import AnthropicProvider
from providers.base import CONTENT, DELETE, RemoteFile, UploadOptions
from providers.http import rfc3339_seconds
from tests.conftest import Tenant, upload
from tests.providers.transport import always, answered_by
from tests.upstream_anthropic import ANTHROPIC_KEY, FILES_BETA, FakeAnthropic, rfc3339
from tests.upstreams import add_upstream_account

T0 = 1_750_000_000  # 2025-06-15T15:06:40Z


def provider(**config: Any) -> AnthropicProvider:
    return AnthropicProvider(**{"api_key": ANTHROPIC_KEY, "base_url": "https://api.anthropic.com", **config})


def metadata(n: int, **fields: Any) -> dict[str, Any]:
    """The n-th file's beta ``FileMetadata`` (created n seconds after T0), checked with the SDK's type."""
    body = {
        "id": f"file_011C{n:020d}",
        "type": "file",
        "filename": f"{n}.txt",
        "mime_type": "text/plain",
        "size_bytes": 100 + n,
        "created_at": rfc3339(T0 + n),
        "downloadable": False,
        **fields,
    }
    BetaFileMetadata.model_validate(body)
    return body


def beta_page(numbers: list[int], has_more: bool) -> dict[str, Any]:
    """A beta list answer holding files ``numbers``, in the order given (Anthropic's: newest first)."""
    data = [metadata(n) for n in numbers]
    return {"data": data, "has_more": has_more, "first_id": data[0]["id"], "last_id": data[-1]["id"]}


def ids(numbers: list[int]) -> list[str]:
    return [f"file_011C{n:020d}" for n in numbers]


def error_body(error_type: str, message: str, error_code: str | None = None) -> str:
    error: dict[str, Any] = {"type": error_type, "message": message}
    if error_code:
        error["details"] = {"error_code": error_code}
    return json.dumps({"type": "error", "error": error, "request_id": "req_011Cabc"})


# Settings and headers.


def test_every_call_carries_the_key_the_version_and_the_files_beta():
    anthropic = provider()
    seen = answered_by(anthropic, always(200, json.dumps(metadata(1))))
    anthropic.retrieve(ids([1])[0])
    [request] = seen
    assert str(request.url) == f"https://api.anthropic.com/v1/files/{ids([1])[0]}"
    assert request.headers["x-api-key"] == ANTHROPIC_KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["anthropic-beta"] == FILES_BETA
    assert "authorization" not in request.headers


@pytest.mark.parametrize("base_url", ["https://gw.example/anthropic", "https://gw.example/anthropic/v1/"])
def test_the_base_url_may_name_the_origin_or_its_v1_root(base_url):
    assert provider(base_url=base_url).api_root() == "https://gw.example/anthropic/v1"


def test_the_default_base_url_is_anthropics():
    assert AnthropicProvider(api_key="k").api_root() == "https://api.anthropic.com/v1"


# Timestamps.


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-06-15T15:06:40Z", T0),
        ("2025-06-15T15:06:40.100435Z", T0),  # the API's own form: microseconds
        ("2025-06-15T15:06:40.9Z", T0),  # fractions never round up into the next second
        ("2025-06-15T15:06:40.123456789Z", T0),  # nanoseconds
        ("2025-06-15T17:06:40+02:00", T0),
        ("2025-06-15T09:36:40.5-05:30", T0),
        ("2025-06-15t15:06:40z", T0),  # RFC 3339 allows lower case
        ("2025-06-15 15:06:40Z", T0),  # and a space for the T
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59.5Z", -1),  # whole seconds are the floor, before 1970 too
    ],
)
def test_rfc3339_times_become_unix_seconds(value, expected):
    assert rfc3339_seconds(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "2025-06-15T15:06:40",  # no offset: local time of nobody knows where
        "2025-06-15",
        "20250615T150640Z",  # ISO 8601 basic form, not RFC 3339
        "2025-13-15T15:06:40Z",
        "2025-06-15T15:06:40Zjunk",
        "٢٠٢٥-06-15T15:06:40Z",  # digits, but not ASCII ones
        "",
        1750000000,
        None,
    ],
)
def test_what_is_not_an_rfc3339_time_is_refused(value):
    assert rfc3339_seconds(value) is None


# File objects.


def test_a_file_object_becomes_openais():
    created = datetime.fromtimestamp(T0, UTC).isoformat().replace("+00:00", "Z")
    body = {**metadata(7), "created_at": created, "expires_at": "2025-06-15T16:06:40.5+00:00"}
    remote = provider().parse_file(body)
    assert remote == RemoteFile(
        id=ids([7])[0],
        bytes=107,
        created_at=T0,
        filename="7.txt",
        purpose="user_data",
        status="processed",
        expires_at=T0 + 3600,
        downloadable=False,
    )


@pytest.mark.parametrize(("value", "expected"), [(True, True), (False, False), (None, False), ("yes", False)])
def test_only_files_anthropic_marks_downloadable_are(value, expected):
    body = metadata(1)
    if value is None:
        del body["downloadable"]  # optional in the API: absent means not
    else:
        body["downloadable"] = value
    assert provider().parse_file(body).downloadable is expected


def test_a_missing_size_falls_back_to_what_was_sent():
    body = metadata(1)
    del body["size_bytes"]
    assert provider().parse_file(body, default_bytes=42).bytes == 42


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {**metadata(1), "id": None},
        {**metadata(1), "id": "../../v1/files"},
        {**metadata(1), "created_at": 1750000000},  # unix seconds are not what Anthropic sends
        {**metadata(1), "created_at": "yesterday"},
        {key: value for key, value in metadata(1).items() if key != "created_at"},
    ],
)
def test_a_malformed_file_object_is_an_upstream_error(body):
    with pytest.raises(UpstreamError):
        provider().parse_file(body)


def test_a_delete_answer_must_say_file_deleted():
    anthropic = provider()
    assert anthropic.parse_deleted({"id": "file_011Cx", "type": "file_deleted"}) is True
    for body in ({"id": "file_011Cx", "type": "file"}, {"deleted": True}, None, []):
        assert anthropic.parse_deleted(body) is False


def test_uploads_send_the_file_alone():
    options = UploadOptions(filename="a.pdf", purpose="assistants", namespace="org", expires_after_seconds=7200)
    assert provider().upload_fields(options) == []


# Lists.


def test_descending_pages_continue_after_the_last_file():
    anthropic = provider()
    assert anthropic.list_query(limit=5, order="desc", purpose="vision", after=None) == {"limit": 5}
    assert anthropic.list_query(limit=5, order="desc", purpose=None, after="file_011Ca") == {
        "limit": 5,
        "after_id": "file_011Ca",
    }


def test_ascending_pages_continue_with_the_files_just_newer():
    assert provider().list_query(limit=5, order="asc", purpose=None, after="file_011Ca") == {
        "limit": 5,
        "before_id": "file_011Ca",
    }


@pytest.mark.parametrize(("asked", "sent"), [(0, 1), (1, 1), (1000, 1000), (1001, 1000), (10001, 1000)])
def test_the_page_size_stays_within_anthropics_1_to_1000(asked, sent):
    assert provider().list_query(limit=asked, order="desc", purpose=None, after=None)["limit"] == sent


def test_a_walk_newest_first_chains_each_pages_last_file_into_the_next_query():
    anthropic = provider()
    answers = [beta_page([9, 8, 7, 6], True), beta_page([5, 4, 3, 2], True), beta_page([1, 0], False)]
    walked, after = [], None
    for body in answers:
        assert anthropic.list_query(limit=4, order="desc", purpose=None, after=after) == (
            {"limit": 4, "after_id": after} if after else {"limit": 4}
        )
        page = anthropic.parse_page(body, order="desc")
        walked += [remote.id for remote in page.files]
        after = page.cursor
    assert walked == ids([9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    assert not page.has_more


def test_a_walk_oldest_first_reverses_each_page_and_chains_its_newest_file():
    anthropic = provider()
    # After file 0, asking before_id: Anthropic answers the files just newer than it, newest first.
    answers = [beta_page([4, 3, 2, 1], True), beta_page([8, 7, 6, 5], True), beta_page([9], False)]
    walked, after = [], ids([0])[0]
    for body in answers:
        assert anthropic.list_query(limit=4, order="asc", purpose=None, after=after) == {"limit": 4, "before_id": after}
        page = anthropic.parse_page(body, order="asc")
        walked += [remote.id for remote in page.files]
        after = page.cursor
    assert walked == ids([1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert after == ids([9])[0] and not page.has_more


def test_an_empty_page_has_no_cursor():
    page = provider().parse_page({"data": [], "has_more": False, "first_id": None, "last_id": None}, order="asc")
    assert (page.files, page.has_more, page.cursor) == ([], False, None)


@pytest.mark.parametrize("body", [None, [], {"has_more": False}, {"data": "x"}, {"data": [{"id": "file_1"}]}])
def test_a_malformed_list_is_an_upstream_error(body):
    with pytest.raises(UpstreamError):
        provider().parse_page(body)


# What can be done with which file.


def remote(*, downloadable: bool) -> RemoteFile:
    return RemoteFile(
        id="file_011Cx", bytes=1, created_at=T0, filename="a", purpose="user_data", downloadable=downloadable
    )


def test_content_is_only_for_downloadable_files():
    anthropic = provider()
    assert anthropic.can(CONTENT, remote(downloadable=True))
    assert not anthropic.can(CONTENT, remote(downloadable=False))
    assert anthropic.can(CONTENT)  # a file the gateway has no record of: Anthropic decides
    assert anthropic.can(DELETE, remote(downloadable=False))
    anthropic.require(CONTENT, remote(downloadable=True))
    with pytest.raises(FileNotDownloadable) as raised:
        anthropic.require(CONTENT, remote(downloadable=False))
    assert isinstance(raised.value, UnsupportedOperation)
    assert (raised.value.status_code, raised.value.code, raised.value.param) == (400, "file_not_downloadable", "id")
    assert "only files its tools made" in raised.value.message


def test_only_purposes_anthropic_can_use_are_accepted():
    assert AnthropicProvider.purposes == frozenset({"assistants", "user_data", "vision"})


# Error shapes, at the HTTP boundary.


def failing(status: int, body: str, **headers: str) -> tuple[AnthropicProvider, list[httpx.Request]]:
    anthropic = provider()
    return anthropic, answered_by(anthropic, always(status, body, **headers))


def upload_to(anthropic: AnthropicProvider) -> RemoteFile:
    return anthropic.upload(
        io.BytesIO(b"%PDF-1.7 hello"), UploadOptions(filename="a.pdf", purpose="user_data", namespace="o")
    )


@pytest.mark.parametrize(("status", "error_type"), [(401, "authentication_error"), (403, "permission_error")])
def test_refused_credentials_are_the_accounts_problem(status, error_type):
    anthropic, _ = failing(status, error_body(error_type, f"invalid x-api-key {ANTHROPIC_KEY}"))
    with pytest.raises(UpstreamRejected) as raised:
        anthropic.retrieve("file_011Cx")
    assert (raised.value.status_code, raised.value.code) == (403, "upstream_authentication_failed")
    assert "invalid x-api-key" in raised.value.message and ANTHROPIC_KEY not in raised.value.message


def test_a_missing_file_is_not_found_and_a_missing_list_is_the_upstreams_404():
    anthropic, _ = failing(404, error_body("not_found_error", "File not found: file_011Cx"))
    with pytest.raises(FileNotFound) as raised:
        anthropic.retrieve("file_011Cx")
    assert raised.value.param == "id"
    with pytest.raises(UpstreamRejected) as listing:
        next(anthropic.iter_pages(purpose=None, order="desc", after=None, page_size=5))
    assert listing.value.status_code == 404


def test_cloudflares_413_is_a_file_too_large():
    body = json.dumps(
        {"type": "error", "error": {"type": "request_too_large", "message": "Too big"}, "request_id": None}
    )
    anthropic, seen = failing(413, body)
    with pytest.raises(PayloadTooLarge) as raised:
        upload_to(anthropic)
    assert (raised.value.status_code, raised.value.code, raised.value.param) == (413, "file_too_large", "file")
    assert len(seen) == 1


def test_the_storage_limit_is_the_providers_not_the_organisations():
    body = error_body("invalid_request_error", "Storage quota exhausted.", "storage_quota_exceeded")
    anthropic, _ = failing(400, body)
    with pytest.raises(ProviderStorageFull) as raised:
        upload_to(anthropic)
    error = raised.value.as_dict()["error"]
    assert (raised.value.status_code, error["type"], error["code"]) == (
        403,
        "insufficient_quota",
        "provider_storage_quota_exceeded",
    )


def test_anthropics_not_downloadable_answer_is_file_not_downloadable():
    body = error_body("invalid_request_error", "The file has `downloadable: false`.", "file_not_downloadable")
    anthropic, _ = failing(400, body)
    with pytest.raises(FileNotDownloadable) as raised:
        anthropic.open_content("file_011Cx")
    assert (raised.value.status_code, raised.value.code) == (400, "file_not_downloadable")


@pytest.mark.parametrize(("retry_after", "headers"), [("7", {"Retry-After": "7"}), (None, {})])
def test_a_429_keeps_retry_after_when_there_is_one(retry_after, headers):
    extra = {"retry-after": retry_after} if retry_after else {}
    anthropic, _ = failing(429, error_body("rate_limit_error", "Rate limit exceeded"), **extra)
    with pytest.raises(UpstreamRateLimited) as raised:
        anthropic.retrieve("file_011Cx")
    assert raised.value.headers == headers


def test_a_500_is_retried_on_reads_then_a_502(fast_retries, settings):
    settings.UPSTREAM_RETRIES = 2
    anthropic, seen = failing(500, error_body("api_error", "Internal server error"))
    with pytest.raises(UpstreamError) as raised:
        anthropic.retrieve("file_011Cx")
    assert (raised.value.status_code, len(seen)) == (502, 3)
    with pytest.raises(UpstreamError):
        upload_to(anthropic)
    assert len(seen) == 4  # an upload is never retried


@pytest.mark.parametrize(("retry_after", "headers"), [("30", {"Retry-After": "30"}), (None, {})])
def test_an_overloaded_anthropic_is_a_503_retried_on_reads(fast_retries, settings, retry_after, headers):
    settings.UPSTREAM_RETRIES = 1
    extra = {"retry-after": retry_after} if retry_after else {}
    anthropic, seen = failing(529, error_body("overloaded_error", "Overloaded"), **extra)
    with pytest.raises(UpstreamUnavailable) as raised:
        anthropic.retrieve("file_011Cx")
    assert (raised.value.status_code, raised.value.code, raised.value.headers) == (503, "upstream_unavailable", headers)
    assert len(seen) == 2


def test_other_refusals_keep_their_status_and_a_scrubbed_message():
    anthropic, _ = failing(400, error_body("invalid_request_error", f"Invalid filename for key {ANTHROPIC_KEY}"))
    with pytest.raises(UpstreamRejected) as raised:
        upload_to(anthropic)
    assert (raised.value.status_code, raised.value.code, raised.value.param) == (400, "upstream_error", None)
    assert raised.value.message == "Invalid filename for key ***"


@pytest.mark.parametrize(
    "body",
    [
        "<html><body>Bad Request</body></html>",
        "",
        '{"type": "error", "error": "bad"}',
        '{"type": "error", "error": {"message": 7, "details": "x"}}',
        '{"type": "error", "error": {"message": "No.", "details": {"error_code": ["x"]}}}',
    ],
)
def test_malformed_error_bodies_still_map_by_status(body):
    anthropic, _ = failing(400, body)
    with pytest.raises(UpstreamRejected) as raised:
        upload_to(anthropic)
    assert (raised.value.status_code, raised.value.code) == (400, "upstream_error")


def test_error_bodies_are_read_field_by_field():
    anthropic = provider()
    body = error_body("invalid_request_error", "No.", "storage_quota_exceeded").encode()
    assert anthropic.parse_error(body) == ("No.", None, "storage_quota_exceeded")
    assert anthropic.parse_error(error_body("api_error", "Oops").encode()) == ("Oops", None, None)
    assert anthropic.parse_error(b"\xff\xfe") == (None, None, None)


@pytest.mark.parametrize(
    ("answer", "call"),
    [
        ("not json", "retrieve"),
        (json.dumps({"data": None, "has_more": False}), "list"),
        (json.dumps({"id": "file_011Cx", "type": "file"}), "delete"),
    ],
)
def test_a_malformed_success_is_an_upstream_error(answer, call):
    anthropic, _ = failing(200, answer)
    with pytest.raises(UpstreamError) as raised:
        if call == "retrieve":
            anthropic.retrieve("file_011Cx")
        elif call == "list":
            next(anthropic.iter_pages(purpose=None, order="desc", after=None, page_size=5))
        else:
            anthropic.delete("file_011Cx")
    assert raised.value.status_code == 502


# Paging against the fake Anthropic server.


@pytest.fixture
def seeded(fake_anthropic: FakeAnthropic) -> tuple[AnthropicProvider, list[str]]:
    """An account on the fake with 2,600 files; their ids oldest first."""
    return AnthropicProvider(**fake_anthropic.account_config()), fake_anthropic.seed(2600)


def walk(anthropic: AnthropicProvider, *, order: str, after: str | None, page_size: int) -> list[list[str]]:
    return [
        [remote.id for remote in files]
        for files in anthropic.iter_pages(purpose=None, order=order, after=after, page_size=page_size)
    ]


def flat(pages: list[list[str]]) -> list[str]:
    return [file_id for page in pages for file_id in page]


def list_queries(fake: FakeAnthropic) -> list[dict[str, str]]:
    return [{name: values[-1] for name, values in request.query.items()} for request in fake.calls("GET")]


def test_newest_first_follows_after_id_page_by_page(seeded, fake_anthropic):
    anthropic, oldest_first = seeded
    pages = walk(anthropic, order="desc", after=None, page_size=1001)
    assert flat(pages) == oldest_first[::-1]
    assert [len(page) for page in pages] == [1000, 1000, 600]
    assert list_queries(fake_anthropic) == [
        {"limit": "1000"},
        {"limit": "1000", "after_id": pages[0][-1]},
        {"limit": "1000", "after_id": pages[1][-1]},
    ]
    assert all(request.headers["anthropic-beta"] == FILES_BETA for request in fake_anthropic.requests)


def test_newest_first_after_a_file_starts_just_older(seeded):
    anthropic, oldest_first = seeded
    after = oldest_first[1500]
    assert flat(walk(anthropic, order="desc", after=after, page_size=333)) == oldest_first[:1500][::-1]


def test_oldest_first_walks_to_the_oldest_page_then_pages_back_up(seeded, fake_anthropic):
    anthropic, oldest_first = seeded
    pages = walk(anthropic, order="asc", after=None, page_size=250)
    assert flat(pages) == oldest_first
    queries = list_queries(fake_anthropic)
    # The walk: three pages of 1000 newest first, the last holding the 600 oldest files...
    assert queries[:3] == [
        {"limit": "1000"},
        {"limit": "1000", "after_id": oldest_first[1600]},
        {"limit": "1000", "after_id": oldest_first[600]},
    ]
    # ...then pages of the size asked for, each holding the files just newer than the last one seen.
    assert pages[0] == oldest_first[:600]
    assert queries[3] == {"limit": "250", "before_id": oldest_first[599]}
    assert [len(page) for page in pages[1:]] == [250] * 8


def test_oldest_first_after_a_file_starts_just_newer(seeded, fake_anthropic):
    anthropic, oldest_first = seeded
    after = oldest_first[999]
    pages = walk(anthropic, order="asc", after=after, page_size=700)
    assert flat(pages) == oldest_first[1000:]
    assert [len(page) for page in pages] == [700, 700, 200]
    assert list_queries(fake_anthropic)[0] == {"limit": "700", "before_id": after}


def test_oldest_first_of_a_short_list_is_one_request(fake_anthropic):
    anthropic = AnthropicProvider(**fake_anthropic.account_config())
    oldest_first = fake_anthropic.seed(5)
    assert walk(anthropic, order="asc", after=None, page_size=3) == [oldest_first]
    assert walk(anthropic, order="asc", after=None, page_size=3) == [oldest_first]
    assert len(fake_anthropic.calls("GET")) == 2
    fake_anthropic.files.clear()
    assert walk(anthropic, order="asc", after=None, page_size=3) == [[]]


def test_pages_are_fetched_only_as_they_are_read(seeded, fake_anthropic):
    anthropic, oldest_first = seeded
    pages = anthropic.iter_pages(purpose=None, order="desc", after=None, page_size=10)
    assert [remote.id for remote in next(pages)] == oldest_first[::-1][:10]
    assert len(fake_anthropic.calls("GET")) == 1


# Through the gateway.


@pytest.fixture
def on_anthropic(tenant_a: Tenant, fake_anthropic: FakeAnthropic) -> FakeAnthropic:
    add_upstream_account(tenant_a, fake_anthropic, name="claude")
    return fake_anthropic


def test_a_recorded_uploads_content_is_refused_before_any_call(tenant_a, on_anthropic):
    file_id = upload(tenant_a.client, b"%PDF-1.7", filename="a.pdf", account="claude").json()["id"]
    assert File.objects.get(public_id=file_id).is_downloadable is False
    asked = len(on_anthropic.requests)
    response = tenant_a.client.get(f"/v1/files/{file_id}/content")
    assert response.status_code == 400
    assert (response.json()["error"]["code"], response.json()["error"]["param"]) == ("file_not_downloadable", "id")
    assert len(on_anthropic.requests) == asked
    event = AuditEvent.objects.get(action=AuditEvent.Action.CONTENT)
    assert (event.file_id, event.outcome) == (file_id, "file_not_downloadable")


def test_an_outside_file_anthropic_keeps_to_itself_is_refused_by_anthropics_answer(tenant_a, on_anthropic):
    file_id = on_anthropic.add_file(b"secret", downloadable=False)
    response = tenant_a.client.get(f"/v1/files/{file_id}/content", HTTP_X_PROVIDER_ACCOUNT="claude")
    assert (response.status_code, response.json()["error"]["code"]) == (400, "file_not_downloadable")
    assert len(on_anthropic.calls("GET", f"/{file_id}/content")) == 1


def test_lists_show_the_recorded_purpose_and_user_data_for_outside_files(tenant_a, on_anthropic):
    outside = on_anthropic.add_file(b"made by a tool", filename="chart.png")
    vision = upload(tenant_a.client, b"\x89PNG", filename="a.png", purpose="vision", account="claude").json()["id"]

    def listed(**query: str) -> list[tuple[str, str]]:
        body = tenant_a.client.get("/v1/files", query, HTTP_X_PROVIDER_ACCOUNT="claude").json()
        return [(file["id"], file["purpose"]) for file in body["data"]]

    assert listed() == [(vision, "vision"), (outside, "user_data")]
    assert listed(purpose="vision") == [(vision, "vision")]
    assert listed(purpose="user_data", order="asc") == [(outside, "user_data")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("order", ["desc", "asc"])
def test_the_sdk_walks_client_pages_larger_than_anthropics_once_each(live_server, tenant_a, on_anthropic, order):
    oldest_first = on_anthropic.seed(2600)
    with openai.OpenAI(
        base_url=f"{live_server.url}/v1", api_key=tenant_a.key, default_headers={"X-Provider-Account": "claude"}
    ) as client:
        pages = list(client.files.list(limit=1500, order=order).iter_pages())
    walked = [file.id for page in pages for file in page.data]
    assert walked == (oldest_first if order == "asc" else oldest_first[::-1])
    assert [(len(page.data), page.has_more) for page in pages] == [(1500, True), (1100, False)]
