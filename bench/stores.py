"""The object stores behind ``bedrock`` and ``vertex``, and a client's direct calls to them.

The bench starts moto's S3 server and the GCS emulator (``gcp-storage-emulator --in-memory``) on free
ports, as the tests do (``tests/object_stores.py``), and stops them by PID. ``ObjectStore`` is what a
client does without the gateway: the same uploads, downloads and metadata reads, straight to the
bucket with the cloud's own library. It also reads the gateway's objects back, to check that an
upload arrived whole.

Two things about the emulators the figures inherit, the same through the gateway and direct: moto
keeps objects in memory behind Werkzeug, and the GCS emulator appends each resumable chunk by
rewriting the whole partial object (a 256 MiB upload in 8 MiB chunks copies about 4 GiB). So the
direct uploads to GCS use the gateway's chunk size (8 MiB), not the library's default (100 MiB),
and the ratio shows the gateway's cost rather than the emulator's quirk.
"""

from __future__ import annotations

import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import client
from botocore.config import Config
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

BIN = Path(sys.executable).parent  # moto_server and gcp-storage-emulator are installed beside the interpreter
MIB = 1024 * 1024
PART_SIZE = 8 * MIB  # the gateway's part and chunk size (providers/stores.py)
REGION = "us-east-1"


def server_command(store: str, port: int) -> list[str]:
    """The command that serves ``store`` (``s3`` or ``gcs``) on 127.0.0.1:``port``."""
    if store == "s3":
        return [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    return [str(BIN / "gcp-storage-emulator"), "start", "--host=127.0.0.1", f"--port={port}", "--in-memory"]


# A path each server answers with 200 once it is up.
READY_PATHS = {"s3": "/moto-api/", "gcs": "/"}


class CrcSink:
    """A writable file that keeps only the count and the CRC-32 of what is written to it."""

    def __init__(self) -> None:
        self.nbytes = 0
        self.crc32 = 0

    def write(self, data: bytes) -> int:
        self.nbytes += len(data)
        self.crc32 = zlib.crc32(data, self.crc32)
        return len(data)


class ObjectStore:
    """One bucket of one store as a client reaches it directly: ``s3`` with boto3, ``gcs`` with google-cloud-storage."""

    def __init__(self, store: str, url: str, bucket: str) -> None:
        self.kind = store
        self.bucket = bucket
        if store == "s3":
            self.s3: Any = boto3.session.Session().client(
                "s3",
                endpoint_url=url,
                region_name=REGION,
                aws_access_key_id="bench",
                aws_secret_access_key="bench-secret",  # noqa: S106 - moto checks no key unless told to
                config=Config(max_pool_connections=32),
            )
        else:
            self.gcs = storage.Client(
                project="filegate-bench",
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                client_options=ClientOptions(api_endpoint=url),
            )
            self.handle = self.gcs.bucket(bucket)

    def create_bucket(self) -> None:
        if self.kind == "s3":
            self.s3.create_bucket(Bucket=self.bucket)
        else:
            self.gcs.create_bucket(self.bucket)

    def upload(self, path: Path, key: str) -> float:
        """Seconds to store the file at ``key`` as a client would: boto3's managed upload (8 MiB parts,
        up to 10 at a time), or a resumable upload in the gateway's 8 MiB chunks (see the top)."""
        started = time.perf_counter()
        if self.kind == "s3":
            self.s3.upload_file(str(path), self.bucket, key)
        else:
            blob = self.handle.blob(key, chunk_size=PART_SIZE)
            blob.upload_from_filename(str(path), content_type="application/octet-stream")
        return time.perf_counter() - started

    def head(self, key: str) -> int:
        """The object's size, from its metadata: what a retrieve is to a store."""
        if self.kind == "s3":
            return int(self.s3.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        blob = self.handle.get_blob(key)
        return int(blob.size) if blob is not None else -1

    def download(self, key: str) -> client.Download:
        """The object streamed into a CRC-32, timed until the last byte."""
        sink = CrcSink()
        started = time.perf_counter()
        if self.kind == "s3":
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
            for chunk in body.iter_chunks(client.BUFFER_BYTES):
                sink.write(chunk)
        else:
            self.handle.blob(key).download_to_file(sink)
        return client.Download(time.perf_counter() - started, 200, sink.nbytes, sink.crc32)

    def read_back(self, key: str) -> tuple[int, int]:
        """(bytes, CRC-32) of the object at ``key``."""
        result = self.download(key)
        return result.nbytes, result.crc32

    def latency(self, key: str, requests: int, concurrency: int) -> client.LatencyRun:
        """``requests`` metadata reads of ``key`` over ``concurrency`` threads, each timed."""
        expected = self.head(key)

        def one(_: int) -> tuple[float, bool]:
            started = time.perf_counter()
            ok = self.head(key) == expected
            return time.perf_counter() - started, ok

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, range(requests)))
        wall = time.perf_counter() - started
        return client.LatencyRun(
            seconds=[seconds for seconds, _ in results],
            errors=sum(not ok for _, ok in results),
            wall_seconds=wall,
            body_bytes=0,
        )


def key_of(storage_uri: str) -> str:
    """The object name in ``s3://bucket/name`` or ``gs://bucket/name``."""
    return storage_uri.split("/", 3)[3]
