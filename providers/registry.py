"""The one map from a provider kind to its class, and the one place providers are built.

Classes are imported on first use (so a missing optional SDK only matters to the accounts that
need it) and built instances are cached per configuration, so every account reuses one pooled
HTTP client across requests.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from config.errors import InvalidRequest
from providers.base import Provider
from providers.fields import clean_config

PROVIDERS: dict[str, str] = {
    "local": "providers.local.LocalProvider",
    "openai": "providers.openai.OpenAIProvider",
    "azure_openai": "providers.azure.AzureOpenAIProvider",
    "anthropic": "providers.anthropic.AnthropicProvider",
    "groq": "providers.groq.GroqProvider",
    "bedrock": "providers.bedrock.BedrockProvider",
    "vertex": "providers.vertex.VertexProvider",
}

_classes: dict[str, type[Provider]] = {}
_instances: OrderedDict[tuple[str, tuple[tuple[str, str], ...], str], Provider] = OrderedDict()
_instances_lock = threading.Lock()
MAX_CACHED_PROVIDERS = 512


def kinds() -> list[str]:
    """The kinds an operator may use: all registered ones, or ENABLED_PROVIDER_KINDS if set."""
    enabled = settings.ENABLED_PROVIDER_KINDS
    return [kind for kind in PROVIDERS if not enabled or kind in enabled]


def provider_class(kind: str) -> type[Provider]:
    """Return the class for ``kind``; raise ``InvalidRequest`` for an unknown or disabled kind."""
    if kind not in kinds():
        raise InvalidRequest(f"Unknown provider kind {kind!r}; expected one of: {', '.join(kinds())}.", param="kind")
    if kind not in _classes:
        try:
            _classes[kind] = import_string(PROVIDERS[kind])
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"Provider kind {kind!r} needs a package that is not installed ({exc}); "
                "install the project's requirements.txt."
            ) from exc
    return _classes[kind]


def split_config(kind: str, config: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Check ``config`` against the kind's fields and split the cleaned values into (settings, secrets).

    Raises ``InvalidRequest`` naming an unknown, missing or malformed setting (a value with a line
    break, or non-ASCII where it becomes an HTTP header, is malformed).
    """
    cls = provider_class(kind)
    try:
        cleaned = clean_config(cls.fields, config)
    except InvalidRequest as exc:
        raise InvalidRequest(f"Provider kind {kind!r}: {exc.message}", param=exc.param) from None
    settings_part = {key: value for key, value in cleaned.items() if key in cls.settings_fields}
    secrets_part = {key: value for key, value in cleaned.items() if key in cls.secret_fields}
    return settings_part, secrets_part


def get_provider(kind: str, config: dict[str, Any], *, cache_key: str = "") -> Provider:
    """Build (or reuse) the provider for one account's ``config``.

    ``cache_key`` separates accounts whose configs are equal but must not share state.
    """
    key = (kind, tuple(sorted((name, repr(value)) for name, value in config.items())), cache_key)
    with _instances_lock:
        provider = _instances.get(key)
        if provider is not None:
            _instances.move_to_end(key)
            return provider
    provider = provider_class(kind)(**config)
    with _instances_lock:
        _instances[key] = provider
        while len(_instances) > MAX_CACHED_PROVIDERS:
            _instances.popitem(last=False)
    return provider


def clear_cache() -> None:
    with _instances_lock:
        _instances.clear()
