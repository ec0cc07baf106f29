"""``vertex``: files for Google Vertex AI, kept by the gateway in the account's GCS buckets.

Vertex AI has no Files API: its batch prediction jobs read JSONL from Cloud Storage. The gateway
stores each file at ``{prefix}{org}/{file id}`` in the account's bucket through
``providers.gcs.GCSStore`` (resumable upload in 8 MiB chunks, never finalised after a failure) and
answers list and retrieve from its records. A ``purpose=batch`` upload is rewritten line by line
into Vertex requests for Gemini while it streams (``providers.batch_vertex.VertexRewriter``;
``X-Provider-Model`` names the model for lines without ``body.model``, and each line's
``custom_id`` travels in ``request.labels``). The file object's ``storage_uri``
(``gs://bucket/name``) is what a batch prediction job takes as ``inputConfig.gcsSource.uris``.

TrueFoundry's headers are honoured: ``x-tfy-vertex-storage-bucket-name`` stores the file in another
bucket, only one the account lists in ``allowed_buckets`` (any other is a 400), and
``x-tfy-vertex-region`` must match the account's ``location`` when it has one (a file in its
buckets is for jobs there). Since files of one account can live in several buckets, a file's
``storage_key`` is ``{bucket}/{key}``.

Settings: ``bucket`` (required), ``allowed_buckets``, ``prefix``, ``project``, ``location``,
``credentials_file`` (the service account's JSON key, secret) or the default Google credentials,
and ``endpoint_url`` for an emulator (operators only: with it, requests would go wherever it points).
"""

from __future__ import annotations

import re
import threading
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured

from config.errors import FileNotFound, GatewayError, InvalidRequest
from providers.base import BUCKET_HEADER, REGION_HEADER, Store, UploadHints, UploadOptions
from providers.batch import RewritingStoreProvider
from providers.batch_vertex import VertexRewriter
from providers.fields import Field
from providers.gcs import GCSStore

# Cloud Storage bucket names: lowercase letters, digits, "-", "_" and ".", starting and ending
# with a letter or digit (https://cloud.google.com/storage/docs/buckets#naming).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
_SEPARATORS = re.compile(r"[\s,]+")


class VertexProvider(RewritingStoreProvider):
    kind = "vertex"
    label = "Google Vertex AI"
    fields: ClassVar[tuple[Field, ...]] = (
        Field(
            "bucket",
            "GCS bucket",
            "Where this account's files are stored, unless the client picks one of the allowed buckets.",
            required=True,
            header=True,
        ),
        Field(
            "allowed_buckets",
            "Other allowed buckets",
            "Buckets a client may pick instead with the x-tfy-vertex-storage-bucket-name header, separated by commas.",
            header=True,
        ),
        Field("prefix", "Object name prefix", "A folder in the buckets for the gateway's files, e.g. filegate/."),
        Field("project", "Project ID", "The Google Cloud project (default: the credentials' own).", header=True),
        Field(
            "location",
            "Location",
            "The region this account's batch jobs run in, e.g. us-central1: an upload whose "
            "x-tfy-vertex-region header names another one is refused.",
            header=True,
        ),
        Field(
            "credentials_file",
            "Service account key (JSON)",
            "The service account's JSON key file; the gateway's default Google credentials when not set.",
            type="json",
            secret=True,
        ),
        Field(
            "endpoint_url",
            "Endpoint URL",
            "A Cloud Storage emulator instead of Google Cloud Storage.",
            type="url",
            operator_only=True,
        ),
    )

    def __init__(self, **config: Any) -> None:
        """Raises ``ImproperlyConfigured`` for a malformed bucket name or unusable credentials."""
        super().__init__(**config)
        self.bucket = _bucket_name(str(config["bucket"]))
        allowed = _SEPARATORS.split(str(config.get("allowed_buckets") or "").strip())
        self.allowed_buckets = frozenset({self.bucket, *(_bucket_name(name) for name in allowed if name)})
        self._stores: dict[str, GCSStore] = {}
        self._stores_lock = threading.Lock()
        self.store = self._bucket_store(self.bucket)

    def _bucket_store(self, bucket: str) -> GCSStore:
        """The store of one bucket, with the account's prefix and credentials (built once)."""
        with self._stores_lock:
            store = self._stores.get(bucket)
            if store is None:
                store = self._stores[bucket] = GCSStore(
                    bucket=bucket,
                    project=str(self.config.get("project") or ""),
                    prefix=str(self.config.get("prefix") or ""),
                    credentials_file=str(self.config.get("credentials_file") or ""),
                    endpoint_url=str(self.config.get("endpoint_url") or ""),
                )
        return store

    def check_hints(self, hints: UploadHints) -> None:
        """Refuse a bucket the account does not allow, and a region other than its ``location``."""
        location = str(self.config.get("location") or "")
        if hints.region and location and hints.region.lower() != location.lower():
            raise InvalidRequest(
                f"This account's files are for batch jobs in {location}, not {hints.region}.", param=REGION_HEADER
            )
        if hints.bucket and hints.bucket not in self.allowed_buckets:
            raise InvalidRequest(
                f"The bucket {hints.bucket!r} is not one this account allows; "
                "an organization admin can add it to the account's allowed buckets.",
                param=BUCKET_HEADER,
            )

    def store_for(self, options: UploadOptions) -> Store:
        self.check_hints(options.hints)
        return self._bucket_store(options.hints.bucket or self.bucket)

    def object_ref(self, store: Store, key: str) -> str:
        return f"{store.bucket}/{key}"

    def locate(self, ref: str) -> tuple[Store, str]:
        # The reference comes from the gateway's own record, written when the bucket was allowed: a
        # file stays reachable (and deletable) after its bucket leaves the allowed list.
        bucket, _, key = ref.partition("/")
        if not _BUCKET.fullmatch(bucket) or not key:
            raise FileNotFound("No such File object.", param="id")
        return self._bucket_store(bucket), key

    def rewriter(self, options: UploadOptions) -> VertexRewriter:
        return VertexRewriter(default_model=options.hints.model)

    def stores(self) -> list[Store]:
        """The default bucket and every other one the account allows (reconciliation lists each)."""
        return [self._bucket_store(bucket) for bucket in sorted(self.allowed_buckets)]

    def check(self) -> None:
        """Probe every bucket the account may write to; the error names the bucket that failed."""
        for bucket in sorted(self.allowed_buckets):
            try:
                self._bucket_store(bucket).check()
            except GatewayError as exc:
                exc.message = f"Bucket {bucket}: {exc.message}"
                raise


def _bucket_name(name: str) -> str:
    if not _BUCKET.fullmatch(name) or ".." in name:
        raise ImproperlyConfigured(f"vertex: {name[:64]!r} is not a Cloud Storage bucket name")
    return name
