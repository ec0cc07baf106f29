"""``azure_openai``: an Azure OpenAI resource's Files API, passed through with the account's key.

Accounts take the resource endpoint as ``base_url`` (``https://<resource>.openai.azure.com``),
``api_key`` (sent as ``api-key``), ``api_version`` (default ``2024-10-21``) and ``timeout``. Paths
are ``{base_url}/openai/files...?api-version=...``; ``api_version=v1`` selects Azure's newer
``/openai/v1/files`` surface, which takes no api-version parameter. Azure answers an upload with
201 and ``status: pending``; the record keeps that status and retrieve refreshes it.
(https://learn.microsoft.com/en-us/rest/api/azureopenai/files/upload)
"""

from __future__ import annotations

from typing import Any, ClassVar

from providers.fields import Field
from providers.http import TIMEOUT, PassThroughProvider

DEFAULT_API_VERSION = "2024-10-21"


class AzureOpenAIProvider(PassThroughProvider):
    kind = "azure_openai"
    label = "Azure OpenAI"
    fields: ClassVar[tuple[Field, ...]] = (
        Field("api_key", "API key", "The resource's key (api-key header).", secret=True, required=True, header=True),
        Field(
            "base_url",
            "Endpoint",
            "The resource endpoint, https://<resource>.openai.azure.com.",
            type="url",
            required=True,
        ),
        Field(
            "api_version",
            "API version",
            "A dated version such as 2024-10-21, or v1 for the newer /openai/v1 surface.",
            header=True,
            default=DEFAULT_API_VERSION,
        ),
        TIMEOUT,
    )

    def __init__(self, **config: Any) -> None:
        self.api_version = str(config.get("api_version") or DEFAULT_API_VERSION)
        # The 2024 GA upload takes only `file` and `purpose`; `expires_after` is documented for the
        # v1 surface and 2025 versions. The gateway enforces expiry itself either way.
        self.sends_expiry = self.api_version == "v1" or self.api_version >= "2025"
        super().__init__(**config)

    def api_root(self) -> str:
        # Accept the endpoint with or without the /openai suffix people copy from the portal.
        endpoint = self.base_url.removesuffix("/openai")
        return f"{endpoint}/openai/v1" if self.api_version == "v1" else f"{endpoint}/openai"

    def auth_headers(self) -> dict[str, str]:
        return {"api-key": str(self.config["api_key"])}

    def default_params(self) -> dict[str, str]:
        return {} if self.api_version == "v1" else {"api-version": self.api_version}
