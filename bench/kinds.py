"""The provider kinds the benchmark can measure: one table entry each.

A kind is measured through the gateway against its **direct** baseline: the same requests sent by
the client straight to the kind's fake upstream, in the same run. Adding a kind whose fake speaks
the bench contract below is one entry in ``KINDS``; nothing else in the bench changes.

The bench contract of a fake upstream (``bench/upstream.py`` implements it for OpenAI, Azure,
Anthropic and Groq, each under its own path root):

- ``python bench/<fake> --port N`` serves on 127.0.0.1 and answers ``GET /healthz`` with 200;
- each credential (the ``Authorization`` bearer token, the ``api-key`` or ``x-api-key`` header) sees
  only its own files, as an upstream account or project does, so a list is exactly what that key
  uploaded;
- ``GET /_bench/files/{id}`` gives ``{"bytes", "crc32"}`` of what an upload delivered, and
  ``GET /_bench/files`` the same for every file of the caller's key, by id;
- a download (``.../content``) streams ``upstream.pattern_crc32``'s fixed pattern, as long as the file.

A kind whose files live in an object store (``bedrock`` on S3, ``vertex`` on GCS) has no fake: the
bench runs the store itself (moto's S3 server, the GCS emulator; ``bench/stores.py``), and its direct
baseline is the same client sending the same bytes straight to the bucket with the cloud's own
library (boto3, google-cloud-storage): what a client does without the gateway, so the ratio is the
gateway's cost on top of the store's. (The OpenAI fake as their baseline, as for ``local``, would
mostly measure how slow the emulators are next to it.) Their uploads are checked by reading the
object back from the bucket.

The kinds after issue 14's (``reduced``) measure the large transfers of ``big_size`` (upload with its
memory and CPU per GB, download) and the retrieves, not the 16 MiB uploads, the concurrent uploads,
the small uploads nor the lists, which keeps the default run within minutes on two cores.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Api:
    """How a client speaks one upstream's Files API directly (files path and credential header)."""

    name: str
    files_path: str = "/v1/files"
    auth_header: str = "Authorization"
    auth_prefix: str = "Bearer "
    extra_headers: tuple[tuple[str, str], ...] = ()  # sent on every call, as the gateway sends them
    sends_purpose: bool = True  # whether an upload carries OpenAI's purpose field

    def headers(self, key: str) -> dict[str, str]:
        return {self.auth_header: self.auth_prefix + key, **dict(self.extra_headers)}


BUCKET = "filegate-bench"  # the bucket the bench makes in each object store it starts

OPENAI_API = Api("openai")
# The headers the gateway's anthropic kind sends (providers/anthropic.py), so direct calls get the same shapes.
ANTHROPIC_API = Api(
    "anthropic",
    files_path="/anthropic/v1/files",
    auth_header="x-api-key",
    auth_prefix="",
    extra_headers=(("anthropic-version", "2023-06-01"), ("anthropic-beta", "files-api-2025-04-14")),
    sends_purpose=False,
)
GROQ_API = Api("groq", files_path="/groq/openai/v1/files")


@dataclass(frozen=True)
class Kind:
    """One provider kind as the bench sets it up and checks it.

    ``settings`` are the account's ``add_provider_account --set`` values, with ``{url}`` (the fake's
    root URL) and ``{key}`` (a key of the fake) filled in. A kind that ``stores_bytes`` keeps the
    files itself (on disk under DATA_DIR): its uploads are checked there, and its direct baseline is
    the OpenAI fake's, the alternative a client would otherwise use. A kind with a ``store`` (``s3``,
    ``gcs``) keeps the files in that object store, started by the bench instead of a fake (``{url}``
    is its endpoint). ``downloads``: ``upload`` (the big upload is downloaded back), ``tool-file`` (a
    file the upstream made itself, the only kind Anthropic lets anyone download).
    """

    name: str
    api: Api = OPENAI_API
    fake: str = "upstream.py"
    settings: tuple[tuple[str, str], ...] = ()
    stores_bytes: bool = False
    purpose: str = "assistants"
    store: str = ""
    reduced: bool = False
    downloads: str = "upload"

    @property
    def batch_input(self) -> bool:
        """Uploads must be batch JSONL (a ``.jsonl`` file of valid request lines), as the gateway checks them."""
        return self.purpose == "batch"

    def account_settings(self, *, url: str, key: str) -> list[str]:
        """``--set NAME=VALUE`` arguments for ``add_provider_account``."""
        args = []
        for name, value in self.settings:
            args += ["--set", f"{name}={value.format(url=url, key=key)}"]
        return args


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("local", stores_bytes=True),
        Kind("openai", settings=(("api_key", "{key}"), ("base_url", "{url}/v1"))),
        Kind(
            "azure_openai",
            api=Api("azure", files_path="/openai/v1/files", auth_header="api-key", auth_prefix=""),
            settings=(("api_key", "{key}"), ("base_url", "{url}"), ("api_version", "v1")),
        ),
        Kind(
            "anthropic",
            api=ANTHROPIC_API,
            settings=(("api_key", "{key}"), ("base_url", "{url}/anthropic")),
            reduced=True,
            downloads="tool-file",
        ),
        # Groq keeps batch input files only: the bench uploads valid batch JSONL, checked line by line.
        Kind(
            "groq",
            api=GROQ_API,
            settings=(("api_key", "{key}"), ("base_url", "{url}/groq/openai/v1")),
            purpose="batch",
            reduced=True,
        ),
        # Not purpose=batch: those are rewritten on the way in (another cost, and other bytes in the
        # bucket); the bytes are stored as sent, so the bucket's copy is checked against the input.
        Kind(
            "bedrock",
            fake="moto_server",
            store="s3",
            settings=(
                ("bucket", BUCKET),
                ("region", "us-east-1"),
                ("prefix", "filegate/"),
                ("endpoint_url", "{url}"),
                ("aws_access_key_id", "bench"),
                ("aws_secret_access_key", "bench-secret"),
            ),
            reduced=True,
        ),
        Kind(
            "vertex",
            fake="gcp-storage-emulator",
            store="gcs",
            settings=(
                ("bucket", BUCKET),
                ("project", "filegate-bench"),
                ("prefix", "filegate/"),
                ("endpoint_url", "{url}"),
            ),
            reduced=True,
        ),
    )
}
# What `make bench` measures: the embedded default, the kind issue 14's table is measured on, and the
# kinds after it on their reduced plan (see the top of this module).
DEFAULT_KINDS = ("local", "openai", "anthropic", "groq", "bedrock", "vertex")
