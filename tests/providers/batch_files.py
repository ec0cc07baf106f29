"""Helpers for the batch-rewriting tests: OpenAI lines in, native records (or the refusal) out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from config.errors import InvalidRequest
from providers.batch import Rewriter, rewrite_lines

MIB = 1024 * 1024
# The 8-byte PNG signature, base64: a valid data: URL payload.
PNG = "iVBORw0KGgo="


def openai_line(body: dict[str, Any], custom_id: str = "req-1", url: str = "/v1/chat/completions") -> bytes:
    line = {"custom_id": custom_id, "method": "POST", "url": url, "body": body}
    return json.dumps(line, ensure_ascii=False).encode() + b"\n"


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def image(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **extra}}


def rewritten(rewriter: Rewriter, *lines: bytes) -> list[dict[str, Any]]:
    """The records ``rewriter`` makes of ``lines``, one per line."""
    output = b"".join(rewrite_lines(lines, rewriter, max_line_bytes=MIB))
    assert output.endswith(b"\n")
    return [json.loads(line) for line in output.splitlines()]


def refusal(rewriter: Rewriter, *lines: bytes) -> str:
    """The message of the 400 ``rewriter`` answers for ``lines``."""
    with pytest.raises(InvalidRequest) as raised:
        list(rewrite_lines(lines, rewriter, max_line_bytes=MIB))
    assert (raised.value.status_code, raised.value.code, raised.value.param) == (400, "invalid_batch_file", "file")
    return raised.value.message
