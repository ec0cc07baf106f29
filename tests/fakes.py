"""In-memory test doubles that implement the real interfaces."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from django.conf import settings

from config import errors
from providers.base import (
    ALL_OPERATIONS,
    Content,
    ObjectStoreProvider,
    Provider,
    RemoteFile,
    UploadOptions,
    UploadStream,
)
from providers.fields import Field
from providers.local import FolderStore

FAILURES = {
    "rejected": lambda: errors.UpstreamRejected("upstream said no", status_code=400),
    "rate_limited": lambda: errors.UpstreamRateLimited(headers={"Retry-After": "7"}),
    "error": lambda: errors.UpstreamError(),
    "unavailable": lambda: errors.UpstreamUnavailable(),
    "timeout": lambda: errors.UpstreamTimeout(),
    "bug": lambda: RuntimeError("a bug inside the provider"),
}


class FakeProvider(Provider):
    """A provider with a Files API of its own, kept in memory.

    ``FakeProvider.fail_on[operation] = "timeout"`` makes that operation raise the matching error
    (``"bug"`` raises a plain ``RuntimeError``, to test the 500 path). State is class-wide so the
    tests can inspect what the gateway sent; ``reset()`` clears it.
    """

    kind = "fake"
    label = "fake"
    fields = (Field("base_url", "Base URL", type="url"), Field("api_key", "API key", secret=True, header=True))
    capabilities: ClassVar[frozenset[str]] = ALL_OPERATIONS
    files: ClassVar[dict[str, tuple[RemoteFile, bytes]]] = {}
    fail_on: ClassVar[dict[str, str]] = {}
    calls: ClassVar[list[str]] = []
    _ids = itertools.count(1)
    _lock = threading.Lock()

    @classmethod
    def reset(cls) -> None:
        cls.files.clear()
        cls.fail_on.clear()
        cls.calls.clear()

    def _maybe_fail(self, operation: str) -> None:
        self.calls.append(operation)
        failure = self.fail_on.get(operation)
        if failure:
            raise FAILURES[failure]()

    def upload(self, stream: UploadStream, options: UploadOptions) -> RemoteFile:
        self._maybe_fail("upload")
        data = bytearray()
        for chunk in stream:
            data += chunk
        with self._lock:
            file_id = f"fake-{next(self._ids):06d}"
        remote = RemoteFile(
            id=file_id,
            bytes=len(data),
            created_at=int(time.time()),
            filename=options.filename,
            purpose=options.purpose,
            status="processed",
        )
        self.files[file_id] = (remote, bytes(data))
        return remote

    def iter_pages(
        self, *, purpose: str | None, order: str, after: str | None, page_size: int
    ) -> Iterator[list[RemoteFile]]:
        """Pages of ``page_size`` like a paging upstream; each page is one ``list`` call."""
        while True:
            self._maybe_fail("list")
            items = sorted((remote for remote, _ in self.files.values()), key=lambda r: r.id, reverse=order == "desc")
            if purpose:
                items = [r for r in items if r.purpose == purpose]
            if after:
                ids = [r.id for r in items]
                items = items[ids.index(after) + 1 :] if after in ids else []
            page = items[:page_size]
            yield page
            if len(items) <= page_size or not page:
                return
            after = page[-1].id

    def retrieve(self, remote_id: str) -> RemoteFile:
        self._maybe_fail("retrieve")
        if remote_id not in self.files:
            raise errors.FileNotFound(f"No such File object: {remote_id}", param="id")
        return self.files[remote_id][0]

    def delete(self, remote_id: str) -> bool:
        self._maybe_fail("delete")
        return self.files.pop(remote_id, None) is not None

    def open_content(self, remote_id: str) -> Content:
        self._maybe_fail("content")
        if remote_id not in self.files:
            raise errors.FileNotFound(f"No such File object: {remote_id}", param="id")
        data = self.files[remote_id][1]
        return Content(chunks=iter([data[i : i + 4] for i in range(0, len(data), 4)] or [b""]), size=len(data))

    def check(self) -> None:
        self._maybe_fail("check")


def make_config(**overrides: Any) -> dict[str, Any]:
    return {"base_url": "http://fake.invalid", "api_key": "sk-fake", **overrides}


class CloudStoreProvider(ObjectStoreProvider):
    """A storage kind that exists only in the tests, shaped like the ones to come (Bedrock, Vertex):
    a required bucket, a region with a default, an encryption choice, a service-account JSON uploaded
    as a file (secret), an endpoint URL. Its files go to a local folder.

    ``check()`` of an account whose bucket is ``explode`` raises a ``LookupError`` that quotes the
    credentials: a bug, as an admin action must survive it.
    """

    kind = "cloudstore"
    label = "Cloud store"
    fields: ClassVar[tuple[Field, ...]] = (
        Field("bucket", "Bucket", "Where the files go.", required=True),
        Field("region", "Region", "The bucket's region.", default="eu-west-1"),
        Field("encryption", "Encryption", "Server-side encryption.", type="choice", choices=("AES256", "aws:kms")),
        Field("credentials_file", "Service account JSON", "The key file.", type="json", secret=True),
        Field("endpoint_url", "Endpoint URL", "For a compatible store.", type="url"),
        Field("timeout", "Timeout (seconds)", type="seconds"),
    )

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.store = FolderStore(Path(settings.DATA_DIR) / "cloudstore")

    def check(self) -> None:
        if self.config.get("bucket") == "explode":
            raise LookupError(f"a bug that quotes a secret: {self.config.get('credentials_file')}")
        super().check()
