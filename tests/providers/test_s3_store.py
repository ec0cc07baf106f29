"""``S3Store`` against moto's S3 server: what is sent and kept, refusals midway, paging, error mapping.

The contract every store keeps (bytes, open, delete, refused saves, 200 MiB in bounded memory) is
in ``test_stores.py``.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.errors import PayloadTooLarge, UpstreamError, UpstreamRejected
from providers import s3
from providers.s3 import S3Store
from providers.stores import PART_SIZE
from tests.object_stores import (
    MIB,
    MotoS3,
    allow,
    deny,
    numbered_chunks,
    peak_memory,
    refused_after,
    store_calls,
)

KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/0b6a0d1e-filegate"


def record_calls(store: S3Store, operation: str = "*") -> list[tuple[str, dict[str, Any]]]:
    """Every call the store's client makes from now on: (operation name, parameters)."""
    calls: list[tuple[str, dict[str, Any]]] = []

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        calls.append((model.name, params))

    store.client.meta.events.register(f"provide-client-params.s3.{operation}", record)
    return calls


def part_sizes(admin: Any, bucket: str, key: str) -> list[int]:
    """The sizes of the parts the object was assembled from, as S3 kept them (one entry if not multipart)."""
    count = admin.head_object(Bucket=bucket, Key=key, PartNumber=1).get("PartsCount", 1)
    return [admin.head_object(Bucket=bucket, Key=key, PartNumber=n)["ContentLength"] for n in range(1, count + 1)]


@pytest.fixture
def fresh_session() -> Iterator[None]:
    """Stores share one boto3 session, which keeps credentials found by the default chain: start without."""
    s3._shared_session.cache_clear()
    yield
    s3._shared_session.cache_clear()


def test_non_final_parts_are_8_mib_as_s3_keeps_them(make_s3_store: Callable[..., S3Store], s3_admin: Any) -> None:
    store = make_s3_store()
    calls = record_calls(store)
    size = 2 * PART_SIZE + 3 * MIB + 5
    store.save("org-a/file-1", numbered_chunks(size, 64 * 1024), content_type="application/octet-stream")
    assert [name for name, _ in calls] == [
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPart",
        "UploadPart",
        "CompleteMultipartUpload",
    ]
    assert part_sizes(s3_admin, store.bucket, "org-a/file-1") == [PART_SIZE, PART_SIZE, 3 * MIB + 5]


@pytest.mark.parametrize(
    ("size", "parts"),
    [(PART_SIZE, [PART_SIZE]), (2 * PART_SIZE, [PART_SIZE, PART_SIZE]), (PART_SIZE + 1, [PART_SIZE, 1])],
)
def test_a_file_ending_on_a_part_boundary_gets_no_empty_part(
    make_s3_store: Callable[..., S3Store], s3_admin: Any, size: int, parts: list[int]
) -> None:
    store = make_s3_store()
    calls = record_calls(store)
    assert store.save("org-a/file-1", numbered_chunks(size), content_type="application/octet-stream") == size
    assert part_sizes(s3_admin, store.bucket, "org-a/file-1") == parts
    sent = [params for name, params in calls if name == "UploadPart"]
    assert [params["PartNumber"] for params in sent] == list(range(1, len(parts) + 1))
    assert {params["ChecksumAlgorithm"] for params in sent} == {s3.CHECKSUM}
    completed = next(params for name, params in calls if name == "CompleteMultipartUpload")
    assert all(part[s3.CHECKSUM_MEMBER] for part in completed["MultipartUpload"]["Parts"])
    body = s3_admin.get_object(Bucket=store.bucket, Key="org-a/file-1")["Body"].read()
    assert body == b"".join(numbered_chunks(size))


def test_an_empty_file_is_an_empty_object(make_s3_store: Callable[..., S3Store], s3_admin: Any) -> None:
    store = make_s3_store()
    assert store.save("org-a/empty", iter(()), content_type="text/plain") == 0
    assert s3_admin.head_object(Bucket=store.bucket, Key="org-a/empty")["ContentLength"] == 0


def test_a_large_save_holds_one_part_buffer(make_s3_store: Callable[..., S3Store]) -> None:
    store = make_s3_store()
    store.save("org-a/warm", numbered_chunks(PART_SIZE + 1), content_type="text/plain")  # botocore's models, once
    with peak_memory() as peak:
        store.save("org-a/big", numbered_chunks(6 * PART_SIZE), content_type="application/octet-stream")
    # The part buffer, the chunk being copied in, botocore's 1 MiB checksum reads; boto3's managed
    # transfer, which reads a fresh part while the last is sent, peaked at 18 MiB here.
    assert peak[0] < PART_SIZE + 4 * MIB, f"save peak {peak[0] / MIB:.1f} MiB"


def test_a_part_body_reads_and_rewinds_like_a_file() -> None:
    body = s3.PartBody(memoryview(bytearray(b"0123456789"))[:8])
    assert (body.read(3), body.tell()) == (b"012", 3)
    assert body.read() == b"34567"
    assert body.read(4) == b""
    assert (body.seek(0), body.read(2)) == (0, b"01")
    assert (body.seek(-1, io.SEEK_END), body.read()) == (7, b"7")
    assert body.seek(2, io.SEEK_CUR) == 10 and body.read(1) == b""
    with pytest.raises(ValueError, match="negative"):
        body.seek(-1)


def test_a_file_under_one_part_is_a_single_put(make_s3_store: Callable[..., S3Store], s3_admin: Any) -> None:
    store = make_s3_store()
    calls = record_calls(store)
    store.save("org-a/file-1", numbered_chunks(PART_SIZE - 1), content_type="application/octet-stream")
    assert [name for name, _ in calls] == ["PutObject"]
    assert part_sizes(s3_admin, store.bucket, "org-a/file-1") == [PART_SIZE - 1]


@pytest.mark.parametrize(
    ("encryption", "key_id"),
    [("AES256", ""), ("aws:kms", KMS_KEY)],
)
@pytest.mark.parametrize("size", [10, PART_SIZE + 10])
def test_objects_are_stored_with_the_media_type_and_server_side_encryption(
    make_s3_store: Callable[..., S3Store], s3_admin: Any, encryption: str, key_id: str, size: int
) -> None:
    store = make_s3_store(server_side_encryption=encryption, kms_key_id=key_id)
    store.save("org-a/good", numbered_chunks(size), content_type="application/jsonl")
    store.save("org-a/odd", numbered_chunks(size), content_type="text/html\r\nX-Injected: 1")
    good = s3_admin.head_object(Bucket=store.bucket, Key="org-a/good")
    odd = s3_admin.head_object(Bucket=store.bucket, Key="org-a/odd")
    assert (good["ContentType"], odd["ContentType"]) == ("application/jsonl", "application/octet-stream")
    for head in (good, odd):
        assert head["ServerSideEncryption"] == encryption
        assert head.get("SSEKMSKeyId", "") == key_id


def test_midway_the_refused_upload_was_open_with_its_first_parts(
    make_s3_store: Callable[..., S3Store], s3_admin: Any
) -> None:
    store = make_s3_store()
    midway: list[list[int]] = []

    def look() -> None:
        uploads = s3_admin.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
        assert [upload["Key"] for upload in uploads] == ["org-a/cut"]
        parts = s3_admin.list_parts(Bucket=store.bucket, Key="org-a/cut", UploadId=uploads[0]["UploadId"])
        midway.append([part["Size"] for part in parts.get("Parts", [])])

    refusal = PayloadTooLarge("too large", param="file")
    with pytest.raises(PayloadTooLarge):
        store.save(
            "org-a/cut",
            refused_after(numbered_chunks(64 * MIB), 3 * PART_SIZE + MIB, refusal, on_refuse=look),
            content_type="application/octet-stream",
        )
    # Parts are sent one at a time, each before the next is read: parts 1 to 3 were in S3 when the 4th was refused.
    assert midway == [[PART_SIZE, PART_SIZE, PART_SIZE]]
    assert s3_admin.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
    assert s3_admin.list_objects_v2(Bucket=store.bucket).get("Contents", []) == []


def test_an_upload_s3_refuses_midway_leaves_no_object_and_no_upload(
    moto_s3: MotoS3, make_s3_store: Callable[..., S3Store], s3_admin: Any
) -> None:
    key_id, secret = moto_s3.new_user("uploader-refused-midway", allow("s3:*"))
    store = make_s3_store(aws_access_key_id=key_id, aws_secret_access_key=secret)

    def chunks() -> Iterator[bytes]:
        for number, chunk in enumerate(numbered_chunks(40 * MIB)):
            if number == 2 * PART_SIZE // MIB + 1:
                # The account loses the right to write while its upload is running.
                moto_s3.client("iam").put_user_policy(
                    UserName="uploader-refused-midway",
                    PolicyName="deny",
                    PolicyDocument=json.dumps(deny("s3:PutObject")),
                )
            yield chunk

    with pytest.raises(UpstreamRejected) as raised:
        store.save("org-a/file-1", chunks(), content_type="application/octet-stream")
    assert (raised.value.status_code, raised.value.code) == (403, "upstream_authentication_failed")
    assert s3_admin.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
    assert s3_admin.list_objects_v2(Bucket=store.bucket).get("Contents", []) == []


def test_iter_objects_pages_past_1000_keys(make_s3_store: Callable[..., S3Store], s3_admin: Any) -> None:
    store = make_s3_store(prefix="tenants/a")
    names = [f"tenants/a/org-a/file-{number:05d}" for number in range(1001)] + ["tenants/a/org-b/x", "elsewhere/y"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda name: s3_admin.put_object(Bucket=store.bucket, Key=name, Body=b"12345"), names))
    calls = record_calls(store, "ListObjectsV2")
    objects = store.iter_objects("org-a/")
    first = next(objects)
    assert len(calls) == 1  # pages are fetched as they are needed
    rest = list(objects)
    assert len(calls) == 2
    assert [(item.key, item.size) for item in [first, *rest]] == [
        (f"org-a/file-{number:05d}", 5) for number in range(1001)
    ]


def test_check_probes_under_the_prefix_and_leaves_nothing(make_s3_store: Callable[..., S3Store], s3_admin: Any) -> None:
    store = make_s3_store(prefix="tenants/a")
    calls = record_calls(store)
    store.check()
    written = [params["Key"] for name, params in calls if name == "PutObject"]
    assert len(written) == 1 and written[0].startswith("tenants/a/filegate-check/")
    assert [name for name, _ in calls] == ["PutObject", "GetObject", "HeadObject", "DeleteObject"]
    assert s3_admin.list_objects_v2(Bucket=store.bucket).get("Contents", []) == []


def test_check_of_a_bucket_that_does_not_exist_is_an_upstream_error(make_s3_store: Callable[..., S3Store]) -> None:
    store = make_s3_store(bucket="filegate-no-such-bucket")
    with pytest.raises(UpstreamError, match="bucket does not exist"):
        store.check()


@pytest.mark.parametrize("key_id", ["AKIAFILEGATEUNKNOWN1", "admin"])
def test_refused_credentials_are_a_403_that_quotes_no_secret(
    moto_s3: MotoS3, make_s3_store: Callable[..., S3Store], caplog: pytest.LogCaptureFixture, key_id: str
) -> None:
    secret = "filegate-wrong-secret-0123456789abcdef"
    key_id = moto_s3.access_key_id if key_id == "admin" else key_id  # a known key with a wrong secret
    store = make_s3_store(aws_access_key_id=key_id, aws_secret_access_key=secret)
    caplog.set_level(logging.DEBUG, logger="filegate")
    for operation in store_calls(store):
        with pytest.raises(UpstreamRejected) as raised:
            operation()
        assert (raised.value.status_code, raised.value.code) == (403, "upstream_authentication_failed")
        assert secret not in raised.value.message and key_id not in raised.value.message
    assert secret not in caplog.text and key_id not in caplog.text


def test_without_keys_the_default_credential_chain_is_asked(
    fresh_session: None, make_s3_store: Callable[..., S3Store], moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_s3.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_s3.secret_access_key)
    store = make_s3_store(aws_access_key_id="", aws_secret_access_key="")
    assert store.save("org-a/f", iter([b"chain"]), content_type="text/plain") == 5


def test_without_keys_and_no_credentials_anywhere_it_is_a_403(
    fresh_session: None, make_s3_store: Callable[..., S3Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to ask, and no network
    store = make_s3_store(aws_access_key_id="", aws_secret_access_key="")
    with pytest.raises(UpstreamRejected, match="no usable AWS credentials") as raised:
        store.open("org-a/f")
    assert raised.value.code == "upstream_authentication_failed"


@pytest.mark.parametrize(
    "config",
    [
        {"bucket": ""},
        {"aws_secret_access_key": ""},
        {"aws_access_key_id": ""},
        {"server_side_encryption": "aws:fancy"},
        {"server_side_encryption": "AES256", "kms_key_id": KMS_KEY},
        {"prefix": "../escape"},
    ],
)
def test_inconsistent_settings_are_refused_without_quoting_the_secret(
    make_s3_store: Callable[..., S3Store], config: dict[str, str]
) -> None:
    with pytest.raises(ImproperlyConfigured) as raised:
        make_s3_store(**{"aws_secret_access_key": "filegate-secret-never-shown", **config})
    assert "filegate-secret-never-shown" not in str(raised.value)
