"""Content negotiation that never refuses a request.

The OpenAI SDK asks for file content with ``Accept: application/binary``, and other clients send
whatever they like. Every JSON answer is rendered as JSON and content is streamed as bytes, so the
``Accept`` header is not a reason to answer 406.
"""

from __future__ import annotations

from typing import Any

from rest_framework.negotiation import BaseContentNegotiation


class JSONOnlyNegotiation(BaseContentNegotiation):
    def select_parser(self, request: Any, parsers: list[Any]) -> Any:
        content_type = request.content_type or ""
        for parser in parsers:
            if content_type.startswith(parser.media_type):
                return parser
        return None

    def select_renderer(self, request: Any, renderers: list[Any], format_suffix: str | None = None) -> tuple[Any, str]:
        return renderers[0], renderers[0].media_type
