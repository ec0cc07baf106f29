"""``bedrock`` and ``vertex`` through the gateway, against moto's S3 server and the GCS emulator.

What the upload headers do (the model for lines without one, Vertex's bucket allow-list and
region), refusals naming the line and the field, native lines stored unchanged, rewrites that grow
past the quota or the size limit, the settings, and "Test connection". Every test looks into the
bucket behind the gateway's back. The contract every kind keeps is in ``tests/test_contract.py``;
the official SDK's round trip of a batch file in ``tests/files_api/test_storage_batch_sdk.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from files_api.models import File
from providers.batch import Rewriter, rewrite_lines
from providers.batch_bedrock import BedrockRewriter
from providers.batch_vertex import VertexRewriter, decode_custom_id
from providers.vertex import VertexProvider
from tenants.forms import account_form_class
from tenants.models import Organization
from tests.conftest import Tenant
from tests.object_stores import MotoS3, ServerProcess, gcs_admin
from tests.providers.batch_files import MIB, image, openai_line, user
from tests.storage_kinds import (
    PREFIX,
    StorageKind,
    add_bedrock_account,
    add_vertex_account,
    gcs_view,
    parts_counter,
)

REWRITERS: dict[str, type[BedrockRewriter | VertexRewriter]] = {"bedrock": BedrockRewriter, "vertex": VertexRewriter}
NOVA = "us.amazon.nova-lite-v1:0"


def post(tenant: Tenant, account: str, content: bytes, *, purpose: str = "batch", **headers: str) -> Any:
    """Upload ``content`` as ``batch.jsonl`` to ``account``, with ``headers``."""
    data = {"purpose": purpose, "file": SimpleUploadedFile("batch.jsonl", content)}
    return tenant.client.post("/v1/files", data, format="multipart", headers={"X-Provider-Account": account, **headers})


def chat_line(custom_id: str, model: str | None = None, **body: Any) -> bytes:
    return openai_line({**({"model": model} if model else {}), "messages": [user("hi")], **body}, custom_id)


def stored(kind: StorageKind, response: Any) -> bytes:
    assert response.status_code == 200, response.json()
    return kind.bucket.object_at(response.json()["storage_uri"])


def expected(kind: str, content: bytes, *, default_model: str = "") -> bytes:
    """What the kind's rewriter makes of ``content`` on its own."""
    rewriter: Rewriter = REWRITERS[kind](default_model=default_model)
    return b"".join(rewrite_lines([content], rewriter, max_line_bytes=MIB))


def assert_nothing_left(tenant: Tenant, *kinds: StorageKind) -> None:
    org = Organization.objects.get(pk=tenant.org.pk)
    assert (org.used_bytes, org.reserved_bytes) == (0, 0)
    assert not org.reservations.exists()
    assert not File.objects.filter(organization=org).exists()
    for kind in kinds:
        assert (kind.bucket.names(), kind.bucket.unfinished()) == ([], [])


def assert_refused(response: Any, status: int, param: str | None, *fragments: str) -> None:
    assert response.status_code == status, response.json()
    error = response.json()["error"]
    assert error["param"] == param
    for fragment in fragments:
        assert fragment in error["message"]


# The model header.


@pytest.mark.parametrize("header", ["X-Provider-Model", "x-tfy-provider-model"])
def test_the_model_header_names_the_model_of_lines_without_one(
    tenant_a: Tenant, storage_kind: StorageKind, header: str
) -> None:
    content = chat_line("first") + chat_line("second")
    response = post(tenant_a, storage_kind.name, content, **{header: storage_kind.model})
    assert stored(storage_kind, response) == expected(storage_kind.kind, content, default_model=storage_kind.model)
    first = json.loads(stored(storage_kind, response).splitlines()[0])
    if storage_kind.kind == "bedrock":
        assert (first["recordId"], first["modelInput"]["anthropic_version"]) == ("first", "bedrock-2023-05-31")
    else:
        assert decode_custom_id(first["request"]["labels"]) == "first"


@pytest.mark.parametrize(
    ("model", "marker"), [(NOVA, "schemaVersion"), ("eu.anthropic.claude-sonnet-4", "anthropic_version")]
)
def test_on_bedrock_the_model_header_picks_the_body_family(
    tenant_a: Tenant, bedrock: StorageKind, model: str, marker: str
) -> None:
    records = stored(bedrock, post(tenant_a, bedrock.name, chat_line("a"), **{"X-Provider-Model": model}))
    assert marker in json.loads(records)["modelInput"]


def test_the_model_header_and_its_alias_must_agree(tenant_a: Tenant, storage_kind: StorageKind) -> None:
    differ = {"X-Provider-Model": storage_kind.model, "x-tfy-provider-model": NOVA}
    assert_refused(post(tenant_a, storage_kind.name, chat_line("b"), **differ), 400, "X-Provider-Model", "different")
    assert_nothing_left(tenant_a, storage_kind)
    same = {"X-Provider-Model": storage_kind.model, "x-tfy-provider-model": storage_kind.model}
    assert post(tenant_a, storage_kind.name, chat_line("a"), **same).status_code == 200


def test_without_a_model_anywhere_the_first_line_is_refused(tenant_a: Tenant, storage_kind: StorageKind) -> None:
    response = post(tenant_a, storage_kind.name, chat_line("a") + chat_line("b"))
    assert_refused(response, 400, "file", "line 1: body.model is missing and no X-Provider-Model header names a model")
    assert response.json()["error"]["code"] == "invalid_batch_file"
    assert_nothing_left(tenant_a, storage_kind)


def test_a_model_header_the_kind_cannot_rewrite_for_is_refused_at_the_first_line(
    tenant_a: Tenant, vertex: StorageKind
) -> None:
    response = post(tenant_a, vertex.name, chat_line("a"), **{"x-tfy-provider-model": "anthropic.claude-3-haiku"})
    assert_refused(
        response, 400, "file", "line 1: the model 'anthropic.claude-3-haiku' is not one filegate can rewrite"
    )
    assert_nothing_left(tenant_a, vertex)


@pytest.mark.parametrize("header", ["X-Provider-Model", "x-tfy-vertex-region", "x-tfy-vertex-storage-bucket-name"])
@pytest.mark.parametrize("value", ["two words", "x" * 257, "modèle", "tab\there"])
def test_malformed_header_values_are_refused_naming_the_header(
    tenant_a: Tenant, vertex: StorageKind, header: str, value: str
) -> None:
    assert_refused(post(tenant_a, vertex.name, chat_line("a", vertex.model), **{header: value}), 400, header)
    assert_nothing_left(tenant_a, vertex)


def test_kinds_that_do_not_rewrite_ignore_the_model_header(tenant_a: Tenant) -> None:
    content = chat_line("a", "gpt-4o-mini")
    response = post(tenant_a, tenant_a.account.name, content, **{"X-Provider-Model": "gemini-2.0-flash"})
    assert response.status_code == 200, response.json()
    record = File.objects.get(public_id=response.json()["id"])
    assert b"".join(tenant_a.client.get(f"/v1/files/{record.public_id}/content").streaming_content) == content


# Vertex: the bucket and the region.


def test_vertex_stores_in_an_allowed_bucket_the_client_picks(
    tenant_a: Tenant, vertex: StorageKind, gcs_emulator: ServerProcess, gcs_front: Any, gcs_bucket: str
) -> None:
    other = f"{gcs_bucket}-b"
    admin = gcs_admin(gcs_emulator.url)
    other_bucket = gcs_view(admin.create_bucket(other))
    add_vertex_account(tenant_a, gcs_front.url, gcs_bucket, name="picky", allowed_buckets=f"spare-bucket, {other}")
    content = chat_line("a", vertex.model)
    response = post(tenant_a, "picky", content, **{"x-tfy-vertex-storage-bucket-name": other})
    file_id = response.json()["id"]
    assert response.json()["storage_uri"] == f"gs://{other}/{PREFIX}org-a/{file_id}"
    assert (vertex.bucket.names(), other_bucket.names()) == ([], [f"{PREFIX}org-a/{file_id}"])
    assert other_bucket.object_at(response.json()["storage_uri"]) == expected("vertex", content)
    download = tenant_a.client.get(f"/v1/files/{file_id}/content")
    assert b"".join(download.streaming_content) == expected("vertex", content)
    assert tenant_a.client.delete(f"/v1/files/{file_id}").json()["deleted"] is True
    assert other_bucket.names() == []
    assert Organization.objects.get(pk=tenant_a.org.pk).used_bytes == 0


def test_buckets_the_account_does_not_allow_are_refused_and_its_own_is_taken(
    tenant_a: Tenant, vertex: StorageKind, gcs_front: Any, gcs_bucket: str
) -> None:
    add_vertex_account(tenant_a, gcs_front.url, gcs_bucket, name="picky", allowed_buckets="spare-bucket")
    content = chat_line("a", vertex.model)
    for name in ("not-allowed-bucket", "gs://spare-bucket", f"{gcs_bucket}/../x", gcs_bucket.upper()):
        response = post(tenant_a, "picky", content, **{"x-tfy-vertex-storage-bucket-name": name})
        assert_refused(response, 400, "x-tfy-vertex-storage-bucket-name", "is not one this account allows")
    assert_nothing_left(tenant_a, vertex)
    own = post(tenant_a, "picky", content, **{"x-tfy-vertex-storage-bucket-name": gcs_bucket})
    assert own.json()["storage_uri"] == f"gs://{gcs_bucket}/{PREFIX}org-a/{own.json()['id']}"


def test_vertex_takes_a_region_that_is_its_location_and_refuses_another(
    tenant_a: Tenant, vertex: StorageKind, gcs_front: Any, gcs_bucket: str
) -> None:
    add_vertex_account(tenant_a, gcs_front.url, gcs_bucket, name="eu", location="europe-west4")
    content = chat_line("a", vertex.model)
    response = post(tenant_a, "eu", content, **{"x-tfy-vertex-region": "us-central1"})
    assert_refused(response, 400, "x-tfy-vertex-region", "for batch jobs in europe-west4, not us-central1")
    assert_nothing_left(tenant_a, vertex)
    # The account's own location (in any case), and any region on an account without a location.
    for account, region in (("eu", "europe-west4"), ("eu", "EUROPE-WEST4"), (vertex.name, "us-central1")):
        assert post(tenant_a, account, content, **{"x-tfy-vertex-region": region}).status_code == 200
    assert len(vertex.bucket.names()) == 3


@pytest.mark.parametrize("header", ["x-tfy-vertex-region", "x-tfy-vertex-storage-bucket-name"])
def test_vertex_headers_are_refused_by_the_other_kinds(tenant_a: Tenant, bedrock: StorageKind, header: str) -> None:
    for account in (bedrock.name, tenant_a.account.name):
        response = post(tenant_a, account, chat_line("a", bedrock.model), **{header: "europe-west4"})
        assert_refused(response, 400, header, "applies to Vertex accounts only")
    assert_nothing_left(tenant_a, bedrock)


# What the rewriting refuses and what it keeps.

REFUSALS = [
    (
        "bedrock",
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        "body.tools is not supported for Claude on Bedrock",
    ),
    (
        "bedrock",
        {"messages": [user([image("https://example.com/a.png")])]},
        "body.messages[0].content[0].image_url.url: Claude on Bedrock cannot fetch https image URLs",
    ),
    ("vertex", {"logit_bias": {"1": 2}}, "body.logit_bias is not supported for Gemini on Vertex"),
    (
        "vertex",
        {"messages": [user([{"type": "input_audio", "input_audio": {}}])]},
        "body.messages[0].content[0].type 'input_audio' is not supported",
    ),
]


@pytest.mark.parametrize(("kind_name", "body", "message"), REFUSALS)
def test_a_line_that_cannot_be_rewritten_is_refused_naming_the_line_and_field(
    request: pytest.FixtureRequest, tenant_a: Tenant, kind_name: str, body: dict[str, Any], message: str
) -> None:
    kind: StorageKind = request.getfixturevalue(kind_name)
    bad = openai_line({"model": kind.model, "messages": [user("hi")], **body}, "bad")
    response = post(tenant_a, kind.name, chat_line("a", kind.model) + chat_line("b", kind.model) + bad)
    assert_refused(response, 400, "file", f"Invalid batch file: line 3: {message}")
    assert_nothing_left(tenant_a, kind)


NATIVE = {
    "bedrock": b'{"recordId": "native-1", "modelInput": {"anthropic_version": "bedrock-2023-05-31", '
    b'"max_tokens": 10,  "messages": [{"role": "user", "content": "hi"}]}}',
    "vertex": b'{"request": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],  "labels": {"team": "a"}}}',
}


def test_native_lines_are_stored_byte_for_byte_beside_rewritten_ones(
    tenant_a: Tenant, storage_kind: StorageKind
) -> None:
    native = NATIVE[storage_kind.kind]
    other_native = native.replace(b"native-1", b"native-2")  # Bedrock's record ids must differ
    rewritten = chat_line("openai-1", storage_kind.model)
    content = native + b"\r\n" + rewritten + other_native + b"\n"
    lines = stored(storage_kind, post(tenant_a, storage_kind.name, content)).split(b"\n")
    assert lines == [native, expected(storage_kind.kind, rewritten).rstrip(b"\n"), other_native, b""]


def test_native_lines_are_still_refused_where_the_kind_stores_batch_files_as_they_are(tenant_a: Tenant) -> None:
    """Bedrock's lines pass on Bedrock accounts only: the OpenAI check of other kinds is not weakened."""
    response = post(tenant_a, tenant_a.account.name, NATIVE["bedrock"] + b"\n")
    assert_refused(response, 400, "file", "line 1: 'custom_id' must be a non-empty string")


def test_files_of_other_purposes_are_stored_as_they_are(tenant_a: Tenant, storage_kind: StorageKind) -> None:
    content = b"not a batch file at all\n" + NATIVE["bedrock"]
    assert stored(storage_kind, post(tenant_a, storage_kind.name, content, purpose="user_data")) == content


def test_a_refused_line_near_the_end_of_a_large_file_leaves_no_object(
    request: pytest.FixtureRequest, tenant_a: Tenant, storage_kind: StorageKind
) -> None:
    """By the refusal, S3 had parts of a multipart upload and GCS chunks of a resumable one: all are gone."""
    count = 10_000
    line = chat_line("id-0000", storage_kind.model, messages=[user("word " * 400)])
    # Over two 8 MiB parts: the store holds at most two, so the first had gone out when the refusal came.
    assert len(expected(storage_kind.kind, line)) * count > 2 * 8 * MIB
    lines = b"".join(line.replace(b"id-0000", b"id-%04d" % n) for n in range(count)) + b'{"custom_id": "late"}\n'
    parts_sent = parts_counter(request, storage_kind)
    response = post(tenant_a, storage_kind.name, lines)
    assert_refused(response, 400, "file", f"line {count + 1}: 'method' must be \"POST\"")
    assert parts_sent() >= 1
    assert_nothing_left(tenant_a, storage_kind)


def test_a_file_whose_object_is_already_gone_is_deleted_and_released_once(
    tenant_a: Tenant, storage_kind: StorageKind
) -> None:
    response = post(tenant_a, storage_kind.name, b"abc", purpose="user_data")
    file_id = response.json()["id"]
    storage_kind.bucket.remove(storage_kind.bucket.names()[0])  # removed behind the gateway's back
    assert_refused(tenant_a.client.get(f"/v1/files/{file_id}/content"), 404, "id")
    assert tenant_a.client.delete(f"/v1/files/{file_id}").json() == {"id": file_id, "object": "file", "deleted": True}
    assert_refused(tenant_a.client.delete(f"/v1/files/{file_id}"), 404, "id")
    assert File.objects.get(public_id=file_id).deleted_at is not None
    org = Organization.objects.get(pk=tenant_a.org.pk)
    assert (org.used_bytes, org.reserved_bytes) == (0, 0)


# The stored size against the quota and the size limit.


def growing_lines(model: str, count: int = 50) -> bytes:
    """Compact OpenAI lines that both kinds rewrite into more bytes (typed content blocks, base32 labels)."""
    messages = [{"role": "user" if n % 2 == 0 else "assistant", "content": "ok"} for n in range(9)]
    return b"".join(
        json.dumps(
            {
                "custom_id": f"request-{n:04d}-" + "q" * 60,
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": model, "messages": messages},
            },
            separators=(",", ":"),
        ).encode()
        + b"\n"
        for n in range(count)
    )


def test_a_rewrite_that_grows_past_the_quota_is_refused_and_one_that_fits_is_charged_its_stored_size(
    tenant_a: Tenant, storage_kind: StorageKind
) -> None:
    content = growing_lines(storage_kind.model)
    stored_size = len(expected(storage_kind.kind, content))
    assert stored_size - 1 > len(content) + 2048  # the request's hold (its Content-Length) fits below the quota
    Organization.objects.filter(pk=tenant_a.org.pk).update(storage_quota_bytes=stored_size - 1)
    response = post(tenant_a, storage_kind.name, content)
    assert response.status_code == 403, response.json()
    assert response.json()["error"]["code"] == "storage_quota_exceeded"
    assert f"This file is {stored_size} bytes as stored" in response.json()["error"]["message"]
    assert_nothing_left(tenant_a, storage_kind)  # the object that was stored is deleted again

    Organization.objects.filter(pk=tenant_a.org.pk).update(storage_quota_bytes=stored_size)
    assert stored(storage_kind, post(tenant_a, storage_kind.name, content)) == expected(storage_kind.kind, content)
    org = Organization.objects.get(pk=tenant_a.org.pk)
    assert (org.used_bytes, org.reserved_bytes) == (stored_size, 0)
    assert File.objects.get(organization=org).bytes == stored_size


def test_a_rewrite_that_grows_past_the_size_limit_is_refused(tenant_a: Tenant, storage_kind: StorageKind) -> None:
    content = growing_lines(storage_kind.model)
    stored_size = len(expected(storage_kind.kind, content))
    limit = (len(content) + stored_size) // 2  # the file as sent fits, as stored it does not
    Organization.objects.filter(pk=tenant_a.org.pk).update(batch_max_size_bytes=limit)
    response = post(tenant_a, storage_kind.name, content)
    assert_refused(response, 413, "file", f"Batch files may be at most {limit} bytes", "As rewritten for the provider")
    assert response.json()["error"]["code"] == "file_too_large"
    assert_nothing_left(tenant_a, storage_kind)


# Settings and "Test connection".


def test_secrets_are_kept_encrypted_and_endpoints_are_set_by_operators_only(
    tenant_a: Tenant, bedrock: StorageKind, vertex: StorageKind, service_account_key: Any
) -> None:
    assert "aws_secret_access_key" not in bedrock.account.settings
    assert "aws_secret_access_key" in bedrock.account.get_secrets()
    account = add_vertex_account(
        tenant_a, "http://127.0.0.1:1", "some-bucket", name="keyed", credentials_file=service_account_key.json("x")
    )
    assert "credentials_file" not in account.settings and "credentials_file" in account.get_secrets()
    org_admin_form, operator_form = account_form_class(is_operator=False)(), account_form_class(is_operator=True)()
    for kind in ("bedrock", "vertex"):
        assert org_admin_form.fields[f"{kind}__endpoint_url"].disabled
        assert not operator_form.fields[f"{kind}__endpoint_url"].disabled
        assert not org_admin_form.fields[f"{kind}__bucket"].disabled


@pytest.mark.parametrize(
    "config", [{"bucket": "Not_A_Bucket"}, {"bucket": "fine-bucket", "allowed_buckets": "ok-one, bad..dots"}]
)
def test_a_vertex_account_with_a_malformed_bucket_name_cannot_be_built(config: dict[str, str]) -> None:
    with pytest.raises(ImproperlyConfigured, match="is not a Cloud Storage bucket name"):
        VertexProvider(endpoint_url="http://127.0.0.1:1", **config)


def messages_of(response: Any) -> list[tuple[str, str]]:
    return [(message.level_tag, str(message)) for message in get_messages(response.wsgi_request)]


def test_connection_proves_the_buckets_writable_and_leaves_nothing(
    admin_client: Client, tenant_a: Tenant, bedrock: StorageKind, vertex: StorageKind, moto_s3: MotoS3, s3_bucket: str
) -> None:
    broken = add_bedrock_account(tenant_a, moto_s3, s3_bucket, name="broken", aws_secret_access_key="wrong-secret")
    missing = add_vertex_account(
        tenant_a,
        vertex.account.settings["endpoint_url"],
        vertex.account.settings["bucket"],
        name="missing",
        allowed_buckets="no-such-bucket-here",
    )
    accounts = [bedrock.account, vertex.account, broken, missing]
    response = admin_client.post(
        "/admin/tenants/provideraccount/",
        {"action": "test_connection", "_selected_action": [account.pk for account in accounts]},
        follow=True,
    )
    assert sorted(messages_of(response)) == [
        (
            "error",
            "org-a/broken (bedrock): The S3 store refused this provider account's credentials "
            "(SignatureDoesNotMatch); an organization admin must update the account.",
        ),
        (
            "error",
            "org-a/missing (vertex): Bucket no-such-bucket-here: The GCS store's bucket or object does not exist.",
        ),
        ("success", "org-a/bedrock (bedrock): connection OK."),
        ("success", "org-a/vertex (vertex): connection OK."),
    ]
    assert (bedrock.bucket.names(), bedrock.bucket.unfinished(), vertex.bucket.names()) == ([], [], [])
