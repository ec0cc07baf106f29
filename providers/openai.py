"""``openai``: OpenAI's own Files API, passed through with the account's key.

Accounts take ``api_key``, ``base_url`` (default ``https://api.openai.com/v1``, so any
OpenAI-compatible server works), optional ``organization`` and ``project`` (sent as the
``OpenAI-Organization`` / ``OpenAI-Project`` headers) and ``timeout`` in seconds.
"""

from __future__ import annotations

from typing import ClassVar

from providers.fields import Field
from providers.http import API_KEY, TIMEOUT, PassThroughProvider


class OpenAIProvider(PassThroughProvider):
    kind = "openai"
    label = "OpenAI"
    default_base_url = "https://api.openai.com/v1"
    fields: ClassVar[tuple[Field, ...]] = (
        API_KEY,
        Field("base_url", "Base URL", "Any OpenAI-compatible API root.", type="url", default=default_base_url),
        Field("organization", "Organization ID", "Sent as OpenAI-Organization (org-...).", header=True),
        Field("project", "Project ID", "Sent as OpenAI-Project (proj_...).", header=True),
        TIMEOUT,
    )

    def api_root(self) -> str:
        return self.base_url

    def auth_headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.config['api_key']}"}
        if self.config.get("organization"):
            headers["OpenAI-Organization"] = str(self.config["organization"])
        if self.config.get("project"):
            headers["OpenAI-Project"] = str(self.config["project"])
        return headers
