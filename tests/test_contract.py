"""One contract for every provider kind: the official ``openai`` SDK against a live gateway.

Each test runs once per kind. The kinds with a Files API of their own talk to the fake upstreams
(``tests/upstreams.py``, ``tests/upstream_anthropic.py``, ``tests/upstream_groq.py``: real HTTP on
127.0.0.1); ``local`` stores in the test's data folder, ``bedrock`` in a bucket of moto's S3 server
and ``vertex`` in one of the GCS emulator, both looked at from outside (``tests/storage_kinds.py``).
Where a kind legitimately differs from OpenAI (Groq keeps batch files only, Anthropic keeps uploads
to itself), ``Traits`` says how, and the contract checks that difference instead of skipping. A new
kind joins in ``account_on`` (and ``TRAITS`` if it differs).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import openai
import pytest
from django.conf import settings
from openai import OpenAI
from openai.types import FileDeleted, FileObject

from tenants.models import Organization
from tests.conftest import Tenant, batch_file, batch_line
from tests.storage_kinds import (
    BEDROCK_MODEL,
    VERTEX_MODEL,
    BucketView,
    add_bedrock_account,
    add_vertex_account,
    gcs_view,
    s3_view,
)
from tests.upstream_server import FakeServer
from tests.upstreams import add_upstream_account

FAKES = {"openai": "fake_openai", "azure_openai": "fake_azure", "anthropic": "fake_anthropic", "groq": "fake_groq"}
KINDS = ["local", *FAKES, "bedrock", "vertex"]
BATCH_MODELS = {"bedrock": BEDROCK_MODEL, "vertex": VERTEX_MODEL}  # the rest take any model
MISSING_ID = "file-doesnotexist000000000"


@dataclass(frozen=True)
class Traits:
    """How a kind differs from OpenAI, as a client sees it."""

    purpose: str = "assistants"  # what the contract uploads with
    other_purpose: str | None = "batch"  # a second purpose it takes (None: only made upstream)
    refused_purpose: str | None = None  # one it refuses before a byte goes upstream
    downloads_uploads: bool = True  # whether an uploaded file's content can be downloaded
    first_status: str = "processed"  # the status an upload answers with


TRAITS = {
    "azure_openai": Traits(first_status="pending"),
    "anthropic": Traits(other_purpose="vision", refused_purpose="batch", downloads_uploads=False),
    "groq": Traits(purpose="batch", other_purpose=None, refused_purpose="assistants"),
}


@dataclass
class Contract:
    kind: str
    account: str
    tenant: Tenant
    sdk: OpenAI
    upstream: FakeServer | None  # None: the gateway stores the bytes itself
    traits: Traits
    bucket: BucketView | None = None  # bedrock and vertex: the account's bucket, seen from outside

    @property
    def filename(self) -> str:
        return "data.jsonl" if self.traits.purpose == "batch" else "data.bin"

    def content(self, size: int = 2 * 1024 * 1024 + 11) -> bytes:
        """A file of about ``size`` bytes of the contract's purpose (batch files must be JSONL)."""
        return batch_file(size) if self.traits.purpose == "batch" else binary_content(size)

    def stored_count(self) -> int:
        """How many files the provider holds (upstream, in the bucket, or on disk for ``local``)."""
        if self.upstream is not None:
            return len(self.upstream.files)
        if self.bucket is not None:
            assert self.bucket.unfinished() == []  # no multipart upload left open either
            return len(self.bucket.names())
        root = settings.DATA_DIR / "files"
        return sum(1 for path in root.rglob("*") if path.is_file()) if root.exists() else 0

    def stored_bytes(self, created: FileObject) -> bytes:
        """The bytes the gateway stored for ``created``, read behind its back (storage-backed kinds)."""
        if self.bucket is not None:
            return self.bucket.object_at((created.model_extra or {})["storage_uri"])
        return (settings.DATA_DIR / "files" / self.tenant.org.slug / created.id).read_bytes()

    def batch_line(self, custom_id: str) -> bytes:
        """An OpenAI batch line this kind accepts (Bedrock and Vertex rewrite it for their model)."""
        model = BATCH_MODELS.get(self.kind, "gpt-4o-mini")
        return batch_line(custom_id, body={"model": model, "messages": [{"role": "user", "content": "hi"}]})

    def used_bytes(self) -> int:
        org = Organization.objects.get(pk=self.tenant.org.pk)
        assert org.reserved_bytes == 0
        return org.used_bytes


def sdk_for(live_server, tenant: Tenant, account: str) -> OpenAI:
    # max_retries=0: a retried request would hide which error the gateway gave first.
    return OpenAI(
        base_url=f"{live_server.url}/v1",
        api_key=tenant.key,
        default_headers={"X-Provider-Account": account},
        max_retries=0,
        timeout=30,
    )


def account_on(
    kind: str, request: pytest.FixtureRequest, tenant: Tenant
) -> tuple[str, FakeServer | None, BucketView | None]:
    """An account of ``kind`` for ``tenant``: its name, and the fake upstream or the bucket behind it."""
    if kind == "local":
        return tenant.account.name, None, None
    if kind == "bedrock":
        bucket = request.getfixturevalue("s3_bucket")
        account = add_bedrock_account(tenant, request.getfixturevalue("moto_s3"), bucket)
        return account.name, None, s3_view(request.getfixturevalue("s3_admin"), bucket)
    if kind == "vertex":
        account = add_vertex_account(
            tenant, request.getfixturevalue("gcs_front").url, request.getfixturevalue("gcs_bucket")
        )
        return account.name, None, gcs_view(request.getfixturevalue("gcs_admin_bucket"))
    server = request.getfixturevalue(FAKES[kind])
    return add_upstream_account(tenant, server).name, server, None


@pytest.fixture(params=KINDS)
def contract(request: pytest.FixtureRequest, live_server, tenant_a: Tenant) -> Iterator[Contract]:
    account, upstream, bucket = account_on(request.param, request, tenant_a)
    sdk = sdk_for(live_server, tenant_a, account)
    traits = TRAITS.get(request.param, Traits())
    yield Contract(
        kind=request.param, account=account, tenant=tenant_a, sdk=sdk, upstream=upstream, traits=traits, bucket=bucket
    )
    sdk.close()


def binary_content(size: int = 2 * 1024 * 1024 + 11) -> bytes:
    """Random bytes with multipart framing look-alikes inside, over more than one chunk."""
    return os.urandom(size // 2) + b"\r\n--boundary\r\nContent-Disposition: x\r\n\r\n" + os.urandom(size // 2)


def create(
    contract: Contract, content: bytes, *, filename: str | None = None, purpose: str | None = None
) -> FileObject:
    return contract.sdk.files.create(
        file=(filename or contract.filename, content, "application/octet-stream"),
        purpose=purpose or contract.traits.purpose,  # type: ignore[arg-type]
    )


def test_it_uploads_and_retrieves(contract):
    content = contract.content()
    created = create(contract, content)
    assert (created.object, created.bytes, created.filename, created.purpose, created.status) == (
        "file",
        len(content),
        contract.filename,
        contract.traits.purpose,
        contract.traits.first_status,
    )
    retrieved = contract.sdk.files.retrieve(created.id)
    assert (retrieved.id, retrieved.bytes, retrieved.filename, retrieved.purpose, retrieved.status) == (
        created.id,
        len(content),
        contract.filename,
        contract.traits.purpose,
        "processed",
    )
    assert retrieved.created_at == created.created_at
    assert contract.stored_count() == 1
    assert contract.used_bytes() == len(content)
    if contract.upstream is not None:
        [received] = contract.upstream.uploads
        assert received.sha256 == hashlib.sha256(content).hexdigest()
        assert contract.upstream.content_of(created.id) == content
    else:
        assert contract.stored_bytes(created) == content


def test_it_honours_expires_after(contract):
    created = contract.sdk.files.create(
        file=(contract.filename, contract.content(100)),
        purpose=contract.traits.purpose,  # type: ignore[arg-type]
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert created.expires_at is not None and abs(created.expires_at - created.created_at - 3600) <= 2


def other_purpose_file(contract: Contract) -> tuple[str, str]:
    """A file of another purpose than the contract's, and that purpose: uploaded where the kind takes
    a second purpose, else made upstream (Groq's own batch results)."""
    if contract.traits.other_purpose is not None:
        other = contract.traits.other_purpose
        content = contract.batch_line("only") if other == "batch" else b"other"
        return create(contract, content, filename="b.jsonl", purpose=other).id, other
    assert contract.upstream is not None
    return contract.upstream.add_file(b"{}\n", filename="out.jsonl", purpose="batch_output"), "batch_output"


def test_it_lists_with_paging(contract):
    purpose = contract.traits.purpose
    ids = [create(contract, contract.content(100), filename=f"{n}.jsonl").id for n in range(3)]
    other, other_purpose = other_purpose_file(contract)
    first = contract.sdk.files.list(limit=2, purpose=purpose)
    assert [f.id for f in first.data] == [ids[2], ids[1]] and first.has_more
    assert [f.id for f in contract.sdk.files.list(limit=2, purpose=purpose)] == ids[::-1]  # auto-paging
    assert [f.id for f in contract.sdk.files.list(limit=2, order="asc", purpose=purpose)] == ids
    assert [f.id for f in contract.sdk.files.list(purpose=other_purpose)] == [other]
    assert len(list(contract.sdk.files.list())) == 4


def made_before(contract: Contract, count: int) -> list[str]:
    """``count`` files made before the test's uploads, oldest first: seeded upstream, or uploaded."""
    if contract.upstream is not None:
        return contract.upstream.seed(count, content=contract.content(10))
    return [create(contract, contract.content(10)).id for _ in range(count)]


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_auto_pagination_walks_every_file_exactly_once_in_order(contract, order):
    oldest_first = made_before(contract, 10) + [create(contract, contract.content(10)).id for _ in range(3)]
    pages = list(contract.sdk.files.list(limit=4, order=order).iter_pages())
    walked = [f.id for page in pages for f in page.data]
    assert walked == (oldest_first if order == "asc" else oldest_first[::-1])
    assert [len(page.data) for page in pages] == [4, 4, 4, 1]
    assert [page.has_more for page in pages] == [True, True, True, False]


def test_it_streams_content_byte_for_byte(contract):
    content = contract.content()
    file_id = create(contract, content).id
    if not contract.traits.downloads_uploads:
        with pytest.raises(openai.BadRequestError) as raised:
            contract.sdk.files.content(file_id)
        assert raised.value.code == "file_not_downloadable"
        assert contract.upstream is not None and contract.upstream.calls("GET", f"/{file_id}/content") == []
        file_id = contract.upstream.add_file(content, filename="made-by-a-tool.bin")  # as the provider's tools do
    assert contract.sdk.files.content(file_id).read() == content
    with contract.sdk.files.with_streaming_response.content(file_id) as response:
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["content-length"] == str(len(content))
        assert b"".join(response.iter_bytes()) == content


def test_it_deletes_and_releases_the_quota(contract):
    content = contract.content(4096)
    file_id = create(contract, content).id
    deleted = contract.sdk.files.delete(file_id)
    assert isinstance(deleted, FileDeleted) and (deleted.id, deleted.deleted, deleted.object) == (file_id, True, "file")
    assert contract.stored_count() == 0
    assert contract.used_bytes() == 0
    with pytest.raises(openai.NotFoundError):
        contract.sdk.files.retrieve(file_id)
    with pytest.raises(openai.NotFoundError):
        contract.sdk.files.delete(file_id)


def test_unknown_ids_are_not_found(contract):
    for call in (contract.sdk.files.retrieve, contract.sdk.files.content, contract.sdk.files.delete):
        with pytest.raises(openai.NotFoundError) as raised:
            call(MISSING_ID)
        assert raised.value.response.json()["error"]["type"] == "invalid_request_error"


def test_another_organizations_file_is_not_found(contract, request, live_server, tenant_b):
    file_id = create(contract, contract.content(100)).id
    account, _, _ = account_on(contract.kind, request, tenant_b)  # the same upstream, for pass-through kinds
    with sdk_for(live_server, tenant_b, account) as other:
        for call in (other.files.retrieve, other.files.content, other.files.delete):
            with pytest.raises(openai.NotFoundError):
                call(file_id)
        assert file_id not in [f.id for f in other.files.list()]
    assert contract.sdk.files.retrieve(file_id).id == file_id


def test_a_rejected_upload_leaves_nothing_behind(contract):
    lines = b"".join(contract.batch_line(f"req-{n}") for n in range(20_000)) + b"not json\n"
    with pytest.raises(openai.BadRequestError) as raised:
        create(contract, lines, filename="batch.jsonl", purpose="batch")
    refuses_batch = contract.traits.refused_purpose == "batch"
    assert raised.value.code == ("unsupported_purpose" if refuses_batch else "invalid_batch_file")
    with pytest.raises(openai.BadRequestError) as raised:
        create(contract, b"abc", purpose="nonsense")
    assert raised.value.param == "purpose"
    assert contract.stored_count() == 0
    assert contract.used_bytes() == 0
    assert list(contract.sdk.files.list()) == []


def test_a_purpose_the_provider_cannot_use_is_refused_before_upload(contract):
    refused = contract.traits.refused_purpose
    if refused is None:
        created = create(contract, contract.batch_line("ok"), filename="b.jsonl", purpose="batch")
        assert created.purpose == "batch"  # every purpose OpenAI has works on this kind
        return
    with pytest.raises(openai.BadRequestError) as raised:
        create(contract, contract.content(100), filename="a.jsonl", purpose=refused)
    body = raised.value.response.json()["error"]
    assert (body["param"], body["code"]) == ("purpose", "unsupported_purpose")
    assert contract.traits.purpose in body["message"] and repr(refused) in body["message"]
    assert contract.upstream is not None and contract.upstream.requests == []
    assert contract.used_bytes() == 0


def test_files_made_outside_the_gateway_stay_reachable(contract):
    if contract.upstream is None:
        pytest.skip("only kinds with a Files API of their own have files the gateway did not make")
    content = binary_content(10_000)
    file_id = contract.upstream.add_file(content, filename="outside.txt")
    assert contract.sdk.files.retrieve(file_id).filename == "outside.txt"
    assert contract.sdk.files.content(file_id).read() == content
    assert contract.sdk.files.delete(file_id).deleted is True
    assert contract.upstream.files == {}
    assert contract.used_bytes() == 0
