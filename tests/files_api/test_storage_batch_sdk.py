"""The official ``openai`` SDK sends an OpenAI batch file to a Bedrock and a Vertex account through a
live gateway; what lands in S3 (moto) and GCS (the emulator) is checked line by line as the
provider's batch input, then the file is listed, retrieved, downloaded and deleted with the SDK.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from openai import OpenAI

from files_api.models import File
from providers.batch import rewrite_lines
from providers.batch_bedrock import ANTHROPIC_VERSION, BedrockRewriter
from providers.batch_vertex import VertexRewriter, decode_custom_id
from tenants.models import Organization
from tests.conftest import Tenant
from tests.providers.batch_files import MIB, PNG, image, openai_line, user
from tests.storage_kinds import PREFIX, StorageKind

LINES = 120  # Bedrock runs batch jobs of 100 records or more


def request_body(number: int, model: str, kind: str) -> dict[str, Any]:
    """Line ``number``'s chat body: a system prompt, a multi-turn chat with an image, sampling fields."""
    picture = f"gs://media-{number}/cat.png" if kind == "vertex" and number % 3 == 0 else f"data:image/png;base64,{PNG}"
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": f"You are assistant {number}."},
            user([{"type": "text", "text": f"Describe picture {number}."}, image(picture)]),
            {"role": "assistant", "content": "A picture."},
            user("Say more, in French: é, 漢字."),
        ],
        "max_tokens": 100 + number,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["END"],
    }
    if kind == "vertex":
        body["response_format"] = {"type": "json_object"}
        body["seed"] = number
    return body


def batch_file(kind: StorageKind) -> bytes:
    return b"".join(openai_line(request_body(n, kind.model, kind.kind), f"task/{n} é") for n in range(LINES))


def check_bedrock_record(number: int, record: dict[str, Any]) -> None:
    """One Bedrock batch record for a Claude model, as InvokeModel reads it."""
    assert record["recordId"] == f"task/{number} é"
    model_input = record["modelInput"]
    assert model_input["anthropic_version"] == ANTHROPIC_VERSION
    assert model_input["system"] == f"You are assistant {number}."
    assert (model_input["max_tokens"], model_input["temperature"], model_input["top_p"]) == (100 + number, 0.5, 0.9)
    assert model_input["stop_sequences"] == ["END"]
    assert [message["role"] for message in model_input["messages"]] == ["user", "assistant", "user"]
    first = model_input["messages"][0]["content"]
    assert first[0] == {"type": "text", "text": f"Describe picture {number}."}
    assert first[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    assert model_input["messages"][2]["content"] == [{"type": "text", "text": "Say more, in French: é, 漢字."}]
    assert "model" not in model_input  # the job names the model


def check_vertex_record(number: int, record: dict[str, Any]) -> None:
    """One Vertex batch line for Gemini: a GenerateContentRequest whose labels give the custom_id back."""
    request = record["request"]
    assert set(record) == {"request"}
    assert decode_custom_id(request["labels"]) == f"task/{number} é"
    assert all(key.startswith("custom_id_") for key in request["labels"])
    assert request["systemInstruction"] == {"parts": [{"text": f"You are assistant {number}."}]}
    assert [content["role"] for content in request["contents"]] == ["user", "model", "user"]
    picture = request["contents"][0]["parts"][1]
    if number % 3 == 0:
        assert picture == {"fileData": {"mimeType": "image/png", "fileUri": f"gs://media-{number}/cat.png"}}
    else:
        assert picture == {"inlineData": {"mimeType": "image/png", "data": PNG}}
    assert request["generationConfig"] == {
        "maxOutputTokens": 100 + number,
        "temperature": 0.5,
        "topP": 0.9,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "seed": number,
    }
    assert "model" not in request


CHECKS = {"bedrock": (check_bedrock_record, BedrockRewriter), "vertex": (check_vertex_record, VertexRewriter)}


@pytest.mark.django_db(transaction=True)
def test_the_sdk_uploads_an_openai_batch_file_stored_as_the_providers_batch_input(
    live_server: Any, tenant_a: Tenant, storage_kind: StorageKind
) -> None:
    check, rewriter = CHECKS[storage_kind.kind]
    content = batch_file(storage_kind)
    with OpenAI(
        base_url=f"{live_server.url}/v1",
        api_key=tenant_a.key,
        default_headers={"X-Provider-Account": storage_kind.name},
        max_retries=0,
    ) as sdk:
        created = sdk.files.create(file=("requests.jsonl", content, "application/jsonl"), purpose="batch")
        storage_uri = (created.model_extra or {})["storage_uri"]
        scheme = "s3" if storage_kind.kind == "bedrock" else "gs"
        assert storage_uri.startswith(f"{scheme}://") and storage_uri.endswith(f"/{PREFIX}org-a/{created.id}")
        stored = storage_kind.bucket.object_at(storage_uri)

        records = [json.loads(line) for line in stored.decode().splitlines()]
        assert len(records) == LINES
        for number, record in enumerate(records):
            check(number, record)
        assert stored == b"".join(rewrite_lines([content], rewriter(), max_line_bytes=MIB))

        # bytes, the quota, the checksum and the download are the stored file's, not the one sent.
        assert created.bytes == len(stored) != len(content)
        assert Organization.objects.get(pk=tenant_a.org.pk).used_bytes == len(stored)
        assert File.objects.get(public_id=created.id).sha256 == hashlib.sha256(stored).hexdigest()
        assert [file.id for file in sdk.files.list(purpose="batch")] == [created.id]
        assert sdk.files.list(purpose="assistants").data == []
        retrieved = sdk.files.retrieve(created.id)
        assert (retrieved.bytes, retrieved.filename, retrieved.purpose) == (len(stored), "requests.jsonl", "batch")
        assert (retrieved.model_extra or {})["storage_uri"] == storage_uri
        assert sdk.files.content(created.id).read() == stored

        assert sdk.files.delete(created.id).deleted is True
        assert (storage_kind.bucket.names(), storage_kind.bucket.unfinished()) == ([], [])
        assert Organization.objects.get(pk=tenant_a.org.pk).used_bytes == 0
        assert sdk.files.list().data == []
