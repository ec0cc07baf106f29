"""The provider interface, the values it returns, and the shared bases.

A provider is built from plain keyword arguments (one tenant account's settings and secrets) and
does the five operations of the Files API against one upstream. It never sees a model and never
lets an SDK, HTTP or OS exception escape: everything becomes a ``config.errors.GatewayError``.
"""

from __future__ import annotations

import re
import secrets
import string
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from django.core.exceptions import ImproperlyConfigured

from config.errors import FileNotDownloadable, FileNotFound, InvalidRequest, UnsupportedOperation
from providers.fields import Field

# Upload and download chunks: big enough that per-chunk overhead vanishes, small enough that
# memory per transfer stays bounded whatever the file size.
CHUNK_SIZE = 1024 * 1024

UPLOAD = "upload"
LIST = "list"
RETRIEVE = "retrieve"
CONTENT = "content"
DELETE = "delete"
ALL_OPERATIONS = frozenset({UPLOAD, LIST, RETRIEVE, CONTENT, DELETE})

_ID_ALPHABET = string.ascii_letters + string.digits
_MINTED_ID = re.compile(r"file-[A-Za-z0-9]{24}")


def mint_file_id() -> str:
    """An opaque id for files the gateway stores itself: ``file-`` and 24 random characters."""
    return "file-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def is_minted_file_id(value: str) -> bool:
    """Whether ``value`` has the shape of an id ``mint_file_id`` makes."""
    return _MINTED_ID.fullmatch(value) is not None


class UploadStream(Protocol):
    """What ``upload()`` reads from: chunks of the file as they arrive, checked on the way.

    Iterating yields chunks; ``read(n)`` returns at most ``n`` bytes (``b""`` at the end). Reading
    may raise a ``GatewayError`` (too large, invalid batch line, client gone); the provider must let
    it propagate unchanged and leave nothing behind upstream.
    """

    def read(self, size: int = -1) -> bytes: ...

    def __iter__(self) -> Iterator[bytes]: ...


@dataclass(frozen=True)
class RemoteFile:
    """One file as the provider knows it, already in OpenAI's vocabulary."""

    id: str
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str = "processed"
    expires_at: int | None = None
    status_details: str | None = None
    storage_key: str = ""  # object-store kinds: where the bytes are
    storage_uri: str = ""  # object-store kinds: s3://... or gs://... for batch jobs
    downloadable: bool = True  # False where the provider keeps the bytes to itself (Anthropic uploads)


@dataclass
class Content:
    """A file's bytes on their way to the client: the chunks, the size when the provider knows
    it (then the response carries ``Content-Length``), and the media type.

    ``chunks`` releases whatever it streams from (an HTTP response, an open file) when it is
    exhausted or closed.
    """

    chunks: Iterator[bytes]
    size: int | None = None
    media_type: str = "application/octet-stream"


@dataclass(frozen=True)
class StoredObject:
    """An object found in a store (for reconciliation)."""

    key: str
    size: int
    modified_at: float | None = None  # unix seconds of its last write, where the store says


class Store(Protocol):
    """The bytes side of a storage-backed kind: an S3 bucket, a GCS bucket or a local folder.

    Keys are built by the gateway, never taken from a client, and are relative to ``prefix``.
    Every method raises only ``config.errors`` classes: ``FileNotFound`` for a missing object (or
    a key no object can have), ``UpstreamRejected`` (403, ``upstream_authentication_failed``) when
    the store refuses the credentials, ``UpstreamUnavailable`` when it cannot be reached,
    ``UpstreamTimeout`` when it does not answer in time, ``UpstreamError`` when it answers with a
    failure.
    """

    uri_scheme: str  # "s3", "gs" or "file"
    bucket: str  # "" for a local folder
    prefix: str  # "" or "folder/": prepended to every key, so keys are relative to it

    def save(self, key: str, chunks: Iterable[bytes], *, content_type: str) -> int:
        """Write the object while ``chunks`` arrive; return its size in bytes.

        ``chunks`` is read once, in order, and may be consumed in another thread. Memory stays
        bounded by a couple of 8 MiB parts whatever the size. If ``chunks`` raises (a refused
        upload) or the store fails, no object and no unfinished multipart upload is left behind,
        and the exception propagates (``chunks``' own exception unchanged).
        """
        ...

    def open(self, key: str) -> Content:
        """The object's bytes, streamed, with its size. ``FileNotFound`` before the first chunk if missing."""
        ...

    def delete(self, key: str) -> bool:
        """Remove the object. Returns ``False`` if it was already gone (which counts as deleted)."""
        ...

    def iter_objects(self, prefix: str) -> Iterator[StoredObject]:
        """Every object whose key starts with ``prefix``, in key order (by code point), paging through
        large buckets. Reconciliation walks records alongside in the same order."""
        ...

    def check(self) -> None:
        """Prove the store is reachable and writable: write, read back and delete a probe object."""
        ...


@dataclass(frozen=True)
class Page:
    data: list[RemoteFile]
    has_more: bool


# The upload's optional headers (names as clients send them; the x-tfy- ones are TrueFoundry's).
MODEL_HEADER = "X-Provider-Model"
MODEL_HEADER_ALIAS = "x-tfy-provider-model"
REGION_HEADER = "x-tfy-vertex-region"
BUCKET_HEADER = "x-tfy-vertex-storage-bucket-name"


@dataclass(frozen=True)
class UploadHints:
    """What a client said about its upload in headers, checked for shape at the edge ("" when absent).

    ``model`` names the model for batch lines without ``body.model`` where a kind rewrites them;
    ``region`` and ``bucket`` are Vertex's (``providers.vertex``): the other kinds refuse them. None
    of them is ever a location: a bucket is a name the account must list, never a URI or a key.
    """

    model: str = ""
    region: str = ""
    bucket: str = ""


@dataclass(frozen=True)
class UploadOptions:
    """What the gateway knows about an upload before the first byte goes upstream."""

    filename: str
    purpose: str
    namespace: str  # the organisation's folder for object-store kinds
    content_type: str = "application/octet-stream"
    expires_after_seconds: int | None = None
    size_hint: int | None = None  # upper bound of the file size when the request declared one
    hints: UploadHints = field(default_factory=UploadHints)


class Provider:
    """Base of every provider kind.

    Subclasses declare ``kind``, the settings they accept (``fields``, see ``providers.fields``),
    and ``capabilities``: the operations they can do. The gateway refuses the others with
    ``UnsupportedOperation`` before any network call.
    """

    kind: ClassVar[str] = ""
    label: ClassVar[str] = ""
    fields: ClassVar[tuple[Field, ...]] = ()
    # Derived from ``fields`` for each subclass.
    settings_fields: ClassVar[frozenset[str]] = frozenset()
    secret_fields: ClassVar[frozenset[str]] = frozenset()
    required_fields: ClassVar[frozenset[str]] = frozenset()
    capabilities: ClassVar[frozenset[str]] = ALL_OPERATIONS
    purposes: ClassVar[frozenset[str] | None] = None  # None: every purpose the API accepts
    stores_files: ClassVar[bool] = False  # True: list/retrieve are served from the gateway's records
    not_downloadable_message: ClassVar[str] = "The provider does not let this file's content be downloaded."

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.settings_fields = frozenset(field.name for field in cls.fields if not field.secret)
        cls.secret_fields = frozenset(field.name for field in cls.fields if field.secret)
        cls.required_fields = frozenset(field.name for field in cls.fields if field.required)

    def __init__(self, **config: Any) -> None:
        unknown = set(config) - self.settings_fields - self.secret_fields
        if unknown:
            raise ImproperlyConfigured(f"{self.kind}: unknown settings {', '.join(sorted(unknown))}")
        missing = {name for name in self.required_fields if not config.get(name)}
        if missing:
            raise ImproperlyConfigured(f"{self.kind}: missing settings {', '.join(sorted(missing))}")
        self.config = config

    def can(self, operation: str, file: RemoteFile | None = None) -> bool:
        """Whether this kind can do ``operation`` (on ``file``, when the answer depends on the file:
        the content of a file that is not ``downloadable`` stays with the provider)."""
        is_kept = operation == CONTENT and file is not None and not file.downloadable
        return operation in self.capabilities and not is_kept

    def require(self, operation: str, file: RemoteFile | None = None) -> None:
        """Raise ``UnsupportedOperation`` unless this kind can do ``operation`` (on ``file``):
        ``FileNotDownloadable`` when the kind downloads files but not this one."""
        if self.can(operation, file):
            return
        if self.can(operation):
            raise FileNotDownloadable(self.not_downloadable_message, param="id")
        raise UnsupportedOperation(f"The {self.label or self.kind} provider does not support {operation} of files.")

    def check_hints(self, hints: UploadHints) -> None:
        """Refuse, before any byte is read, what the client asked in headers that this kind cannot honour.

        Raises ``InvalidRequest`` naming the header. By default the model is used where batch lines
        are rewritten and ignored elsewhere, and Vertex's region and bucket are refused: honouring
        them silently nowhere would store the file somewhere the client did not ask for.
        """
        for header, value in ((REGION_HEADER, hints.region), (BUCKET_HEADER, hints.bucket)):
            if value:
                raise InvalidRequest(
                    f"The {header} header applies to Vertex accounts only, not to {self.label or self.kind}.",
                    param=header,
                )

    def needs_openai_batch_lines(self, options: UploadOptions) -> bool:
        """Whether the gateway must check this upload's lines against OpenAI's batch-line rules as they arrive.

        Yes for every ``purpose=batch`` upload, unless the kind's ``transform`` checks each line
        itself (the kinds that rewrite batch files: they check OpenAI lines by the same rules, and
        accept their provider's native lines too).
        """
        return options.purpose == "batch"

    def transform(self, chunks: Iterable[bytes], options: UploadOptions) -> Iterable[bytes]:
        """The bytes the provider is to store for the bytes that arrive (default: the same bytes).

        The upload path applies it between the checks of the bytes as they arrive and those of the
        bytes as they are stored (size limit, checksum, and the quota once the file is recorded),
        and hands its output to ``upload``.
        Kinds that rewrite batch files do it here, one line at a time. Raises ``InvalidRequest``
        for what cannot be rewritten.
        """
        return chunks

    def upload(self, stream: UploadStream, options: UploadOptions) -> RemoteFile:
        """Store the file read from ``stream`` (already through ``transform``); return it as the provider now knows it.

        Raises ``InvalidRequest``/``PayloadTooLarge`` (from the stream or the upstream), and the
        ``Upstream*`` errors. On any error nothing is left behind upstream.
        """
        raise NotImplementedError

    def iter_pages(
        self, *, purpose: str | None, order: str, after: str | None, page_size: int
    ) -> Iterator[list[RemoteFile]]:
        """The upstream's files after ``after`` in ``order`` (by creation time), one upstream page at a
        time, fetched lazily: the gateway stops reading once it has filled the client's page.

        ``purpose`` is a hint the upstream may filter on; the gateway filters again with its records.
        ``page_size`` is how many files the gateway expects to need. Kinds that store files
        themselves (``stores_files``) are listed from the gateway's records instead.
        """
        raise NotImplementedError

    def retrieve(self, remote_id: str) -> RemoteFile:
        """The file's current metadata. Raises ``FileNotFound`` if the upstream has no such file."""
        raise NotImplementedError

    def delete(self, remote_id: str) -> bool:
        """Delete the file upstream. Idempotent: a file already gone counts as deleted.

        Returns ``False`` if the upstream said the file was already gone, else ``True``.
        """
        raise NotImplementedError

    def open_content(self, remote_id: str) -> Content:
        """The file's bytes (streamed, released when the chunks are closed), size and media type.

        Raises ``FileNotFound`` before the first chunk if the file is gone.
        """
        raise NotImplementedError

    def check(self) -> None:
        """Make one cheap authenticated call; raise the mapped error if it fails."""
        raise NotImplementedError


class ObjectStoreProvider(Provider):
    """Base of the kinds where the gateway stores the bytes itself (``local``, ``bedrock``, ``vertex``).

    Ids are minted here; list and retrieve are answered from the gateway's records, so this base
    only stores, streams and deletes objects. Subclasses build ``self.store`` and may rewrite
    batch lines on the way in (``transform``). A file's ``storage_key`` is its reference for
    ``open_content`` and ``delete``: its key in ``self.store``, unless a kind that keeps files in
    more than one bucket says otherwise (``store_for``, ``object_ref``, ``locate``).
    """

    stores_files = True
    capabilities = ALL_OPERATIONS
    store: Store

    def object_key(self, namespace: str, file_id: str) -> str:
        return f"{namespace}/{file_id}"

    def store_for(self, options: UploadOptions) -> Store:
        """The store this upload goes to."""
        return self.store

    def object_ref(self, store: Store, key: str) -> str:
        """The reference recorded for the object ``key`` in ``store`` (its ``storage_key``)."""
        return key

    def locate(self, ref: str) -> tuple[Store, str]:
        """The store and key a recorded reference names; ``FileNotFound`` if it names none."""
        return self.store, ref

    def upload(self, stream: UploadStream, options: UploadOptions) -> RemoteFile:
        store = self.store_for(options)
        file_id = mint_file_id()
        key = self.object_key(options.namespace, file_id)
        size = store.save(key, stream, content_type=options.content_type)
        now = int(time.time())
        expires_at = now + options.expires_after_seconds if options.expires_after_seconds else None
        return RemoteFile(
            id=file_id,
            bytes=size,
            created_at=now,
            filename=options.filename,
            purpose=options.purpose,
            status="processed",
            expires_at=expires_at,
            storage_key=self.object_ref(store, key),
            storage_uri=f"{store.uri_scheme}://{store.bucket}/{store.prefix}{key}" if store.bucket else "",
        )

    def retrieve(self, remote_id: str) -> RemoteFile:
        raise FileNotFound(f"No such File object: {remote_id}", param="id")

    def delete(self, remote_id: str) -> bool:
        store, key = self.locate(remote_id)
        return store.delete(key)

    def open_content(self, remote_id: str) -> Content:
        store, key = self.locate(remote_id)
        return store.open(key)

    def check(self) -> None:
        self.store.check()

    def stores(self) -> list[Store]:
        """Every store this account's files may be in (reconciliation lists each of them)."""
        return [self.store]


def iter_chunks(stream: UploadStream | Iterable[bytes]) -> Iterator[bytes]:
    """Iterate any upload stream or chunk iterable, skipping empty chunks."""
    for chunk in stream:
        if chunk:
            yield chunk


@dataclass
class ByteCounter:
    """Wraps a chunk iterator and counts what went through."""

    source: Iterable[bytes]
    total: int = field(default=0)

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.source:
            self.total += len(chunk)
            yield chunk
