"""``GCSStore`` against the gcp-storage-emulator, mostly through ``GCSFront`` (see ``tests/object_stores.py``):
resumable chunks, abandoned sessions, paging, credentials and error mapping.

The contract every store keeps (bytes, open, delete, refused saves, 200 MiB in bounded memory) is
in ``test_stores.py``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from google.cloud import storage

from config.errors import PayloadTooLarge, UpstreamError, UpstreamRejected
from providers.gcs import GCSStore
from providers.stores import PART_SIZE
from tests.object_stores import (
    MIB,
    GCSFront,
    SeenRequest,
    ServiceAccountKey,
    collect_failed_call,
    new_service_account_key,
    numbered_chunks,
    refused_after,
    store_calls,
)

UPLOADS = "/upload/storage/v1/b/"
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\*|\d+)")


def chunk_spans(front: GCSFront) -> list[tuple[int, str]]:
    """The resumable chunks the front saw: (bytes in the chunk, total as declared: ``*`` until the last)."""
    spans = []
    for seen in front.requests("PUT", UPLOADS):
        match = CONTENT_RANGE.fullmatch(seen.content_range)
        assert match, seen.content_range
        start, end, total = match.groups()
        spans.append((int(end) - int(start) + 1, total))
    return spans


def listings(front: GCSFront) -> list[SeenRequest]:
    return [seen for seen in front.requests("GET", "/storage/v1/b/") if seen.path.endswith("/o")]


def test_resumable_chunks_are_8_mib_and_the_last_one_finalises(
    make_gcs_store: Callable[..., GCSStore], gcs_front: GCSFront, gcs_admin_bucket: storage.Bucket
) -> None:
    store = make_gcs_store()
    size = 2 * PART_SIZE + 3 * MIB + 5
    store.save("org-a/file-1", numbered_chunks(size, 64 * 1024), content_type="application/jsonl")
    assert chunk_spans(gcs_front) == [(PART_SIZE, "*"), (PART_SIZE, "*"), (3 * MIB + 5, str(size))]
    [initiation] = gcs_front.requests("POST", UPLOADS)
    assert initiation.query["uploadType"] == ["resumable"]
    blob = gcs_admin_bucket.get_blob("org-a/file-1")
    assert (blob.size, blob.content_type) == (size, "application/jsonl")


def test_an_odd_media_type_is_stored_as_octet_stream(
    make_gcs_store: Callable[..., GCSStore], gcs_admin_bucket: storage.Bucket
) -> None:
    make_gcs_store().save("org-a/f", iter([b"x"]), content_type="text/html\r\nX-Injected: 1")
    assert gcs_admin_bucket.get_blob("org-a/f").content_type == "application/octet-stream"


def test_a_refused_upload_is_never_finalised_and_leaves_no_object(
    make_gcs_store: Callable[..., GCSStore], gcs_front: GCSFront, gcs_admin_bucket: storage.Bucket
) -> None:
    store = make_gcs_store()
    midway: list[list[tuple[int, str]]] = []
    refusal = PayloadTooLarge("too large", param="file")
    chunks = refused_after(
        numbered_chunks(64 * MIB), 2 * PART_SIZE + MIB, refusal, on_refuse=lambda: midway.append(chunk_spans(gcs_front))
    )
    with pytest.raises(PayloadTooLarge) as raised:
        store.save("org-a/cut", chunks, content_type="application/octet-stream")
    assert raised.value is refusal
    assert midway == [[(PART_SIZE, "*"), (PART_SIZE, "*")]]  # two chunks were with GCS already
    del raised
    collect_failed_call(refusal)  # a collected BlobWriter would send its last chunk: not this one
    # Nothing more was sent: no chunk declaring the total, which is what would finalise the object.
    assert chunk_spans(gcs_front) == [(PART_SIZE, "*"), (PART_SIZE, "*")]
    assert list(gcs_admin_bucket.list_blobs()) == []


def test_a_refusal_before_the_first_chunk_sends_nothing(
    make_gcs_store: Callable[..., GCSStore], gcs_front: GCSFront, gcs_admin_bucket: storage.Bucket
) -> None:
    refusal = PayloadTooLarge("too large", param="file")
    with pytest.raises(PayloadTooLarge):
        make_gcs_store().save(
            "org-a/cut", refused_after(numbered_chunks(4 * MIB), MIB, refusal), content_type="text/plain"
        )
    assert gcs_front.seen == []
    assert list(gcs_admin_bucket.list_blobs()) == []


def test_an_upload_gcs_fails_midway_is_cancelled_and_leaves_no_object(
    make_gcs_store: Callable[..., GCSStore], gcs_front: GCSFront, gcs_admin_bucket: storage.Bucket, settings: Any
) -> None:
    settings.UPSTREAM_RETRIES = 0
    gcs_front.fail(lambda method, path, query: method == "PUT" and "upload_id" in query, 503, passes=2)
    store = make_gcs_store()
    with pytest.raises(UpstreamError, match=r"HTTP 503") as raised:
        store.save("org-a/broken", numbered_chunks(40 * MIB), content_type="application/octet-stream")
    collect_failed_call(raised.value)
    assert [seen.status for seen in gcs_front.requests("PUT", UPLOADS)] == [308, 308, 503]
    assert [total for _, total in chunk_spans(gcs_front)] == ["*", "*", "*"]
    assert list(gcs_admin_bucket.list_blobs()) == []


def test_transient_failures_are_retried_within_the_connect_timeout(
    make_gcs_store: Callable[..., GCSStore], gcs_front: GCSFront, gcs_admin_bucket: storage.Bucket, settings: Any
) -> None:
    settings.UPSTREAM_RETRIES = 2
    calls = {"count": 0}

    def once(method: str, path: str, query: dict[str, list[str]]) -> bool:
        is_chunk = method == "PUT" and "upload_id" in query
        calls["count"] += is_chunk
        return is_chunk and calls["count"] == 2

    gcs_front.fail(once, 503)
    size = 2 * PART_SIZE + 1
    assert make_gcs_store().save("org-a/f", numbered_chunks(size), content_type="text/plain") == size
    assert [seen.status for seen in gcs_front.requests("PUT", UPLOADS)][:3] == [308, 503, 308]
    assert gcs_admin_bucket.get_blob("org-a/f").size == size


def test_iter_objects_pages_past_1000_names(
    make_gcs_store: Callable[..., GCSStore], gcs_front: GCSFront, gcs_admin_bucket: storage.Bucket
) -> None:
    names = [f"tenants/a/org-a/file-{number:05d}" for number in range(1001)] + ["tenants/a/org-b/x", "elsewhere/y"]
    for name in names:
        gcs_admin_bucket.blob(name).upload_from_string(b"12345")
    store = make_gcs_store(prefix="tenants/a")
    objects = store.iter_objects("org-a/")
    first = next(objects)
    assert len(listings(gcs_front)) == 1  # pages are fetched as they are needed
    rest = list(objects)
    assert [("pageToken" in seen.query, seen.query["maxResults"]) for seen in listings(gcs_front)] == [
        (False, ["1000"]),
        (True, ["1000"]),
    ]
    assert [(item.key, item.size) for item in [first, *rest]] == [
        (f"org-a/file-{number:05d}", 5) for number in range(1001)
    ]


def test_check_probes_under_the_prefix_and_leaves_nothing(
    make_gcs_store: Callable[..., GCSStore], gcs_front: GCSFront, gcs_admin_bucket: storage.Bucket
) -> None:
    make_gcs_store(prefix="tenants/a").check()
    names = {seen.path.split("/o/", 1)[1] for seen in gcs_front.seen if "/o/" in seen.path}
    [name] = names  # read back (metadata, then media) and deleted: one probe object
    assert name.startswith("tenants/a/filegate-check/")
    assert [seen.method for seen in gcs_front.seen if "/o/" in seen.path] == ["GET", "GET", "DELETE"]
    assert list(gcs_admin_bucket.list_blobs()) == []


def test_check_of_a_bucket_that_does_not_exist_is_an_upstream_error(
    make_gcs_store: Callable[..., GCSStore],
) -> None:
    with pytest.raises(UpstreamError, match="does not exist"):
        make_gcs_store(bucket="filegate-no-such-bucket").check()


def test_a_service_account_key_is_exchanged_for_a_token_that_every_call_carries(
    make_gcs_store: Callable[..., GCSStore],
    gcs_front: GCSFront,
    gcs_admin_bucket: storage.Bucket,
    service_account_key: ServiceAccountKey,
) -> None:
    gcs_front.public_keys[service_account_key.email] = service_account_key.private_key.public_key()
    store = make_gcs_store(credentials_file=service_account_key.json(gcs_front.token_uri))
    store.save("org-a/f", iter([b"signed"]), content_type="text/plain")
    assert b"".join(store.open("org-a/f").chunks) == b"signed"
    tokens = gcs_front.requests("POST", "/token")
    calls = [seen for seen in gcs_front.seen if seen.path != "/token"]
    assert tokens and all(seen.status == 200 for seen in tokens)
    assert calls and all(seen.has_bearer and seen.status < 400 for seen in calls)


def test_a_refused_service_account_key_is_a_403_that_quotes_no_secret(
    make_gcs_store: Callable[..., GCSStore],
    gcs_front: GCSFront,
    service_account_key: ServiceAccountKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The account exists, but the key in the file is not one of its keys (rotated, revoked, mistyped).
    gcs_front.public_keys[service_account_key.email] = new_service_account_key("other@x").private_key.public_key()
    store = make_gcs_store(credentials_file=service_account_key.json(gcs_front.token_uri))
    caplog.set_level(logging.DEBUG, logger="filegate")
    for operation in store_calls(store):
        with pytest.raises(UpstreamRejected) as raised:
            operation()
        assert (raised.value.status_code, raised.value.code) == (403, "upstream_authentication_failed")
        assert service_account_key.pem_body not in raised.value.message
    assert service_account_key.pem_body not in caplog.text
    assert all(seen.path == "/token" for seen in gcs_front.seen)  # nothing reached the bucket


def test_a_bucket_that_refuses_the_account_is_a_403(
    make_gcs_store: Callable[..., GCSStore], gcs_front: GCSFront, service_account_key: ServiceAccountKey
) -> None:
    gcs_front.public_keys[service_account_key.email] = service_account_key.private_key.public_key()
    store = make_gcs_store(credentials_file=service_account_key.json(gcs_front.token_uri))
    store.save("org-a/f", iter([b"x"]), content_type="text/plain")
    # The service account lost its role on the bucket.
    gcs_front.fail(lambda method, path, query: "/o" in path, 403)
    for operation in store_calls(store):
        with pytest.raises(UpstreamRejected) as raised:
            operation()
        assert (raised.value.status_code, raised.value.code) == (403, "upstream_authentication_failed")


@pytest.mark.parametrize(
    ("credentials", "endpoint"),
    [
        ("not json", "emulator"),
        ('{"type": "authorized_user", "refresh_token": "x"}', "emulator"),
        ('{"type": "external_account", "credential_source": {"file": "/etc/passwd"}}', "emulator"),
        ('{"type": "service_account", "client_email": "a@b"}', "emulator"),  # no key
        ("token-elsewhere", ""),
    ],
)
def test_unusable_credentials_are_refused_without_quoting_them(
    make_gcs_store: Callable[..., GCSStore],
    gcs_front: GCSFront,
    service_account_key: ServiceAccountKey,
    credentials: str,
    endpoint: str,
) -> None:
    if credentials == "token-elsewhere":
        # Without an emulator, a key file may not send the gateway's signed assertions to another host.
        credentials = service_account_key.json("https://attacker.example/token")
    with pytest.raises(ImproperlyConfigured) as raised:
        make_gcs_store(credentials_file=credentials, endpoint_url=gcs_front.url if endpoint else "")
    assert credentials not in str(raised.value)
    assert service_account_key.pem_body not in str(raised.value)


def test_a_key_file_of_another_universe_is_refused(service_account_key: ServiceAccountKey) -> None:
    info = json.loads(service_account_key.json("https://oauth2.googleapis.com/token"))
    info["universe_domain"] = "attacker.example"
    with pytest.raises(ImproperlyConfigured):
        GCSStore(bucket="b", credentials_file=json.dumps(info))
