"""``anthropic``: Anthropic's Files API (beta), translated to and from OpenAI's file schema.

Accounts take ``api_key`` (sent as ``x-api-key``), ``base_url`` (default
``https://api.anthropic.com``) and ``timeout``. Every call carries ``anthropic-version`` and
``anthropic-beta: files-api-2025-04-14``, which selects the beta shapes read here (``before_id`` /
``after_id`` paging); Anthropic keeps serving them to callers that send it.

Translated (https://platform.claude.com/docs/en/build-with-claude/files):
- upload: only the file goes upstream (Anthropic has no purpose); the purpose lives in the record.
- file objects: ``size_bytes`` -> ``bytes``, RFC 3339 times -> unix seconds, ``status: "processed"``,
  purpose ``user_data`` for files made outside the gateway, ``downloadable`` kept.
- list: upstream lists newest first only. ``desc`` pages with ``after_id``; ``asc`` after a file asks
  for the files just newer (``before_id``) and reverses each page; ``asc`` from the start first walks
  the list to its oldest page, 1000 files a request.
- delete: ``{type: "file_deleted"}``. Content only of ``downloadable`` files (made by Anthropic's
  tools): refused before any call when the record says so, by Anthropic's own 400 otherwise.
- errors: Anthropic's envelope, its 413, 529 (overloaded) and its storage limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any, ClassVar

from config.errors import (
    FileNotDownloadable,
    GatewayError,
    PayloadTooLarge,
    ProviderStorageFull,
    UpstreamError,
    UpstreamUnavailable,
)
from providers.base import RemoteFile, UploadOptions
from providers.fields import Field
from providers.http import API_KEY, TIMEOUT, PassThroughProvider, UpstreamPage, parse_error_envelope, rfc3339_seconds

API_VERSION = "2023-06-01"
FILES_BETA = "files-api-2025-04-14"
MAX_PAGE_SIZE = 1000  # Anthropic's largest list page
# Files made outside the gateway have no purpose; OpenAI's name for "any input a model reads".
DEFAULT_PURPOSE = "user_data"


class AnthropicProvider(PassThroughProvider):
    kind = "anthropic"
    label = "Anthropic"
    default_base_url = "https://api.anthropic.com"
    max_page_size = MAX_PAGE_SIZE
    not_downloadable_message = (
        "Anthropic does not let uploaded files be downloaded; only files its tools made (code execution, "
        "skills) can be. This file's content stays with Anthropic."
    )
    # Anthropic's files are read by models in messages (document and image blocks) and by its code
    # execution tool: OpenAI's purposes for such inputs. `batch` (Anthropic's batches take requests
    # inline), `fine-tune` and `evals` have nothing to feed on Anthropic, so they are refused.
    purposes: ClassVar[frozenset[str] | None] = frozenset({"assistants", "user_data", "vision"})
    fields: ClassVar[tuple[Field, ...]] = (
        API_KEY,
        Field("base_url", "Base URL", "Anthropic's API origin.", type="url", default=default_base_url),
        TIMEOUT,
    )

    def api_root(self) -> str:
        return self.base_url.removesuffix("/v1") + "/v1"

    def auth_headers(self) -> dict[str, str]:
        return {
            "x-api-key": str(self.config["api_key"]),
            "anthropic-version": API_VERSION,
            "anthropic-beta": FILES_BETA,
        }

    # Translation hooks.

    def upload_fields(self, options: UploadOptions) -> list[tuple[str, str]]:
        return []

    def list_query(self, *, limit: int, order: str, purpose: str | None, after: str | None) -> dict[str, str | int]:
        query: dict[str, str | int] = {"limit": max(1, min(limit, MAX_PAGE_SIZE))}
        if after:
            # Newest first is the only order upstream: "after" in ascending order means newer, i.e. before it.
            query["before_id" if order == "asc" else "after_id"] = after
        return query

    def parse_file(self, data: Any, *, default_bytes: int = 0) -> RemoteFile:
        """A ``FileMetadata`` as a ``RemoteFile``; raises ``UpstreamError`` if it is not one."""
        created_at = rfc3339_seconds(data.get("created_at")) if isinstance(data, dict) else None
        if created_at is None:
            raise UpstreamError("The Anthropic provider returned an unexpected file object.")
        fields = {"id": data.get("id"), "bytes": data.get("size_bytes"), "filename": data.get("filename")}
        remote = super().parse_file({**fields, "created_at": created_at}, default_bytes=default_bytes)
        expires_at = rfc3339_seconds(data.get("expires_at"))
        return replace(
            remote, purpose=DEFAULT_PURPOSE, expires_at=expires_at, downloadable=data.get("downloadable") is True
        )

    def parse_page(self, body: Any, *, order: str = "desc") -> UpstreamPage:
        page = super().parse_page(body)
        if order != "asc":
            return page
        files = page.files[::-1]  # newest first upstream, whatever was asked
        return UpstreamPage(files=files, has_more=page.has_more, cursor=files[-1].id if files else None)

    def parse_deleted(self, body: Any) -> bool:
        return isinstance(body, dict) and body.get("type") == "file_deleted"

    def parse_error(self, body: bytes) -> tuple[str | None, str | None, str | None]:
        """``(message, None, error_code)`` of ``{"type": "error", "error": {"message", "details": {"error_code"}}}``."""
        error = parse_error_envelope(body)
        details = error.get("details")
        message, code = error.get("message"), details.get("error_code") if isinstance(details, dict) else None
        return (message if isinstance(message, str) else None, None, code if isinstance(code, str) else None)

    def error_for(
        self,
        status: int,
        *,
        message: str | None,
        param: str | None,
        code: str | None,
        retry_after: str | None,
        file_id: str | None,
    ) -> GatewayError:
        if code == "file_not_downloadable":
            return FileNotDownloadable(self.not_downloadable_message, param="id")
        if code == "storage_quota_exceeded":
            return ProviderStorageFull(
                "The Anthropic account's file storage is full; delete files there or ask Anthropic for more room."
            )
        if status == 413:
            return PayloadTooLarge("The file is larger than Anthropic accepts (500 MB).", param="file")
        if status == 529:  # Anthropic is overloaded: a temporary state, as a 503 is
            return UpstreamUnavailable(
                "The Anthropic provider is overloaded; retry later.",
                headers={"Retry-After": retry_after} if retry_after else None,
            )
        return super().error_for(
            status, message=message, param=param, code=code, retry_after=retry_after, file_id=file_id
        )

    # Paging.

    def iter_pages(
        self, *, purpose: str | None, order: str, after: str | None, page_size: int
    ) -> Iterator[list[RemoteFile]]:
        """As ``PassThroughProvider.iter_pages``. Oldest first from the start needs the list's end first:
        it is walked newest first, 1000 files a request, keeping only the last page."""
        if order == "asc" and after is None:
            oldest, is_whole = self._oldest_page()
            yield oldest.files
            if is_whole or oldest.cursor is None:
                return
            after = oldest.cursor
        yield from super().iter_pages(purpose=purpose, order=order, after=after, page_size=page_size)

    def _oldest_page(self) -> tuple[UpstreamPage, bool]:
        """The oldest upstream page, oldest first, and whether it holds every file."""
        query = self.list_query(limit=MAX_PAGE_SIZE, order="desc", purpose=None, after=None)
        page, is_whole = self.fetch_page(query, order="asc"), True
        while page.has_more and page.files:
            query = self.list_query(limit=MAX_PAGE_SIZE, order="desc", purpose=None, after=page.files[0].id)
            older = self.fetch_page(query, order="asc")
            if not older.files:
                break
            page, is_whole = older, False
        return page, is_whole
