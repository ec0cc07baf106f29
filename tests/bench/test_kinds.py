"""bench/kinds.py and the fake upstream: each kind's entry is an account the gateway accepts, the
fake keeps each key's files apart, so a list shows exactly what that key uploaded, and its Anthropic
and Groq dialects answer in their SDKs' own types."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import anthropic
import client
import groq
import pytest
import run
import upstream
from anthropic.pagination import SyncPage
from anthropic.types import FileNotDownloadableError
from anthropic.types.beta import BetaFileMetadata
from anthropic.types.shared import ErrorResponse
from groq.types import FileCreateResponse, FileDeleteResponse, FileListResponse
from groq.types.shared import ErrorObject
from kinds import ANTHROPIC_API, DEFAULT_KINDS, KINDS
from processes import HOST, Service, free_port
from pydantic import BaseModel
from stores import ObjectStore

from providers import registry
from providers.batch import BatchLineValidator
from tests.object_stores import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
BETA = {"anthropic-beta": "files-api-2025-04-14"}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_kind_entry_is_an_account_the_registry_accepts(name: str) -> None:
    kind = KINDS[name]
    settings = kind.account_settings(url="http://127.0.0.1:9", key="sk-bench")
    config = dict(value.split("=", 1) for value in settings[1::2])

    registry.split_config(kind.name, config)  # raises InvalidRequest for an unknown or malformed setting

    assert settings[::2] == ["--set"] * len(config)


def test_the_default_kinds_are_in_the_table() -> None:
    assert set(DEFAULT_KINDS) <= set(KINDS)
    assert "openai" in DEFAULT_KINDS  # issue 14's table is measured on it
    assert not KINDS["openai"].reduced and not KINDS["local"].reduced


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_kind_uploads_a_purpose_the_registry_accepts_for_it(name: str) -> None:
    kind = KINDS[name]
    provider_class = registry.provider_class(kind.name)

    assert provider_class.purposes is None or kind.purpose in provider_class.purposes


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Service]:
    port = free_port()
    args = [sys.executable, str(ROOT / "bench" / "upstream.py"), "--port", str(port)]
    service = Service("upstream", args, env={"PATH": "/usr/bin:/bin"}, port=port, cwd=ROOT, logs=tmp_path)
    try:
        service.wait_ready("/healthz")
        yield service
    finally:
        service.stop()


@pytest.mark.parametrize("name", ["openai", "azure_openai", "anthropic", "groq"])
def test_the_fake_keeps_each_keys_files_apart(fake: Service, name: str) -> None:
    api = KINDS[name].api
    mine, theirs = api.headers("sk-mine"), api.headers("sk-theirs")
    uploads = [
        client.build_upload(
            HOST,
            fake.port,
            api.files_path,
            headers=mine,
            filename=f"f{i}.jsonl",
            content=bytes([i]) * 100,
            purpose="batch" if api.sends_purpose else "",
        )
        for i in range(3)
    ]
    run = client.send(HOST, fake.port, uploads, concurrency=2, keep_answers=True)
    ids = {json.loads(body)["id"]: zlib.crc32(bytes([i]) * 100) for i, (_, body) in run.answers.items()}

    _, my_list = client.request_json(HOST, fake.port, "GET", api.files_path, headers=mine)
    _, their_list = client.request_json(HOST, fake.port, "GET", api.files_path, headers=theirs)
    _, records = client.request_json(HOST, fake.port, "GET", "/_bench/files", headers=mine)

    assert run.errors == 0
    assert sorted(item["id"] for item in my_list["data"]) == sorted(ids)
    assert their_list["data"] == []
    assert {file_id: (record["bytes"], record["crc32"]) for file_id, record in records.items()} == {
        file_id: (100, crc) for file_id, crc in ids.items()
    }


# The Anthropic and Groq dialects, driven by their SDKs.


@pytest.fixture
def anthropic_sdk(fake: Service) -> Iterator[anthropic.Anthropic]:
    # The SDK sends the key as a bearer token and the version; the gateway's beta header is added per call.
    sdk = anthropic.Anthropic(base_url=f"{fake.url}/anthropic", api_key="sk-ant-bench", max_retries=0)
    yield sdk
    sdk.close()


def assert_declared(body: dict, model: type[BaseModel]) -> None:
    """Every key of an answer is one the SDK's type declares (the test fakes refuse any other)."""
    assert set(body) <= set(model.model_fields), set(body) - set(model.model_fields)


def test_the_anthropic_dialect_answers_in_the_sdks_beta_types(anthropic_sdk: anthropic.Anthropic) -> None:
    uploaded = anthropic_sdk.beta.files.with_raw_response.upload(file=("a.txt", b"x" * 300), extra_headers=BETA)
    made = uploaded.parse()
    newer = anthropic_sdk.beta.files.upload(file=("b.txt", b"y" * 10), extra_headers=BETA)
    page = anthropic_sdk.get_api_list(
        "/v1/files",
        model=BetaFileMetadata,
        page=SyncPage[BetaFileMetadata],
        options={"params": {"limit": 1}, "headers": BETA},
    )
    next_page = page.get_next_page()  # after_id, newest first
    retrieved = anthropic_sdk.beta.files.retrieve_metadata(made.id, extra_headers=BETA)
    deleted = anthropic_sdk.beta.files.delete(newer.id, extra_headers=BETA)

    assert_declared(uploaded.json(), BetaFileMetadata)
    assert (made.type, made.size_bytes, made.downloadable, made.filename) == ("file", 300, False, "a.txt")
    assert abs(made.created_at.timestamp() - time.time()) < 10
    assert [item.id for item in page.data] == [newer.id] and page.has_more and page.last_id == newer.id
    assert [item.id for item in next_page.data] == [made.id] and not next_page.has_more
    assert retrieved == made
    assert (deleted.id, deleted.type) == (newer.id, "file_deleted")


def test_the_anthropic_dialect_downloads_only_tool_made_files(
    fake: Service, anthropic_sdk: anthropic.Anthropic
) -> None:
    made = anthropic_sdk.beta.files.upload(file=("a.txt", b"secret"), extra_headers=BETA)
    status, tool_file = client.request_json(
        HOST,
        fake.port,
        "POST",
        "/_bench/anthropic-tool-file?bytes=300000",
        headers=ANTHROPIC_API.headers("sk-ant-bench"),
    )

    with pytest.raises(FileNotDownloadableError):
        anthropic_sdk.beta.files.download(made.id, extra_headers=BETA)
    content = anthropic_sdk.beta.files.download(tool_file["id"], extra_headers=BETA).read()
    assert status == 200 and BetaFileMetadata.model_validate(tool_file).downloadable is True
    assert len(content) == 300000 and zlib.crc32(content) == upstream.pattern_crc32(300000)


def test_the_anthropic_dialect_refuses_what_anthropic_refuses(fake: Service) -> None:
    key = {"x-api-key": "sk-ant-bench"}
    version = {"anthropic-version": "2023-06-01"}
    purpose = client.build_upload(
        HOST,
        fake.port,
        ANTHROPIC_API.files_path,
        headers={**key, **version},
        filename="a.txt",
        content=b"x",
        purpose="assistants",
    )

    no_key = client.request_json(HOST, fake.port, "GET", ANTHROPIC_API.files_path, headers=version)
    no_version = client.request_json(HOST, fake.port, "GET", ANTHROPIC_API.files_path, headers=key)
    with_purpose = client.send(HOST, fake.port, [purpose], concurrency=1, keep_answers=True).answers[0]

    assert no_key[0] == 401 and ErrorResponse.model_validate(no_key[1]).error.type == "authentication_error"
    assert no_version[0] == 400 and ErrorResponse.model_validate(no_version[1]).error.type == "invalid_request_error"
    assert with_purpose[0] == 400 and "purpose" in ErrorResponse.model_validate_json(with_purpose[1]).error.message


@pytest.fixture
def groq_sdk(fake: Service) -> Iterator[groq.Groq]:
    sdk = groq.Groq(base_url=f"{fake.url}/groq", api_key="gsk_bench", max_retries=0)  # the SDK adds /openai/v1
    yield sdk
    sdk.close()


def test_the_groq_dialect_answers_in_the_sdks_types(groq_sdk: groq.Groq) -> None:
    created = groq_sdk.files.with_raw_response.create(file=("a.jsonl", b"{}\n" * 100), purpose="batch")
    made = created.parse()
    second = groq_sdk.files.create(file=("b.jsonl", b"{}\n"), purpose="batch")
    listed = groq_sdk.files.with_raw_response.list(extra_query={"limit": 1})
    info = groq_sdk.files.info(made.id)  # type: ignore[arg-type]
    content = groq_sdk.files.content(made.id).read()  # type: ignore[arg-type]
    deleted = groq_sdk.files.with_raw_response.delete(second.id)  # type: ignore[arg-type]

    assert_declared(created.json(), FileCreateResponse)
    assert "status" not in created.json()
    assert (made.bytes, made.purpose, made.filename) == (300, "batch", "a.jsonl")
    assert_declared(listed.json(), FileListResponse)
    assert [item.id for item in listed.parse().data or []] == [second.id, made.id]  # every file, newest first
    assert (info.id, info.bytes) == (made.id, 300)
    assert content == upstream.PATTERN[:300]
    assert_declared(deleted.json(), FileDeleteResponse)
    assert deleted.parse().deleted is True


@pytest.mark.parametrize("purpose", ["assistants", "user_data"])
def test_the_groq_dialect_takes_batch_files_only(groq_sdk: groq.Groq, purpose: str) -> None:
    with pytest.raises(groq.BadRequestError) as raised:
        groq_sdk.files.create(file=("a.jsonl", b"{}\n"), purpose=purpose)  # type: ignore[arg-type]

    assert "batch" in ErrorObject.model_validate(raised.value.response.json()["error"]).message


# The inputs and the object stores.


@pytest.mark.parametrize("size", [1024 * 1024, 1024 * 1024 + 3, 300_001])
def test_a_batch_input_is_exactly_its_size_and_every_line_passes_the_gateways_check(tmp_path: Path, size: int) -> None:
    path = run.make_batch_input(tmp_path / "batch.jsonl", size)
    validator = BatchLineValidator(max_line_bytes=8 * 1024 * 1024)

    validator.feed(path.read_bytes())
    validator.finish()

    assert path.stat().st_size == size
    assert validator.line_number == max(1, size // 4096) == len(validator.custom_ids)


def test_an_object_store_reads_back_what_was_stored(tmp_path: Path, gcs_emulator: ServerProcess) -> None:
    store = ObjectStore("gcs", gcs_emulator.url, "bench-" + uuid.uuid4().hex[:12])
    store.create_bucket()
    content = os.urandom(9 * 1024 * 1024 + 5)  # two resumable chunks
    (tmp_path / "in.bin").write_bytes(content)

    try:
        store.upload(tmp_path / "in.bin", "direct/in.bin")
        run_ = store.latency("direct/in.bin", 20, 4)

        assert store.read_back("direct/in.bin") == (len(content), zlib.crc32(content))
        assert store.head("direct/in.bin") == len(content)
        assert (len(run_.seconds), run_.errors) == (20, 0)
    finally:
        store.handle.delete(force=True)  # the emulator is the session's: leave it as it was
