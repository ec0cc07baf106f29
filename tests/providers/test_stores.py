"""The ``Store`` contract, once per store: S3 on moto's server, GCS on the emulator, and a local folder.

Every test looks at what landed in the store behind the store's back (the administrator's boto3
client, a plain google-cloud-storage client, the file system), never only at what the store says.
Store-specific behaviour (multipart parts, resumable chunks, file modes, credentials, paging)
is in ``test_s3_store.py``, ``test_gcs_store.py`` and ``test_local_store.py``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from config.errors import FileNotFound, PayloadTooLarge, UpstreamTimeout, UpstreamUnavailable
from providers.base import CHUNK_SIZE, Store
from providers.local import FolderStore
from providers.stores import PART_SIZE
from tests.object_stores import (
    MIB,
    ServerProcess,
    collect_failed_call,
    free_port,
    numbered_bytes,
    numbered_chunks,
    peak_memory,
    refused_after,
    silent_server,
    store_calls,
)

PREFIX = "tenant-a/files"


@dataclass
class StoreUnderTest:
    """A store, and how to see what it holds without it: full object names (with the store's prefix)."""

    store: Store
    names: Callable[[], list[str]]
    read: Callable[[str], bytes]
    unfinished: Callable[[], list[str]]  # multipart uploads still open (S3); other stores keep none


def s3_under_test(request: pytest.FixtureRequest) -> StoreUnderTest:
    store = request.getfixturevalue("make_s3_store")(prefix=PREFIX)
    admin, bucket = request.getfixturevalue("s3_admin"), store.bucket

    def names() -> list[str]:
        return [item["Key"] for item in admin.list_objects_v2(Bucket=bucket).get("Contents", ())]

    def unfinished() -> list[str]:
        return [upload["Key"] for upload in admin.list_multipart_uploads(Bucket=bucket).get("Uploads", ())]

    def read(name: str) -> bytes:
        return bytes(admin.get_object(Bucket=bucket, Key=name)["Body"].read())

    return StoreUnderTest(store=store, names=names, read=read, unfinished=unfinished)


def gcs_under_test(request: pytest.FixtureRequest) -> StoreUnderTest:
    emulator: ServerProcess = request.getfixturevalue("gcs_emulator")
    # Straight to the emulator: the front's buffers would count in the memory measurements.
    store = request.getfixturevalue("make_gcs_store")(prefix=PREFIX, endpoint_url=emulator.url)
    bucket = request.getfixturevalue("gcs_admin_bucket")
    return StoreUnderTest(
        store=store,
        names=lambda: [blob.name for blob in bucket.list_blobs()],
        read=lambda name: bucket.blob(name).download_as_bytes(),
        unfinished=list,
    )


def local_under_test(request: pytest.FixtureRequest) -> StoreUnderTest:
    root: Path = request.getfixturevalue("tmp_path") / "store"
    root.mkdir(mode=0o700)  # as a bucket is created before its store is used; a missing root is a fault
    return StoreUnderTest(
        store=FolderStore(root),
        names=lambda: sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()),
        read=lambda name: (root / name).read_bytes(),
        unfinished=list,
    )


@pytest.fixture(params=["s3", "gcs", "local"])
def under_test(request: pytest.FixtureRequest) -> StoreUnderTest:
    return {"s3": s3_under_test, "gcs": gcs_under_test, "local": local_under_test}[request.param](request)


@pytest.fixture(params=["s3", "gcs"])
def store_at(request: pytest.FixtureRequest) -> Callable[[str], Store]:
    """Builds a remote store of each kind that talks to the given endpoint instead of its server."""
    make = request.getfixturevalue("make_s3_store" if request.param == "s3" else "make_gcs_store")
    return lambda endpoint: make(endpoint_url=endpoint)


def read_all(store: Store, key: str) -> bytes:
    return b"".join(store.open(key).chunks)


@pytest.mark.parametrize(
    ("size", "chunk_size"),
    [
        (0, MIB),
        (1, MIB),
        (100 * 1024 + 7, 4093),  # odd chunks, one part
        (PART_SIZE, MIB),  # exactly one part
        (PART_SIZE + 1, 64 * 1024),  # one byte into a second part
        (2 * PART_SIZE + 3 * MIB + 5, MIB),  # three parts, the last one short
    ],
)
def test_it_stores_the_bytes_exactly_and_returns_their_count(
    under_test: StoreUnderTest, size: int, chunk_size: int
) -> None:
    store = under_test.store
    saved = store.save("org-a/file-abc", numbered_chunks(size, chunk_size), content_type="application/jsonl")
    expected = numbered_bytes(size, chunk_size)
    assert saved == size
    assert under_test.names() == [store.prefix + "org-a/file-abc"]
    assert under_test.read(store.prefix + "org-a/file-abc") == expected
    assert read_all(store, "org-a/file-abc") == expected
    assert under_test.unfinished() == []


def test_open_gives_the_size_and_the_first_chunk_before_the_object_is_read(under_test: StoreUnderTest) -> None:
    size = 3 * PART_SIZE
    under_test.store.save("org-a/big", numbered_chunks(size), content_type="application/octet-stream")
    with peak_memory() as peak:
        content = under_test.store.open("org-a/big")
        first = next(content.chunks)
    assert content.size == size
    assert first == next(numbered_chunks(size, CHUNK_SIZE))
    # At most one 8 MiB range of the 24 MiB object was fetched for the first chunk.
    assert peak[0] < PART_SIZE + 2 * MIB, f"peak {peak[0] / MIB:.1f} MiB"
    rest = hashlib.sha256(first)
    for chunk in content.chunks:
        assert len(chunk) <= CHUNK_SIZE
        rest.update(chunk)
    assert rest.hexdigest() == hashlib.sha256(numbered_bytes(size)).hexdigest()


def test_opening_a_missing_key_is_file_not_found(under_test: StoreUnderTest) -> None:
    with pytest.raises(FileNotFound):
        under_test.store.open("org-a/file-missing")


def test_delete_removes_the_object_and_is_idempotent(under_test: StoreUnderTest) -> None:
    store = under_test.store
    store.save("org-a/file-1", iter([b"one"]), content_type="text/plain")
    store.save("org-a/file-2", iter([b"two"]), content_type="text/plain")
    assert store.delete("org-a/file-1") is True
    assert under_test.names() == [store.prefix + "org-a/file-2"]
    assert store.delete("org-a/file-1") is False
    assert under_test.names() == [store.prefix + "org-a/file-2"]


def test_a_save_refused_midway_leaves_no_object_and_no_unfinished_upload(under_test: StoreUnderTest) -> None:
    """Refused after two full parts went out (what the store held midway: in each store's own tests)."""
    refusal = PayloadTooLarge("Files may be at most 17 MiB.", param="file")
    chunks = refused_after(numbered_chunks(40 * MIB), 2 * PART_SIZE + MIB, refusal)
    with pytest.raises(PayloadTooLarge) as raised:
        under_test.store.save("org-a/file-cut", chunks, content_type="application/octet-stream")
    assert raised.value is refusal
    assert (under_test.names(), under_test.unfinished()) == ([], [])
    del raised
    collect_failed_call(refusal)
    assert (under_test.names(), under_test.unfinished()) == ([], [])


def test_check_writes_reads_back_and_deletes_a_probe(under_test: StoreUnderTest) -> None:
    under_test.store.save("org-a/kept", iter([b"kept"]), content_type="text/plain")
    under_test.store.check()
    assert under_test.names() == [under_test.store.prefix + "org-a/kept"]


@pytest.mark.parametrize("key", ["../outside", "/etc/passwd", "org-a//file", "org-a/./file", "org-a/..", "a\\b", ""])
def test_keys_that_could_leave_the_store_name_no_object(under_test: StoreUnderTest, key: str) -> None:
    store = under_test.store
    with pytest.raises(FileNotFound):
        store.save(key, iter([b"x"]), content_type="text/plain")
    with pytest.raises(FileNotFound):
        store.open(key)
    with pytest.raises(FileNotFound):
        store.delete(key)
    assert under_test.names() == []


def test_iter_objects_lists_keys_under_a_prefix_relative_to_the_store(under_test: StoreUnderTest) -> None:
    store = under_test.store
    for key, content in [("org-a/f1", b"1"), ("org-a/f2", b"22"), ("org-ab/f3", b"333"), ("org-b/f4", b"4444")]:
        store.save(key, iter([content]), content_type="text/plain")
    assert sorted((item.key, item.size) for item in store.iter_objects("org-a/")) == [("org-a/f1", 1), ("org-a/f2", 2)]
    assert sorted(item.key for item in store.iter_objects("org-a")) == ["org-a/f1", "org-a/f2", "org-ab/f3"]
    assert sorted(item.key for item in store.iter_objects("")) == ["org-a/f1", "org-a/f2", "org-ab/f3", "org-b/f4"]
    assert list(store.iter_objects("org-c/")) == []


def test_iter_objects_lists_in_key_order_with_the_time_of_each_write(under_test: StoreUnderTest) -> None:
    store = under_test.store
    before = time.time()
    # A folder-like name ("org-a/b/...") sorts where its keys do: after "org-a/b-c", before "org-a/bz".
    for key in ["org-a/bz", "org-a/b/inner", "org-a/B", "org-a/b-c", "org-a/a"]:
        store.save(key, iter([b"x"]), content_type="text/plain")
    listed = list(store.iter_objects("org-a/"))
    assert [item.key for item in listed] == ["org-a/B", "org-a/a", "org-a/b-c", "org-a/b/inner", "org-a/bz"]
    for item in listed:
        assert item.modified_at is not None
        assert before - 2 <= item.modified_at <= time.time() + 2  # the stores' clocks round to the second


def test_a_200_mib_save_and_read_stay_in_bounded_memory(under_test: StoreUnderTest) -> None:
    size = 200 * MIB
    expected = hashlib.sha256()
    for chunk in numbered_chunks(size):
        expected.update(chunk)
    with peak_memory() as save_peak:
        saved = under_test.store.save("org-a/huge", numbered_chunks(size), content_type="application/octet-stream")
    received, count = hashlib.sha256(), 0
    with peak_memory() as read_peak:
        content = under_test.store.open("org-a/huge")
        for chunk in content.chunks:
            received.update(chunk)
            count += len(chunk)
    assert (saved, content.size, count) == (size, size, size)
    assert received.hexdigest() == expected.hexdigest()
    # At most two 8 MiB parts (GCS: the writer's buffer and the chunk sent; S3: one), plus the chunk
    # being produced: far below the 200 MiB.
    assert save_peak[0] < 4 * PART_SIZE, f"save peak {save_peak[0] / MIB:.1f} MiB"
    assert read_peak[0] < 2 * PART_SIZE, f"read peak {read_peak[0] / MIB:.1f} MiB"


def test_a_store_nothing_listens_for_is_unavailable(store_at: Callable[[str], Store], settings: Any) -> None:
    settings.UPSTREAM_RETRIES = 0
    store = store_at(f"http://127.0.0.1:{free_port()}")
    for call in store_calls(store):
        with pytest.raises(UpstreamUnavailable):
            call()


def test_a_store_that_does_not_answer_times_out(store_at: Callable[[str], Store], settings: Any) -> None:
    settings.UPSTREAM_RETRIES = 0
    settings.UPSTREAM_TIMEOUT_SECONDS = 1
    with silent_server() as url:
        store = store_at(url)
        for call in store_calls(store)[1:3]:  # open and delete: a read waits for the answer
            with pytest.raises(UpstreamTimeout):
                call()
