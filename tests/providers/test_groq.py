"""``GroqProvider``: its translation hooks as plain functions, its error shapes at the HTTP boundary
(an in-process transport), and the paging the gateway does for Groq, against the fake Groq server."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import httpx
import openai
import pytest
from groq.types import FileInfoResponse

from config.errors import (
    FileNotFound,
    InvalidRequest,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
)
from providers.base import CONTENT, RemoteFile, UploadOptions
from providers.groq import GroqProvider, page_in_order
from tests.conftest import Tenant
from tests.providers.transport import always, answered_by, streamed
from tests.upstream_groq import GROQ_KEY, FakeGroq
from tests.upstreams import add_upstream_account


def provider(**config: Any) -> GroqProvider:
    return GroqProvider(**{"api_key": GROQ_KEY, **config})


def groq_file(n: int, *, created_at: int | None = None, purpose: str = "batch") -> dict[str, Any]:
    """A Groq file object (no ``status``), checked with the SDK's type."""
    body = {
        "id": f"file_01{n:024d}",
        "object": "file",
        "bytes": 10 + n,
        "created_at": 1_750_000_000 + n if created_at is None else created_at,
        "filename": f"{n}.jsonl",
        "purpose": purpose,
    }
    FileInfoResponse.model_validate(body)
    return body


def remote(n: int, created_at: int, purpose: str = "batch") -> RemoteFile:
    return provider().parse_file(groq_file(n, created_at=created_at, purpose=purpose))


def groq_error(message: str, code: str | None = None) -> str:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": code}})


# Settings and translation hooks.


def test_calls_carry_the_bearer_key_under_groqs_openai_root():
    groq = provider()
    seen = answered_by(groq, always(200, json.dumps(groq_file(1))))
    groq.retrieve("file_01x")
    assert str(seen[0].url) == "https://api.groq.com/openai/v1/files/file_01x"
    assert seen[0].headers["authorization"] == f"Bearer {GROQ_KEY}"


def test_uploads_send_purpose_batch_and_no_expiry():
    options = UploadOptions(filename="b.jsonl", purpose="batch", namespace="org", expires_after_seconds=7200)
    assert provider().upload_fields(options) == [("purpose", "batch")]
    assert GroqProvider.purposes == frozenset({"batch"})


def test_a_file_object_without_status_is_processed():
    assert provider().parse_file(groq_file(3)) == RemoteFile(
        id=f"file_01{3:024d}", bytes=13, created_at=1_750_000_003, filename="3.jsonl", purpose="batch"
    )


def test_the_list_takes_no_query():
    assert provider().list_query(limit=5, order="asc", purpose="batch", after="file_01x") == {}


def test_every_file_can_be_downloaded():
    assert provider().can(CONTENT, remote(1, 5))


# The gateway's own paging.


def test_files_are_ordered_by_creation_in_both_directions():
    two, four, one, three = remote(2, 20), remote(4, 30), remote(1, 10), remote(3, 20)
    scrambled = [two, four, one, three]
    assert page_in_order(scrambled, order="desc", after=None) == [four, two, three, one]
    assert page_in_order(scrambled, order="asc", after=None) == [one, three, two, four]


@pytest.mark.parametrize("listed", ["newest first", "oldest first"])
def test_files_of_one_second_keep_the_upstreams_order_of_creation(listed):
    newest_first = [remote(9, 50), remote(8, 40), remote(7, 40), remote(6, 40), remote(5, 30)]
    upstream = newest_first if listed == "newest first" else newest_first[::-1]
    assert page_in_order(upstream, order="desc", after=None) == newest_first
    assert page_in_order(upstream, order="asc", after=None) == newest_first[::-1]
    assert page_in_order(upstream, order="asc", after=newest_first[2].id) == newest_first[:2][::-1]


def test_after_starts_just_past_the_named_file():
    files = [remote(n, 100 + n) for n in range(6)]
    assert page_in_order(files, order="desc", after=files[3].id) == files[:3][::-1]
    assert page_in_order(files, order="asc", after=files[3].id) == files[4:]
    assert page_in_order(files, order="asc", after=files[5].id) == []


def test_an_unknown_after_is_a_400_naming_it():
    with pytest.raises(InvalidRequest) as raised:
        page_in_order([remote(1, 5)], order="desc", after="file_01gone")
    assert (raised.value.status_code, raised.value.param) == (400, "after")


def answering_list(files: list[dict[str, Any]]) -> tuple[GroqProvider, list[httpx.Request]]:
    groq = provider()
    body = json.dumps({"object": "list", "data": files}).encode()
    return groq, answered_by(groq, lambda request: streamed(200, body))


def test_pages_of_the_asked_size_come_from_one_upstream_answer():
    files = [groq_file(n) for n in range(10)]
    groq, seen = answering_list(files[::-1])
    pages = groq.iter_pages(purpose=None, order="asc", after=files[1]["id"], page_size=3)
    got = [[file.id for file in page] for page in pages]
    assert got == [[files[n]["id"] for n in chunk] for chunk in ([2, 3, 4], [5, 6, 7], [8, 9])]
    assert len(seen) == 1 and seen[0].url.query == b""


def test_the_purpose_filter_applies_after_the_cursor():
    files = [groq_file(n, purpose="batch_output" if n % 2 else "batch") for n in range(8)]
    groq, _ = answering_list(files)
    got = [
        file.id
        for page in groq.iter_pages(purpose="batch", order="desc", after=files[5]["id"], page_size=2)
        for file in page
    ]
    assert got == [files[n]["id"] for n in (4, 2, 0)]


def test_no_upstream_call_is_made_before_the_first_page_is_read():
    groq, seen = answering_list([groq_file(1)])
    pages = groq.iter_pages(purpose=None, order="desc", after=None, page_size=5)
    assert seen == []
    assert len(next(pages)) == 1 and len(seen) == 1


# Error shapes.


@pytest.mark.parametrize(("status", "expected"), [(401, 403), (403, 403)])
def test_refused_keys_are_the_accounts_problem(status, expected):
    groq = provider()
    answered_by(groq, always(status, groq_error("Invalid API Key", "invalid_api_key")))
    with pytest.raises(UpstreamRejected) as raised:
        groq.retrieve("file_01x")
    assert (raised.value.status_code, raised.value.code) == (expected, "upstream_authentication_failed")


def test_a_missing_file_is_not_found():
    groq = provider()
    answered_by(groq, always(404, groq_error("File file_01x not found", "not_found")))
    with pytest.raises(FileNotFound):
        groq.retrieve("file_01x")
    assert groq.delete("file_01x") is False


@pytest.mark.parametrize(("retry_after", "headers"), [("12", {"Retry-After": "12"}), (None, {})])
def test_a_429_keeps_retry_after_when_there_is_one(retry_after, headers):
    groq = provider()
    extra = {"retry-after": retry_after} if retry_after else {}
    answered_by(groq, always(429, groq_error("Rate limit reached for requests"), **extra))
    with pytest.raises(UpstreamRateLimited) as raised:
        next(groq.iter_pages(purpose=None, order="desc", after=None, page_size=5))
    assert raised.value.headers == headers


def test_a_413_keeps_its_status_and_groqs_code():
    groq = provider()
    answered_by(groq, always(413, groq_error("Request Entity Too Large", "request_too_large")))
    with pytest.raises(UpstreamRejected) as raised:
        groq.upload(io.BytesIO(b"{}\n"), UploadOptions(filename="b.jsonl", purpose="batch", namespace="o"))
    assert (raised.value.status_code, raised.value.code) == (413, "request_too_large")


@pytest.mark.parametrize("body", ["<html>502 Bad Gateway</html>", groq_error("Internal Server Error")])
def test_a_5xx_is_retried_then_a_502(fast_retries, settings, body):
    settings.UPSTREAM_RETRIES = 1
    groq = provider()
    seen = answered_by(groq, always(500, body))
    with pytest.raises(UpstreamError):
        groq.retrieve("file_01x")
    assert len(seen) == 2


@pytest.mark.parametrize("body", ["[]", '{"object": "list"}', '{"data": [{"id": 7}]}', "nope"])
def test_a_malformed_list_is_an_upstream_error(body):
    groq = provider()
    answered_by(groq, always(200, body))
    with pytest.raises(UpstreamError):
        next(groq.iter_pages(purpose=None, order="desc", after=None, page_size=5))


# Ten thousand files through the gateway.


@pytest.fixture
def big_groq(tenant_a: Tenant, fake_groq: FakeGroq) -> list[str]:
    """An account ``groq`` of tenant_a on a fake holding 10,000 files; their ids oldest first."""
    add_upstream_account(tenant_a, fake_groq)
    return fake_groq.seed(10_000)


def gateway_list(tenant: Tenant, **query: Any) -> dict[str, Any]:
    response = tenant.client.get("/v1/files", query, HTTP_X_PROVIDER_ACCOUNT="groq")
    assert response.status_code == 200, response.json()
    return response.json()


def test_ten_thousand_files_page_in_both_orders_with_a_correct_has_more(tenant_a, big_groq):
    oldest_first = big_groq
    started = time.perf_counter()
    first = gateway_list(tenant_a, limit=100)
    seconds = time.perf_counter() - started
    assert [file["id"] for file in first["data"]] == oldest_first[::-1][:100]
    assert (first["first_id"], first["last_id"], first["has_more"]) == (oldest_first[-1], oldest_first[-100], True)
    assert all(file["status"] == "processed" and file["object"] == "file" for file in first["data"])
    middle = gateway_list(tenant_a, limit=100, after=oldest_first[5000])
    assert [file["id"] for file in middle["data"]] == oldest_first[4900:5000][::-1]
    last = gateway_list(tenant_a, limit=100, after=oldest_first[100])
    assert ([file["id"] for file in last["data"]], last["has_more"]) == (oldest_first[:100][::-1], False)
    up = gateway_list(tenant_a, limit=100, order="asc", after=oldest_first[9899])
    assert ([file["id"] for file in up["data"]], up["has_more"]) == (oldest_first[9900:], False)
    assert seconds < 5, f"a first page of a 10,000-file Groq list took {seconds:.2f} s"


def test_ten_thousand_files_fit_one_page_of_the_largest_limit(tenant_a, big_groq):
    whole = gateway_list(tenant_a, limit=10_000, order="asc")
    assert [file["id"] for file in whole["data"]] == big_groq
    assert whole["has_more"] is False
    one_short = gateway_list(tenant_a, limit=9_999)
    assert (len(one_short["data"]), one_short["has_more"]) == (9_999, True)


def test_an_after_the_upstream_no_longer_has_is_a_400(tenant_a, big_groq, fake_groq):
    fake_groq.remove(big_groq[42])
    response = tenant_a.client.get("/v1/files", {"after": big_groq[42]}, HTTP_X_PROVIDER_ACCOUNT="groq")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "after"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("order", ["desc", "asc"])
def test_the_sdk_walks_ten_thousand_files_once_each(live_server, tenant_a, big_groq, order):
    started = time.perf_counter()
    with openai.OpenAI(
        base_url=f"{live_server.url}/v1", api_key=tenant_a.key, default_headers={"X-Provider-Account": "groq"}
    ) as client:
        pages = list(client.files.list(limit=1000, order=order).iter_pages())
    seconds = time.perf_counter() - started
    walked = [file.id for page in pages for file in page.data]
    assert walked == (big_groq if order == "asc" else big_groq[::-1])
    assert [page.has_more for page in pages] == [True] * 9 + [False]
    assert seconds < 30, f"walking 10,000 Groq files in pages of 1000 took {seconds:.1f} s"
