"""What a provider account can be configured with: one ``Field`` per setting, declared by each kind.

The declarations drive everything that touches an account's configuration: the CLI's ``--set``
keys, validation (``clean_config``), which values are encrypted (``secret``), which an org admin may
not choose (``operator_only``), and the per-kind forms in Django admin (label, help, input type).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from config.errors import InvalidRequest

FieldType = Literal["text", "url", "seconds", "choice", "json", "path"]

# Values that end up in an HTTP request line or header (keys, organisation ids, versions, URLs):
# a CR or LF there would let a setting inject headers, and http.client refuses non-ASCII.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_VALUE_LENGTH = 1024
MAX_JSON_LENGTH = 64 * 1024


@dataclass(frozen=True)
class Field:
    """One setting of a provider kind.

    ``secret`` values are stored encrypted and never shown again. ``header`` values become (part
    of) an HTTP header or URL, so they must be printable ASCII. ``operator_only`` settings name
    something on the gateway's own machine: only platform operators may set them.
    """

    name: str
    label: str
    help: str = ""
    type: FieldType = "text"
    secret: bool = False
    required: bool = False
    header: bool = False
    operator_only: bool = False
    default: str = ""  # shown as the placeholder; the provider applies it when the value is empty
    choices: tuple[str, ...] = ()


def clean_value(field: Field, value: Any) -> str:
    """The value as stored: a string, stripped. Raises ``InvalidRequest`` naming the field."""
    if value is None:
        return ""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise InvalidRequest(f"{field.label}: expected text.", param=field.name)
    text = str(value).strip()
    if not text:
        return ""
    limit = MAX_JSON_LENGTH if field.type == "json" else MAX_VALUE_LENGTH
    if len(text) > limit:
        raise InvalidRequest(f"{field.label}: at most {limit} characters.", param=field.name)
    if field.type == "json":
        return _clean_json(field, text)
    if _CONTROL.search(text):
        raise InvalidRequest(f"{field.label}: no control characters (line breaks, tabs).", param=field.name)
    if (field.header or field.type == "url") and not text.isascii():
        raise InvalidRequest(f"{field.label}: only ASCII characters are allowed.", param=field.name)
    if field.type == "url":
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
            raise InvalidRequest(f"{field.label}: expected an http(s) URL without credentials.", param=field.name)
        if " " in text:
            raise InvalidRequest(f"{field.label}: a URL cannot contain spaces.", param=field.name)
    if field.type == "seconds":
        try:
            seconds = float(text)
        except ValueError:
            raise InvalidRequest(f"{field.label}: expected a number of seconds.", param=field.name) from None
        if not 0 < seconds <= 24 * 3600:
            raise InvalidRequest(f"{field.label}: between 0 and 86400 seconds.", param=field.name)
    if field.type == "choice" and text not in field.choices:
        raise InvalidRequest(f"{field.label}: one of {', '.join(field.choices)}.", param=field.name)
    return text


def _clean_json(field: Field, text: str) -> str:
    try:
        parsed = json.loads(text)
    except ValueError:
        raise InvalidRequest(f"{field.label}: expected a JSON document.", param=field.name) from None
    if not isinstance(parsed, dict):
        raise InvalidRequest(f"{field.label}: expected a JSON object.", param=field.name)
    return text


def clean_config(fields: Iterable[Field], config: Mapping[str, Any]) -> dict[str, str]:
    """Check ``config`` against ``fields``: unknown keys, missing required ones, bad values.

    Returns the cleaned values (empty ones dropped). Raises ``InvalidRequest`` with ``param`` set to
    the offending setting's name.
    """
    by_name = {field.name: field for field in fields}
    unknown = sorted(set(config) - set(by_name))
    if unknown:
        raise InvalidRequest(
            f"Unknown setting {unknown[0]!r}; allowed: {', '.join(sorted(by_name)) or 'none'}.", param=unknown[0]
        )
    cleaned = {name: clean_value(by_name[name], value) for name, value in config.items()}
    cleaned = {name: value for name, value in cleaned.items() if value}
    missing = [field.name for field in by_name.values() if field.required and field.name not in cleaned]
    if missing:
        raise InvalidRequest(f"The setting {missing[0]!r} is required.", param=missing[0])
    return cleaned
