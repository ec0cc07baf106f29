"""The httpx transport of the pass-through kinds: requests without a body go through urllib3.

A download relayed through httpx's own transport costs about twice the CPU of the same relay
through urllib3: httpcore reads the response 64 KiB at a time and every piece goes through h11's
buffer, while urllib3 reads through ``http.client``'s buffered socket reader in 1 MiB pieces.
Measured under production's gunicorn (``bench/floors.py``, 2026-12-02, four runs): a 256 MiB relay
cost 1.12-1.30 CPU seconds per GB through httpx and 0.56-0.71 through urllib3, gunicorn's own
sending 0.22-0.34 of either. With this transport, a 256 MiB download through ``openai`` cost
0.60-0.71 instead of 1.42-1.49 gateway CPU seconds per GB, 0.55x direct instead of 0.29-0.36x
(``bench/run.py --only downloads --kind openai`` on PostgreSQL, with and without, two rounds).

Requests with a body (uploads) stay on httpx's own transport: urllib3 frames each chunk of a
chunked body by formatting it into a new ``bytes``, which cost 16% more CPU per GB uploaded (one
run with and without). Both paths sit behind the one ``httpx.Client`` every kind uses (retries,
error mapping, response decoding and bounded reads are httpx's and ours, unchanged), and share one
TLS context, ``httpx.create_ssl_context``: certifi's CAs, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``.

Proxies stay httpx's: ``PassThroughProvider`` mounts this transport for ``all://``, and the client
adds its own, more specific mounts for ``HTTP_PROXY`` / ``HTTPS_PROXY`` (their proxy transport) and
``NO_PROXY`` hosts (its default transport), which win; with ``ALL_PROXY`` set, which would share
the ``all://`` pattern, the provider does not mount this transport at all.

urllib3's failures come out as the httpx exceptions httpcore raises for the same event, so
``PassThroughProvider.map_exception`` and the retry rules hold whichever path a request took. Only
urllib3's public API is used (``PoolManager.urlopen``, ``HTTPResponse.read1`` / ``stream``, its
exceptions).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import urllib3
from urllib3 import exceptions as urllib3_errors

from providers.base import CHUNK_SIZE


class BodilessViaUrllib3(httpx.BaseTransport):
    """Requests without a body through a urllib3 pool, the rest through ``httpx.HTTPTransport``."""

    def __init__(self, *, max_idle_connections: int) -> None:
        context = httpx.create_ssl_context()
        self.with_body = httpx.HTTPTransport(
            verify=context,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=max_idle_connections),
        )
        # block=False: a request never waits for a pooled connection; one beyond the idle limit is
        # opened, and closed once done, as httpx does.
        self.pool = urllib3.PoolManager(maxsize=max_idle_connections, block=False, ssl_context=context)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if "content-length" in request.headers or "transfer-encoding" in request.headers:
            return self.with_body.handle_request(request)
        timeouts = request.extensions.get("timeout", {})
        headers = urllib3.HTTPHeaderDict()
        for name, value in request.headers.raw:
            headers.add(name.decode("latin-1"), value.decode("latin-1"))
        with _as_httpx_errors(request):
            response = self.pool.urlopen(
                request.method,
                str(request.url),
                headers=headers,
                retries=False,
                redirect=False,
                preload_content=False,
                decode_content=False,
                timeout=urllib3.Timeout(connect=timeouts.get("connect"), read=timeouts.get("read")),
            )
        return httpx.Response(
            response.status,
            headers=list(response.headers.iteritems()),
            stream=_Body(response, request),
            extensions={"http_version": b"HTTP/1.1"},
            request=request,
        )

    def close(self) -> None:
        self.pool.clear()
        self.with_body.close()


class _Body(httpx.SyncByteStream):
    """The response body as it arrives, in pieces of up to ``CHUNK_SIZE``, still content-encoded
    (httpx decodes, as for its own transport's responses)."""

    def __init__(self, response: urllib3.BaseHTTPResponse, request: httpx.Request) -> None:
        self.response = response
        self.request = request
        self.read_whole = False

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors(self.request):
            # What has arrived so far, first: a client's first bytes never wait for a whole chunk. (A
            # chunked body comes chunk by chunk anyway, and its framing is read by ``stream`` alone.)
            if not self.response.chunked and (first := self.response.read1(CHUNK_SIZE, decode_content=False)):
                yield first
            yield from self.response.stream(CHUNK_SIZE, decode_content=False)
        self.read_whole = True

    def close(self) -> None:
        # A body read to its end is already back in the pool; one left unread has its connection
        # closed, so the next request never reads this one's leftovers.
        if not self.read_whole:
            self.response.close()
        self.response.release_conn()


@contextlib.contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    """urllib3's failures as the httpx exceptions httpcore raises for the same event."""
    try:
        yield
    except (urllib3_errors.NewConnectionError, urllib3_errors.SSLError) as exc:
        # Before ConnectTimeoutError: urllib3 derives NewConnectionError (refused, unresolvable) from it.
        raise httpx.ConnectError(str(exc), request=request) from exc
    except urllib3_errors.ConnectTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc), request=request) from exc
    except urllib3_errors.ReadTimeoutError as exc:
        raise httpx.ReadTimeout(str(exc), request=request) from exc
    except urllib3_errors.ProtocolError as exc:
        # The upstream closed or reset the connection, or sent a body shorter than it announced.
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except urllib3_errors.HTTPError as exc:
        raise httpx.TransportError(str(exc), request=request) from exc
