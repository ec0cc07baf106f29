"""Store faults seen through the gateway, for ``bedrock`` (moto), ``vertex`` (the GCS emulator) and,
where the fault exists on a disk, ``local``: each ends with the right error and the books balanced
(``tests/faults.py``: no stray record or object, nothing unfinished, exact usage, nothing held).

The disk's faults are made with public means: the account's folder is not a folder (a file took
its place), and the disk fills midway through a file (``RLIMIT_FSIZE``: writes past the limit fail
with ``EFBIG``, as they fail with ``ENOSPC`` on a full disk; Python ignores ``SIGXFSZ``)."""

from __future__ import annotations

import dataclasses
import json
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from config.errors import UpstreamError
from files_api.models import File
from tenants.models import Organization, ProviderAccount, QuotaReservation
from tenants.services import provider_account_save, provider_for
from tests.conftest import Tenant, upload
from tests.faults import assert_books_balanced, assert_error, storage_books
from tests.object_stores import (
    MIB,
    GCSFront,
    MotoS3,
    allow,
    deny,
    free_port,
    new_service_account_key,
    numbered_bytes,
    silent_server,
)
from tests.storage_kinds import CuttingProxy, StorageKind, add_bedrock_account, add_vertex_account


@pytest.fixture(autouse=True)
def quick_failures(settings: Any) -> None:
    settings.UPSTREAM_RETRIES = 0
    settings.UPSTREAM_TIMEOUT_SECONDS = 1


def assert_usage(tenant: Tenant, used_bytes: int) -> None:
    org = Organization.objects.get(pk=tenant.org.pk)
    assert (org.used_bytes, org.reserved_bytes) == (used_bytes, 0)
    assert not QuotaReservation.objects.filter(organization=org).exists()


def point_at(account: ProviderAccount, endpoint: str, *, setting: str = "endpoint_url") -> None:
    """Move the account to another endpoint (or folder), as an operator would in admin."""
    account.settings = {**account.settings, setting: endpoint}
    provider_account_save(account)


@pytest.fixture(params=["unreachable", "silent"])
def broken_endpoint(request: pytest.FixtureRequest) -> Iterator[tuple[str, int, str]]:
    """An endpoint nothing listens on (503), or one that accepts and never answers (504)."""
    if request.param == "unreachable":
        yield f"http://127.0.0.1:{free_port()}", 503, "upstream_unavailable"
        return
    with silent_server() as url:
        yield url, 504, "upstream_timeout"


def test_a_store_that_cannot_be_reached_or_does_not_answer_changes_nothing(
    tenant_a: Tenant, storage_kind: StorageKind, broken_endpoint: tuple[str, int, str]
) -> None:
    endpoint, status, code = broken_endpoint
    kept = upload(tenant_a.client, b"kept", account=storage_kind.name).json()["id"]
    working = storage_kind.account.settings["endpoint_url"]
    point_at(storage_kind.account, endpoint)
    assert_error(upload(tenant_a.client, numbered_bytes(MIB), account=storage_kind.name), status, code)
    assert_error(tenant_a.client.get(f"/v1/files/{kept}/content"), status, code)
    assert_error(tenant_a.client.delete(f"/v1/files/{kept}"), status, code)
    assert [file.public_id for file in File.objects.filter(deleted_at__isnull=True)] == [kept]
    assert_usage(tenant_a, 4)
    point_at(storage_kind.account, working)
    assert_books_balanced(storage_books(tenant_a, storage_kind))
    assert tenant_a.client.delete(f"/v1/files/{kept}").json()["deleted"] is True
    assert_usage(tenant_a, 0)
    assert (storage_kind.bucket.names(), storage_kind.bucket.unfinished()) == ([], [])


# What the store answers a write, for each kind: a server error, and "slow down".
STORE_ANSWERS = {
    "error": {"bedrock": (500, "InternalError"), "vertex": (500, "")},
    "throttled": {"bedrock": (503, "SlowDown"), "vertex": (429, "")},
}


def store_answers(request: pytest.FixtureRequest, kind: StorageKind, answer: str) -> None:
    """Make the kind's store answer every write (not reads or listings) with ``STORE_ANSWERS[answer]``.

    GCS: ``GCSFront`` answers instead of the emulator. S3: the account's own client is handed the
    answer by a ``before-send`` handler (botocore's documented way to answer a request in its place).
    """
    status, code = STORE_ANSWERS[answer][kind.kind]
    if kind.kind == "vertex":
        front: GCSFront = request.getfixturevalue("gcs_front")
        front.fail(lambda method, path, query: method in ("POST", "PUT") and path.startswith("/upload/"), status)
        return
    body = f"<Error><Code>{code}</Code><Message>Please reduce your request rate.</Message></Error>".encode()

    def answer_instead(request: Any, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, RawBody(body))

    events = provider_for(kind.account).store.client.meta.events
    for operation in ("PutObject", "CreateMultipartUpload"):
        events.register(f"before-send.s3.{operation}", answer_instead)


@dataclass
class RawBody:
    """The raw body botocore reads an ``AWSResponse`` from (its ``stream()``)."""

    content: bytes

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.content


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [("error", 502, "upstream_error"), ("throttled", 429, "rate_limit_exceeded")],
)
def test_a_store_that_answers_a_write_with_an_error_or_slow_down_changes_nothing(
    request: pytest.FixtureRequest, tenant_a: Tenant, storage_kind: StorageKind, answer: str, status: int, code: str
) -> None:
    kept = upload(tenant_a.client, b"kept", account=storage_kind.name).json()["id"]
    store_answers(request, storage_kind, answer)
    response = upload(tenant_a.client, numbered_bytes(3000), account=storage_kind.name)
    assert_error(response, status, code)
    assert [file.public_id for file in File.objects.filter(deleted_at__isnull=True)] == [kept]
    assert_books_balanced(storage_books(tenant_a, storage_kind))
    assert tenant_a.client.get(f"/v1/files/{kept}/content").status_code == 200  # reads still work


@pytest.mark.parametrize("storage_kind", ["local"], indirect=True)
def test_a_folder_that_is_not_a_folder_cannot_be_written_and_changes_nothing(
    tenant_a: Tenant, storage_kind: StorageKind, tmp_path: Path
) -> None:
    kept = upload(tenant_a.client, b"kept", account=storage_kind.name).json()["id"]
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"a file where the account's folder should be")
    point_at(storage_kind.account, str(blocker), setting="path")
    response = upload(tenant_a.client, numbered_bytes(MIB), account=storage_kind.name)
    assert_error(response, 503, "upstream_unavailable")
    assert "cannot be written" in response.json()["error"]["message"]
    assert blocker.read_bytes() == b"a file where the account's folder should be"
    point_at(storage_kind.account, "", setting="path")  # back to DATA_DIR/files
    assert [file.public_id for file in File.objects.filter(deleted_at__isnull=True)] == [kept]
    assert_usage(tenant_a, 4)
    assert_books_balanced(storage_books(tenant_a, storage_kind))


@pytest.mark.parametrize("storage_kind", ["local"], indirect=True)
def test_a_folder_out_of_reach_is_a_503_for_reads_and_deletes_and_forgets_nothing(
    tenant_a: Tenant, storage_kind: StorageKind, tmp_path: Path
) -> None:
    """An unmounted volume: the files are out of reach, not gone. Nothing is forgotten or released,
    and once the folder is back everything works."""
    kept = upload(tenant_a.client, b"kept", account=storage_kind.name).json()["id"]
    away = tmp_path / "unmounted"
    point_at(storage_kind.account, str(away), setting="path")
    assert_error(tenant_a.client.get(f"/v1/files/{kept}/content"), 503, "upstream_unavailable")
    assert_error(tenant_a.client.delete(f"/v1/files/{kept}"), 503, "upstream_unavailable")
    assert File.objects.get(public_id=kept).deleted_at is None
    assert File.objects.get(public_id=kept).missing_since is None
    assert_usage(tenant_a, 4)
    point_at(storage_kind.account, "", setting="path")  # the volume is back
    assert b"".join(tenant_a.client.get(f"/v1/files/{kept}/content").streaming_content) == b"kept"
    assert_books_balanced(storage_books(tenant_a, storage_kind))
    assert tenant_a.client.delete(f"/v1/files/{kept}").json()["deleted"] is True
    assert_usage(tenant_a, 0)


def test_refused_store_credentials_are_a_403_that_leaves_nothing(
    request: pytest.FixtureRequest, tenant_a: Tenant, storage_kind: StorageKind
) -> None:
    if storage_kind.kind == "bedrock":
        moto: MotoS3 = request.getfixturevalue("moto_s3")
        add_bedrock_account(
            tenant_a, moto, request.getfixturevalue("s3_bucket"), name="stale", aws_secret_access_key="x"
        )
    else:
        front: GCSFront = request.getfixturevalue("gcs_front")
        unknown_key = new_service_account_key("stale@filegate-tests.iam.gserviceaccount.com").json(front.token_uri)
        add_vertex_account(
            tenant_a, front.url, request.getfixturevalue("gcs_bucket"), name="stale", credentials_file=unknown_key
        )
    response = upload(tenant_a.client, b"payload", account="stale")
    assert_error(response, 403, "upstream_authentication_failed")
    assert "WWW-Authenticate" not in response
    assert not File.objects.exists()
    assert_books_balanced(storage_books(tenant_a, storage_kind))


@contextmanager
def failing_midway(request: pytest.FixtureRequest, kind: StorageKind, tenant: Tenant) -> Iterator[str]:
    """An account of ``kind`` whose store fails, within the block, once the first 8 MiB part (or
    chunk) is in, or the disk fills after 8 MiB (``local``); yields the account's name."""
    if kind.kind == "local":
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8 * MIB, hard))
        try:
            yield kind.name
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        return
    if kind.kind == "vertex":
        front: GCSFront = request.getfixturevalue("gcs_front")
        front.fail(lambda method, path, query: method == "PUT" and "upload_id" in query, 503, passes=1)
        yield kind.name
        return
    # The account's IAM user loses the right to write once its first part has gone out.
    moto: MotoS3 = request.getfixturevalue("moto_s3")
    key_id, secret = moto.new_user("loses-write", allow("s3:*"))
    account = add_bedrock_account(
        tenant,
        moto,
        request.getfixturevalue("s3_bucket"),
        name="loses",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )
    parts: list[int] = []

    def on_part(params: dict[str, Any], **_: Any) -> None:
        parts.append(params["PartNumber"])
        if len(parts) == 2:
            policy = json.dumps(deny("s3:PutObject"))
            moto.client("iam").put_user_policy(UserName="loses-write", PolicyName="deny", PolicyDocument=policy)

    provider_for(account).store.client.meta.events.register("provide-client-params.s3.UploadPart", on_part)
    yield account.name


EXPECTED_MIDWAY = {
    "bedrock": (403, "upstream_authentication_failed"),
    "vertex": (502, "upstream_error"),
    "local": (503, "upstream_unavailable"),
}


@pytest.mark.parametrize("storage_kind", ["bedrock", "vertex", "local"], indirect=True)
def test_a_store_failure_midway_through_an_upload_leaves_nothing(
    request: pytest.FixtureRequest, tenant_a: Tenant, storage_kind: StorageKind
) -> None:
    content = numbered_bytes(20 * MIB)
    with failing_midway(request, storage_kind, tenant_a) as account:
        response = upload(tenant_a.client, content, account=account)
    assert_error(response, *EXPECTED_MIDWAY[storage_kind.kind])
    if storage_kind.kind == "local":
        assert response.json()["error"]["message"] == "The local file store cannot be written: File too large."
    assert not File.objects.exists()
    assert (storage_kind.bucket.names(), storage_kind.bucket.unfinished()) == ([], [])
    assert_books_balanced(storage_books(tenant_a, storage_kind))


def cut_download(request: pytest.FixtureRequest, kind: StorageKind, tenant: Tenant) -> tuple[str, Any]:
    """An account of ``kind`` and a way to make its store fail the next download after some megabytes
    (once: later answers pass whole)."""
    if kind.kind == "vertex":
        front: GCSFront = request.getfixturevalue("gcs_front")
        # The second 8 MiB range fails: the first megabytes have reached the client by then.
        return kind.name, lambda: front.fail(
            lambda method, path, query: method == "GET" and query.get("alt") == ["media"], 503, passes=1
        )
    proxy: CuttingProxy = request.getfixturevalue("moto_proxy")
    moto: MotoS3 = request.getfixturevalue("moto_s3")
    account = add_bedrock_account(
        tenant, moto, request.getfixturevalue("s3_bucket"), name="cut", endpoint_url=proxy.url
    )
    return account.name, lambda: proxy.cut_answers_after(3 * MIB, times=1)


def test_a_store_failure_midway_through_a_download_ends_the_stream_with_an_error(
    request: pytest.FixtureRequest, tenant_a: Tenant, storage_kind: StorageKind
) -> None:
    account, cut = cut_download(request, storage_kind, tenant_a)
    content = numbered_bytes(10 * MIB)
    file_id = upload(tenant_a.client, content, account=account).json()["id"]
    cut()
    response = tenant_a.client.get(f"/v1/files/{file_id}/content")
    assert response.status_code == 200 and response["Content-Length"] == str(len(content))
    received = bytearray()
    with pytest.raises(UpstreamError):
        for chunk in response.streaming_content:
            received += chunk
    assert 0 < len(received) < len(content)
    assert content.startswith(received)
    assert File.objects.get(public_id=file_id).deleted_at is None
    assert_usage(tenant_a, len(content))
    on_bucket = dataclasses.replace(storage_kind, account=ProviderAccount.objects.get(name=account))
    assert_books_balanced(storage_books(tenant_a, on_bucket))
