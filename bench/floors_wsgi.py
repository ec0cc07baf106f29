"""The transfer work of a large upload or download without the gateway: a bare WSGI app for ``floors.py``.

Served by gunicorn with production's command line, it does only what every gateway transfer must:

- ``POST /sink``: read the request body from ``wsgi.input`` in 1 MiB reads (the gateway's multipart
  parser reads so) and throw it away;
- ``GET /serve?BYTES``: answer ``BYTES`` bytes in 1 MiB chunks of one buffer;
- ``GET /relay/httpx?BYTES`` and ``GET /relay/urllib3?BYTES``: fetch ``BYTES`` bytes from the blob
  server at ``FLOORS_UPSTREAM`` and pass them on in 1 MiB chunks, through httpx's streaming
  (``iter_raw``, joined by ``providers.http.coalesced``) or urllib3's (``stream``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import httpx
import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from providers.http import coalesced  # the gateway's own joining of pieces; needs no Django set-up

CHUNK = 1024 * 1024
BLOCK = b"\x5a" * CHUNK
UPSTREAM = os.environ.get("FLOORS_UPSTREAM", "")

_httpx = httpx.Client(timeout=60)
_urllib3 = urllib3.PoolManager(retries=False, timeout=60)


def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
    path, query = environ["PATH_INFO"], environ.get("QUERY_STRING", "")
    if path == "/sink":
        body, total = environ["wsgi.input"], 0
        while data := body.read(CHUNK):
            total += len(data)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(total).encode()]
    if path == "/healthz":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    size = int(query or 0)
    makers = {"/serve": served, "/relay/httpx": relayed_by_httpx, "/relay/urllib3": relayed_by_urllib3}
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))])
    return makers[path](size)


def served(size: int) -> Iterator[bytes]:
    while size > 0:
        yield BLOCK if size >= CHUNK else BLOCK[:size]
        size -= CHUNK


def relayed_by_httpx(size: int) -> Iterator[bytes]:
    with _httpx.stream("GET", f"{UPSTREAM}?{size}") as response:
        yield from coalesced(response.iter_raw())


def relayed_by_urllib3(size: int) -> Iterator[bytes]:
    response = _urllib3.request("GET", f"{UPSTREAM}?{size}", preload_content=False, decode_content=False)
    try:
        yield from response.stream(CHUNK, decode_content=False)
    finally:
        response.release_conn()
