"""Content negotiation that never refuses a request.

The OpenAI SDK asks for file content with ``Accept: application/binary``, and other clients send
whatever they like. Every JSON answer is rendered as JSON and content is streamed as bytes, so the
``Accept`` header is not a reason to answer 406.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer


class JSONOnlyNegotiation(BaseContentNegotiation):
    def select_parser(self, request: Any, parsers: Iterable[BaseParser]) -> BaseParser | None:
        content_type = request.content_type or ""
        for parser in parsers:
            if content_type.startswith(parser.media_type):
                return parser
        return None

    def select_renderer(
        self, request: Any, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type
