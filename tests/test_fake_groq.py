"""The fake Groq Files API is faithful: the official ``groq`` SDK drives it, not the gateway.

Proven here: the SDK's five calls and types work against it, only ``purpose=batch`` is accepted,
lists come whole whatever the query (so the gateway must page them itself, over 10,000 files),
requests without the key are refused in Groq's envelope, and faults behave as a client sees them.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from typing import Any, cast

import groq
import httpx
import pytest
from groq.types.shared import ErrorObject

from tenants.services import provider_for
from tests.conftest import MULTIPART, Tenant, multipart_body
from tests.upstream_groq import FakeGroq
from tests.upstream_server import conforms
from tests.upstreams import add_upstream_account

MiB = 1024 * 1024


@pytest.fixture
def sdk(fake_groq: FakeGroq) -> Iterator[groq.Groq]:
    # The SDK adds /openai/v1 itself; max_retries=0: every test sees the fake's first answer.
    client = groq.Groq(base_url=fake_groq.origin, api_key=fake_groq.api_key, max_retries=0)
    yield client
    client.close()


def assert_error(response: httpx.Response, status: int, message: str, **fields: Any) -> None:
    assert response.status_code == status
    error = ErrorObject.model_validate(response.json()["error"])
    assert message in error.message
    assert {name: getattr(error, name) for name in fields} == fields
    assert response.headers["x-request-id"].startswith("req_01")


def test_it_answers_an_upload_with_a_file_object_without_status(sdk, fake_groq):
    content = os.urandom(300 * 1024)

    response = sdk.files.with_raw_response.create(file=("requests.jsonl", content), purpose="batch")
    made = response.parse()

    assert (
        made.id is not None and made.id.startswith("file_01") and len(made.id) == len("file_01jh6x76wtemjr74t1fh0faj5t")
    )
    assert (made.object, made.bytes, made.filename, made.purpose) == ("file", len(content), "requests.jsonl", "batch")
    assert set(response.json()) == {"id", "object", "bytes", "created_at", "filename", "purpose"}
    assert abs(cast(int, made.created_at) - time.time()) < 5
    assert fake_groq.files[made.id].sha256 == hashlib.sha256(content).hexdigest()


@pytest.mark.parametrize("purpose", ["assistants", "fine-tune", "batch_output"])
def test_it_accepts_only_the_batch_purpose(sdk, fake_groq, purpose):
    with pytest.raises(groq.BadRequestError) as raised:
        sdk.files.create(file=("a.jsonl", b"{}\n"), purpose=cast(Any, purpose))

    assert_error(raised.value.response, 400, "batch", param="purpose", type="invalid_request_error")
    assert fake_groq.files == {} and list(fake_groq.root.iterdir()) == []


def test_it_refuses_an_upload_without_purpose(fake_groq):
    body = multipart_body(("file", b"{}\n", "a.jsonl"))
    headers = {"authorization": f"Bearer {fake_groq.api_key}", "content-type": MULTIPART}

    response = httpx.post(f"{fake_groq.url}/files", content=body, headers=headers)

    assert_error(response, 400, "purpose", param="purpose")


def test_a_list_is_every_file_at_once_whatever_the_query(sdk, fake_groq):
    made = fake_groq.seed(30, purpose="batch_output")
    latest = sdk.files.create(file=("a.jsonl", b"{}\n"), purpose="batch").id

    response = sdk.files.with_raw_response.list(extra_query={"limit": 2, "after": made[5], "purpose": "batch"})

    assert set(response.json()) == {"object", "data"}
    assert [file.id for file in response.parse().data] == [latest, *made[::-1]]  # newest first


def test_it_lists_ten_thousand_files_quickly(sdk, fake_groq):
    started = time.monotonic()
    fake_groq.seed(10_000)
    seeded = time.monotonic() - started
    started = time.monotonic()
    listed = sdk.files.list().data
    answered = time.monotonic() - started

    assert len(listed) == 10_000 and len({file.id for file in listed}) == 10_000
    assert seeded < 2, f"seeding 10,000 files took {seeded:.2f} s"
    assert answered < 10, f"listing 10,000 files took {answered:.2f} s"


def test_it_retrieves_downloads_and_deletes_a_file(sdk, fake_groq):
    content = os.urandom(MiB + 3)
    file_id = fake_groq.add_file(content, filename="results.jsonl", purpose="batch_output")

    assert sdk.files.info(file_id).purpose == "batch_output"
    download = sdk.files.content(file_id)
    assert download.headers["content-type"] == "application/octet-stream" and download.read() == content
    deleted = sdk.files.delete(file_id)
    assert (deleted.id, deleted.object, deleted.deleted) == (file_id, "file", True)
    with pytest.raises(groq.NotFoundError):
        sdk.files.info(file_id)
    assert list(fake_groq.root.iterdir()) == []


@pytest.mark.parametrize("authorization", [None, "Bearer gsk_wrong", "gsk_upstream0123456789abcdefXYZ"])
def test_it_refuses_a_request_without_the_bearer_key(fake_groq, authorization):
    headers = {"authorization": authorization} if authorization else {}

    for method, path in [("GET", ""), ("GET", "/file_01x"), ("GET", "/file_01x/content"), ("DELETE", "/file_01x")]:
        response = httpx.request(method, f"{fake_groq.url}/files{path}", headers=headers)
        assert_error(response, 401, "Invalid API Key", code="invalid_api_key", type="invalid_request_error")


def test_a_status_fault_is_answered_in_the_envelope(sdk, fake_groq):
    fake_groq.fail("list", status=500)
    fake_groq.fail("retrieve", status=429)

    with pytest.raises(groq.InternalServerError):
        sdk.files.list()
    with pytest.raises(groq.RateLimitError) as raised:
        sdk.files.info("file_01x")

    assert raised.value.response.headers["retry-after"] == "7"
    assert sdk.files.list().data == []


def test_a_hang_runs_into_the_clients_timeout(sdk, fake_groq):
    fake_groq.fail("list", "hang")
    started = time.monotonic()

    with pytest.raises(groq.APITimeoutError):
        sdk.files.list(timeout=0.5)

    assert time.monotonic() - started < 3


def test_a_reset_cuts_a_download_midway(sdk, fake_groq):
    file_id = fake_groq.add_file(os.urandom(2 * MiB))
    fake_groq.fail("content", "reset", after_bytes=MiB // 2)
    received = 0

    with pytest.raises(httpx.TransportError), sdk.files.with_streaming_response.content(file_id) as response:
        for chunk in response.iter_bytes():
            received += len(chunk)

    assert received <= MiB // 2


def test_a_reset_cuts_an_upload_midway_and_keeps_nothing(sdk, fake_groq):
    fake_groq.fail("upload", "reset", after_bytes=256 * 1024)

    with pytest.raises(groq.APIConnectionError):
        sdk.files.create(file=("big.jsonl", os.urandom(2 * MiB)), purpose="batch")

    fake_groq.wait_for(lambda: len(fake_groq.uploads) == 1)
    assert not fake_groq.uploads[0].is_complete
    assert fake_groq.files == {} and list(fake_groq.root.iterdir()) == []


def test_answers_are_checked_for_keys_the_sdk_does_not_declare():
    from groq.types import FileInfoResponse

    file = {"id": "file_01x", "object": "file", "bytes": 1, "created_at": 1, "filename": "a", "purpose": "batch"}
    conforms(FileInfoResponse, file, exact=True)

    with pytest.raises(AssertionError, match="status"):
        conforms(FileInfoResponse, {**file, "status": "processed"}, exact=True)


def test_an_account_on_the_fake_is_of_the_groq_kind(tenant_a: Tenant, fake_groq):
    assert fake_groq.account_config()["base_url"] == f"{fake_groq.origin}/openai/v1"
    account = add_upstream_account(tenant_a, fake_groq, name="batch", timeout=5)

    assert (account.name, account.kind, account.settings["base_url"]) == ("batch", "groq", fake_groq.url)
    provider_for(account).check()  # the fake takes the kind's requests
    assert len(fake_groq.calls("GET")) == 1
