"""``openai``: OpenAI's own Files API, passed through with the account's key.

Accounts take ``api_key``, ``base_url`` (default ``https://api.openai.com/v1``, so any
OpenAI-compatible server works), optional ``organization`` and ``project`` (sent as the
``OpenAI-Organization`` / ``OpenAI-Project`` headers) and ``timeout`` in seconds.
"""

from __future__ import annotations

from typing import ClassVar

from providers.http import PassThroughProvider


class OpenAIProvider(PassThroughProvider):
    kind = "openai"
    label = "OpenAI"
    settings_fields: ClassVar[frozenset[str]] = frozenset({"base_url", "organization", "project", "timeout"})
    secret_fields: ClassVar[frozenset[str]] = frozenset({"api_key"})
    required_fields: ClassVar[frozenset[str]] = frozenset({"api_key"})
    default_base_url = "https://api.openai.com/v1"

    def api_root(self) -> str:
        return self.base_url

    def auth_headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.config['api_key']}"}
        if self.config.get("organization"):
            headers["OpenAI-Organization"] = str(self.config["organization"])
        if self.config.get("project"):
            headers["OpenAI-Project"] = str(self.config["project"])
        return headers
