"""A large upload and download through a live gateway cost memory by the chunk, not by the file."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Tenant

MIB = 1024 * 1024
FILE_BYTES = 64 * MIB
PEAK_LIMIT_BYTES = 16 * MIB


def write_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for _ in range(size // MIB):
            chunk = os.urandom(MIB)
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


@pytest.mark.django_db(transaction=True)
def test_a_64_mib_upload_and_download_stay_far_below_the_file_size_in_memory(
    live_server: Any, tenant_a: Tenant, tmp_path: Path
) -> None:
    path = tmp_path / "big.bin"
    expected_digest = write_file(path, FILE_BYTES)
    received = hashlib.sha256()
    received_bytes = 0
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        with (
            httpx.Client(
                base_url=live_server.url, headers={"Authorization": f"Bearer {tenant_a.key}"}, timeout=120
            ) as client,
            open(path, "rb") as handle,
        ):
            # httpx streams a file object given in ``files`` chunk by chunk, with a Content-Length.
            created = client.post(
                "/v1/files",
                data={"purpose": "assistants"},
                files={"file": ("big.bin", handle, "application/octet-stream")},
            )
            assert created.status_code == 200, created.text
            with client.stream("GET", f"/v1/files/{created.json()['id']}/content") as download:
                assert download.status_code == 200
                for chunk in download.iter_bytes():
                    received.update(chunk)
                    received_bytes += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert created.json()["bytes"] == FILE_BYTES
    assert (received_bytes, received.hexdigest()) == (FILE_BYTES, expected_digest)
    assert peak - baseline < PEAK_LIMIT_BYTES, f"peak {(peak - baseline) / MIB:.1f} MiB"
