"""The provider kinds the benchmark can measure: one table entry each.

A kind is measured through the gateway against its **direct** baseline: the same requests sent by
the client straight to the kind's fake upstream, in the same run. Adding a kind whose fake speaks
the bench contract below is one entry in ``KINDS``; nothing else in the bench changes.

The bench contract of a fake upstream (``bench/upstream.py`` implements it for OpenAI and Azure):

- ``python bench/<fake> --port N`` serves on 127.0.0.1 and answers ``GET /healthz`` with 200;
- each credential (the ``Authorization`` bearer token or the ``api-key`` header) sees only its own
  files, as an upstream account or project does, so a list is exactly what that key uploaded;
- ``GET /_bench/files/{id}`` gives ``{"bytes", "crc32"}`` of what an upload delivered, and
  ``GET /_bench/files`` the same for every file of the caller's key, by id;
- a download (``.../content``) streams ``upstream.pattern_crc32``'s fixed pattern, as long as the file.
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

    def headers(self, key: str) -> dict[str, str]:
        return {self.auth_header: self.auth_prefix + key}


OPENAI_API = Api("openai")


@dataclass(frozen=True)
class Kind:
    """One provider kind as the bench sets it up and checks it.

    ``settings`` are the account's ``add_provider_account --set`` values, with ``{url}`` (the fake's
    root URL) and ``{key}`` (a key of the fake) filled in. A kind that ``stores_bytes`` keeps the
    files itself (on disk under DATA_DIR): its uploads are checked there, and its direct baseline is
    the OpenAI fake's, the alternative a client would otherwise use.
    """

    name: str
    api: Api = OPENAI_API
    fake: str = "upstream.py"
    settings: tuple[tuple[str, str], ...] = ()
    stores_bytes: bool = False
    purpose: str = "assistants"

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
    )
}
# What `make bench` measures: the embedded default and the kind issue 14's table is measured on.
DEFAULT_KINDS = ("local", "openai")
