"""Large and interrupted uploads to ``bedrock`` and ``vertex`` through a live gateway.

A 200 MiB batch file is rewritten on its way into moto's S3 / the GCS emulator and read back, with
the gateway's memory (tracemalloc: the client, the gateway and its stores run in this process; the
servers do not) bounded by a few 8 MiB parts. An upload whose client goes away midway, after parts
reached the store, leaves no object, no unfinished upload, no record and no held bytes.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import pytest

from files_api.models import AuditEvent, File
from providers.batch_vertex import decode_custom_id
from providers.stores import PART_SIZE
from tenants.models import Organization
from tests.conftest import BOUNDARY, MULTIPART, Tenant
from tests.object_stores import MIB, MotoS3, ServerProcess
from tests.storage_kinds import (
    BEDROCK_MODEL,
    VERTEX_MODEL,
    StorageKind,
    add_bedrock_account,
    add_vertex_account,
    gcs_view,
    parts_counter,
    s3_view,
)

FILE_BYTES = 200 * MIB
# Measured (tracemalloc): uploads peak at 16 MiB into S3 and 23 MiB into GCS, downloads at 3 and 11
# MiB. S3's one 8 MiB part buffer (GCS: the writer's 8 MiB buffer and the chunk copied out of it, or
# one 8 MiB range down), two 1 MiB pieces of the request, the rewriter's 1 MiB output chunk and one line.
PEAK_LIMIT_BYTES = 5 * PART_SIZE
# Lines of 64 KB: few lines, so the test spends its time moving bytes rather than parsing JSON.
TEXT = ("lorem ipsum dolor sit amet " * 2400)[:64000]


@pytest.fixture(params=["bedrock", "vertex"])
def direct_kind(request: pytest.FixtureRequest, tenant_a: Tenant) -> StorageKind:
    """An account of each kind straight on its server (no in-process front whose buffers would count)."""
    if request.param == "bedrock":
        moto: MotoS3 = request.getfixturevalue("moto_s3")
        bucket = request.getfixturevalue("s3_bucket")
        account = add_bedrock_account(tenant_a, moto, bucket)
        return StorageKind("bedrock", account, s3_view(request.getfixturevalue("s3_admin"), bucket), BEDROCK_MODEL)
    emulator: ServerProcess = request.getfixturevalue("gcs_emulator")
    account = add_vertex_account(tenant_a, emulator.url, request.getfixturevalue("gcs_bucket"))
    return StorageKind("vertex", account, gcs_view(request.getfixturevalue("gcs_admin_bucket")), VERTEX_MODEL)


def line(number: int, model: str) -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": TEXT}], "max_tokens": 10}
    return json.dumps(
        {"custom_id": f"r-{number}", "method": "POST", "url": "/v1/chat/completions", "body": body}
    ).encode()


def write_batch_file(path: Path, size: int, model: str) -> int:
    """Batch lines of about 64 KB up to ``size`` bytes; returns how many."""
    written = count = 0
    with open(path, "wb") as out:
        while written < size:
            data = line(count, model) + b"\n"
            out.write(data)
            written += len(data)
            count += 1
    return count


def check_record(kind: StorageKind, raw: bytes, number: int) -> None:
    record = json.loads(raw)
    if kind.kind == "bedrock":
        assert record["recordId"] == f"r-{number}"
        assert record["modelInput"]["messages"] == [{"role": "user", "content": [{"type": "text", "text": TEXT}]}]
    else:
        assert decode_custom_id(record["request"]["labels"]) == f"r-{number}"
        assert record["request"]["contents"] == [{"role": "user", "parts": [{"text": TEXT}]}]


@pytest.mark.django_db(transaction=True)
def test_a_200_mib_batch_upload_and_download_stay_far_below_the_file_size_in_memory(
    live_server: Any, tenant_a: Tenant, direct_kind: StorageKind, tmp_path: Path
) -> None:
    Organization.objects.filter(pk=tenant_a.org.pk).update(batch_max_size_bytes=256 * MIB)
    path = tmp_path / "big.jsonl"
    count = write_batch_file(path, FILE_BYTES, direct_kind.model)
    received, received_bytes, head, tail = hashlib.sha256(), 0, b"", b""  # head and tail: 128 KiB each
    headers = {"Authorization": f"Bearer {tenant_a.key}", "X-Provider-Account": direct_kind.name}
    with httpx.Client(base_url=live_server.url, headers=headers, timeout=300) as client, open(path, "rb") as handle:
        # Once per process, not per upload: the account's client loads S3's service model (10 MiB).
        warm_up = client.post("/v1/files", data={"purpose": "user_data"}, files={"file": ("w.txt", b"warm")})
        assert client.delete(f"/v1/files/{warm_up.json()['id']}").status_code == 200
        tracemalloc.start()
        baseline, _ = tracemalloc.get_traced_memory()
        try:
            created = client.post(
                "/v1/files", data={"purpose": "batch"}, files={"file": ("big.jsonl", handle, "application/jsonl")}
            )
            _, upload_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            assert created.status_code == 200, created.text
            with client.stream("GET", f"/v1/files/{created.json()['id']}/content") as download:
                assert download.headers["Content-Length"] == str(created.json()["bytes"])
                for chunk in download.iter_bytes():
                    received.update(chunk)
                    received_bytes += len(chunk)
                    head += chunk[: 128 * 1024 - len(head)]
                    tail = (tail + chunk)[-128 * 1024 :]
            _, download_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    record = File.objects.get(public_id=created.json()["id"])
    assert received_bytes == record.bytes == created.json()["bytes"] != path.stat().st_size  # stored as rewritten
    assert received.hexdigest() == record.sha256
    assert direct_kind.bucket.unfinished() == []
    check_record(direct_kind, head.split(b"\n", 1)[0], 0)
    check_record(direct_kind, tail.rstrip(b"\n").rsplit(b"\n", 1)[1], count - 1)
    assert upload_peak - baseline < PEAK_LIMIT_BYTES, f"upload peak {(upload_peak - baseline) / MIB:.1f} MiB"
    assert download_peak - baseline < PEAK_LIMIT_BYTES, f"download peak {(download_peak - baseline) / MIB:.1f} MiB"


@pytest.mark.django_db(transaction=True)
def test_an_upload_whose_client_goes_away_midway_leaves_nothing(
    request: pytest.FixtureRequest, live_server: Any, tenant_a: Tenant, storage_kind: StorageKind
) -> None:
    sent_lines = b"".join(line(number, storage_kind.model) + b"\n" for number in range(320))  # 20 MiB
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="cut.jsonl"\r\n'
        "Content-Type: application/jsonl\r\n\r\n"
    ).encode()
    request_head = (
        f"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {tenant_a.key}\r\n"
        f"X-Provider-Account: {storage_kind.name}\r\nContent-Type: {MULTIPART}\r\n"
        f"Content-Length: {len(head) + 2 * len(sent_lines)}\r\n\r\n"
    ).encode()
    parts_sent = parts_counter(request, storage_kind)
    with socket.create_connection(("127.0.0.1", int(live_server.url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(request_head + head + sent_lines)  # half the declared body, then gone
    deadline = time.monotonic() + 30
    while not AuditEvent.objects.filter(action=AuditEvent.Action.CREATE).exists():
        assert time.monotonic() < deadline, "the gateway never gave up on the upload"
        time.sleep(0.1)
    assert AuditEvent.objects.get(action=AuditEvent.Action.CREATE).outcome != "success"
    assert parts_sent() >= 1  # the store had part of the file when the client went
    org = Organization.objects.get(pk=tenant_a.org.pk)
    assert (org.used_bytes, org.reserved_bytes, org.reservations.exists()) == (0, 0, False)
    assert not File.objects.exists()
    assert (storage_kind.bucket.names(), storage_kind.bucket.unfinished()) == ([], [])
