"""``groq``: Groq's OpenAI-compatible Files API, with the few gaps in it filled by the gateway.

Accounts take ``api_key`` (sent as ``Authorization: Bearer``), ``base_url`` (default
``https://api.groq.com/openai/v1``) and ``timeout``.

What is translated (groq SDK ``resources/files.py``, https://console.groq.com/docs/batch):
- upload: Groq keeps batch input files only, so every purpose but ``batch`` is refused before a byte
  is sent; no ``expires_after`` goes upstream (Groq takes ``file`` and ``purpose`` only), the gateway
  enforces expiry itself.
- file objects: Groq's lack ``status``, which becomes ``processed``.
- list: Groq answers every file at once, with no query and no ``has_more``. The gateway orders them
  by ``created_at`` (ties in the upstream's order: one order, reversed for ``asc``), applies
  ``after`` and ``purpose``, and hands them out one page of the client's size at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from config.errors import InvalidRequest
from providers.base import RemoteFile
from providers.fields import Field
from providers.http import API_KEY, TIMEOUT, PassThroughProvider


class GroqProvider(PassThroughProvider):
    kind = "groq"
    label = "Groq"
    default_base_url = "https://api.groq.com/openai/v1"
    purposes: ClassVar[frozenset[str] | None] = frozenset({"batch"})
    sends_expiry = False
    fields: ClassVar[tuple[Field, ...]] = (
        API_KEY,
        Field("base_url", "Base URL", "Groq's OpenAI-compatible API root.", type="url", default=default_base_url),
        TIMEOUT,
    )

    def api_root(self) -> str:
        return self.base_url

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config['api_key']}"}

    def list_query(self, *, limit: int, order: str, purpose: str | None, after: str | None) -> dict[str, str | int]:
        return {}  # Groq's list takes no parameters

    def iter_pages(
        self, *, purpose: str | None, order: str, after: str | None, page_size: int
    ) -> Iterator[list[RemoteFile]]:
        """As ``Provider.iter_pages``, from one upstream answer holding every file.

        Raises ``InvalidRequest`` (``param="after"``) when ``after`` is not among them: its place in
        the order is unknown (it was deleted meanwhile, or never existed).
        """
        files = self.fetch_page(self.list_query(limit=0, order=order, purpose=None, after=None), order=order).files
        files = page_in_order(files, order=order, after=after)
        if purpose:
            files = [remote for remote in files if remote.purpose == purpose]
        size = max(1, page_size)
        for start in range(0, len(files), size):
            yield files[start : start + size]


def page_in_order(files: list[RemoteFile], *, order: str, after: str | None) -> list[RemoteFile]:
    """``files`` newest first (oldest first if ``order == "asc"``), from the one after ``after``.

    Files made within one second keep the upstream's order of creation (``created_at`` is in whole
    seconds), whichever way the upstream lists: the order is the same on every request.
    """
    if files and files[0].created_at < files[-1].created_at:
        files = files[::-1]  # listed oldest first upstream
    ordered = sorted(files, key=lambda remote: remote.created_at, reverse=True)  # stable: ties keep their place
    if order == "asc":
        ordered.reverse()
    if after is None:
        return ordered
    start = next((index for index, remote in enumerate(ordered) if remote.id == after), None)
    if start is None:
        raise InvalidRequest(f"Invalid 'after': no file {after!r} in this list.", param="after")
    return ordered[start + 1 :]
