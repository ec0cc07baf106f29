"""A provider's HTTP calls answered in-process (``httpx.MockTransport``): its plumbing runs for real,
the upstream is a function of the request. For error shapes and call sequences with no server."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from providers.http import PassThroughProvider

Handler = Callable[[httpx.Request], httpx.Response]


def answered_by(provider: PassThroughProvider, handler: Handler) -> list[httpx.Request]:
    """Send ``provider``'s requests to ``handler`` (same base URL and headers); return the list that
    records every request it is sent, in order."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    provider.client = httpx.Client(
        base_url=provider.client.base_url, headers=provider.client.headers, transport=httpx.MockTransport(record)
    )
    return seen


def always(status: int, body: bytes | str = b"", **headers: str) -> Handler:
    """A handler giving every request the same answer."""
    content = body.encode() if isinstance(body, str) else body
    return lambda request: streamed(status, content, **headers)


def streamed(status: int, content: bytes, **headers: str) -> httpx.Response:
    """An answer whose body is still to be read, as a network answer is (the plumbing reads it raw)."""
    return httpx.Response(status, content=iter([content]), headers=headers)
