"""``bedrock`` and ``vertex`` accounts on the suite's real stores, and ways to look into their buckets.

``add_bedrock_account`` / ``add_vertex_account`` make an account on moto's S3 server / the GCS
emulator (through ``GCSFront`` unless told otherwise); ``BucketView`` sees a bucket (or the
``local`` kind's folder) behind the gateway's back (object names, bytes, unfinished multipart
uploads); ``CuttingProxy`` is a TCP relay that closes a connection once an answer has passed a
number of bytes (a download cut midway).
Registered as a pytest plugin by ``tests/conftest.py``; the fixtures are at the bottom.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from google.cloud import storage

from providers.s3 import S3Store
from tenants.models import ProviderAccount
from tenants.services import provider_account_create, provider_for
from tests.object_stores import REGION, GCSFront, MotoS3

if TYPE_CHECKING:  # tests.conftest registers this module as a plugin: importing it here would be circular
    from tests.conftest import Tenant

BEDROCK_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
VERTEX_MODEL = "gemini-2.0-flash-001"
PREFIX = "filegate/"


@dataclass
class BucketView:
    """A bucket as its administrator sees it: full object names (prefix included) and their bytes."""

    names: Callable[[], list[str]]
    read: Callable[[str], bytes]
    remove: Callable[[str], Any]
    unfinished: Callable[[], list[str]] = list  # multipart uploads still open (S3); GCS keeps none visible

    def object_at(self, storage_uri: str) -> bytes:
        """The bytes of the object a file object's ``storage_uri`` (``s3://bucket/name``) names."""
        return self.read(storage_uri.split("/", 3)[3])


def s3_view(admin: Any, bucket: str) -> BucketView:
    return BucketView(
        names=lambda: sorted(item["Key"] for item in admin.list_objects_v2(Bucket=bucket).get("Contents", ())),
        read=lambda name: bytes(admin.get_object(Bucket=bucket, Key=name)["Body"].read()),
        remove=lambda name: admin.delete_object(Bucket=bucket, Key=name),
        unfinished=lambda: [upload["Key"] for upload in admin.list_multipart_uploads(Bucket=bucket).get("Uploads", ())],
    )


def gcs_view(bucket: storage.Bucket) -> BucketView:
    return BucketView(
        names=lambda: sorted(blob.name for blob in bucket.list_blobs()),
        read=lambda name: bucket.blob(name).download_as_bytes(),
        remove=lambda name: bucket.blob(name).delete(),
    )


def folder_view(root: Path) -> BucketView:
    """The ``local`` kind's folder seen as a bucket: file paths under ``root`` are the object names."""
    return BucketView(
        names=lambda: sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()),
        read=lambda name: (root / name).read_bytes(),
        remove=lambda name: (root / name).unlink(),
    )


def add_bedrock_account(
    tenant: Tenant, moto: MotoS3, bucket: str, *, name: str = "bedrock", **settings: str
) -> ProviderAccount:
    """A ``bedrock`` account of ``tenant`` on ``bucket`` with moto's administrator key.

    ``settings`` override the defaults ("" drops one)."""
    config = {
        "bucket": bucket,
        "region": REGION,
        "prefix": PREFIX,
        "endpoint_url": moto.url,
        "aws_access_key_id": moto.access_key_id,
        "aws_secret_access_key": moto.secret_access_key,
        **settings,
    }
    return provider_account_create(
        organization=tenant.org, name=name, kind="bedrock", config={k: v for k, v in config.items() if v}
    )


def add_vertex_account(
    tenant: Tenant, endpoint: str, bucket: str, *, name: str = "vertex", **settings: str
) -> ProviderAccount:
    """A ``vertex`` account of ``tenant`` on ``bucket`` at ``endpoint``; ``settings`` override ("" drops one)."""
    config = {"bucket": bucket, "project": "filegate-tests", "prefix": PREFIX, "endpoint_url": endpoint, **settings}
    return provider_account_create(
        organization=tenant.org, name=name, kind="vertex", config={k: v for k, v in config.items() if v}
    )


@dataclass
class StorageKind:
    """A ``bedrock`` or ``vertex`` account of ``tenant_a`` on this test's bucket, and that bucket seen from outside."""

    kind: str
    account: ProviderAccount
    bucket: BucketView
    model: str  # a model the kind's rewriter knows ("" for ``local``, which rewrites nothing)

    @property
    def name(self) -> str:
        return self.account.name


def parts_counter(request: pytest.FixtureRequest, kind: StorageKind) -> Callable[[], int]:
    """How many S3 parts (``UploadPart``) or GCS resumable chunks the kind's store sends from now on.

    Vertex accounts must go through ``GCSFront`` (the ``vertex`` fixture), which sees the chunks;
    for Bedrock the account's own S3 client (the provider instance the gateway reuses) is watched.
    """
    if kind.kind == "vertex":
        front = request.getfixturevalue("gcs_front")
        return lambda: len(front.requests("PUT", "/upload/storage/v1/b/"))
    sent: list[str] = []
    store = provider_for(kind.account).store
    assert isinstance(store, S3Store)
    store.client.meta.events.register("provide-client-params.s3.UploadPart", lambda **_: sent.append("part"))
    return lambda: len(sent)


# A TCP relay that cuts answers.


@dataclass
class CuttingProxy:
    """A TCP relay on 127.0.0.1 to a server's port. ``cut_answers_after(n)``: from then on, the
    connection whose answer bytes (counted over all connections) pass ``n`` is closed there (the
    first ``times`` such connections only, when ``times`` is given)."""

    target_port: int
    cut_after: int | None = None
    times: int | None = None
    passed: int = 0
    cuts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    listener: socket.socket = field(default_factory=socket.socket)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def start(self) -> CuttingProxy:
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self.listener.close()

    def cut_answers_after(self, nbytes: int, *, times: int | None = None) -> None:
        with self.lock:
            self.cut_after, self.passed, self.times = nbytes, 0, times

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # stopped
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, is_answer: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(64 * 1024):
                if is_answer and (room := self._room(len(data))) is not None:
                    sink.sendall(data[:room])
                    break
                sink.sendall(data)
        # Both ways closed: the client sees the answer end early. (A reset would make the client's
        # kernel drop what it had received but not yet read, so it could not show what came first.)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def _room(self, size: int) -> int | None:
        """How much of an answer piece of ``size`` bytes goes through before the cut, or None: all of it."""
        with self.lock:
            if self.cut_after is None or self.passed + size <= self.cut_after:
                self.passed += size
                return None
            room, self.passed, self.cuts = self.cut_after - self.passed, self.cut_after, self.cuts + 1
            if self.times is not None and self.cuts >= self.times:
                self.cut_after = None
            return room


# Fixtures.


@pytest.fixture
def bedrock(tenant_a: Tenant, moto_s3: MotoS3, s3_bucket: str, s3_admin: Any) -> StorageKind:
    account = add_bedrock_account(tenant_a, moto_s3, s3_bucket)
    return StorageKind(kind="bedrock", account=account, bucket=s3_view(s3_admin, s3_bucket), model=BEDROCK_MODEL)


@pytest.fixture
def vertex(tenant_a: Tenant, gcs_front: GCSFront, gcs_bucket: str, gcs_admin_bucket: storage.Bucket) -> StorageKind:
    account = add_vertex_account(tenant_a, gcs_front.url, gcs_bucket)
    return StorageKind(kind="vertex", account=account, bucket=gcs_view(gcs_admin_bucket), model=VERTEX_MODEL)


@pytest.fixture
def local(tenant_a: Tenant, data_dir: Path) -> StorageKind:
    """tenant_a's default account, of the ``local`` kind (files under the test's DATA_DIR)."""
    return StorageKind(kind="local", account=tenant_a.account, bucket=folder_view(data_dir / "files"), model="")


@pytest.fixture(params=["bedrock", "vertex"])
def storage_kind(request: pytest.FixtureRequest) -> StorageKind:
    """Each of the two kinds on an object store in turn (``indirect`` parametrisation can add ``local``)."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def moto_proxy(moto_s3: MotoS3) -> Iterator[CuttingProxy]:
    """A ``CuttingProxy`` in front of moto's server."""
    proxy = CuttingProxy(target_port=moto_s3.server.port).start()
    yield proxy
    proxy.stop()
