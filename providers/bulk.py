"""The pass-through kinds' httpx transport: 1 MiB pieces, no h11 copies, little per-call overhead.

httpcore reads 64 KiB at a time and h11 copies every piece into its buffer and out again; on the
way out h11 joins each chunk with its chunked framing, copying the MiB once more. ``http.client``
reads a body of known length with one ``recv_into`` per piece and no other copy, and this module
sends a chunked request body with one ``sendmsg`` of [size line, chunk, CRLF], never copying the
chunk. ``BulkTransport`` puts that behind httpx's transport interface, so the provider keeps one
code path (``_send``: retries, error mapping, timeouts from the request's ``timeout`` extension).
Small JSON calls gain too: a retrieve costs about half the CPU it costs through httpcore.

Connections are kept alive in a small pool, checked with ``poll`` before reuse as httpcore does;
a pooled connection found closed is retried once on a fresh one unless a body had started going
out. Failures are raised as the httpx exceptions httpcore would raise, so
``PassThroughProvider.map_exception`` and the retry rules apply unchanged. An exception from the
request body's iterator (an upload refused mid-stream) propagates unchanged after the connection is
closed before the terminating chunk, so the server sees a cut-off request and stores nothing.
"""

from __future__ import annotations

import base64
import http.client
import select
import socket
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from urllib.parse import SplitResult, unquote, urlsplit

import httpx

from providers.base import CHUNK_SIZE

# One per gunicorn thread that may be talking to this upstream at once.
MAX_IDLE_CONNECTIONS = 16
# Errors of a pooled keep-alive connection the upstream closed meanwhile: retried once on a fresh one.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class BulkTransport(httpx.BaseTransport):
    """Honours ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` as httpx does: a proxied upstream is
    reached through a ``CONNECT`` tunnel (with the proxy URL's credentials, if any). The proxy itself
    is spoken to in plain HTTP, as with the usual ``http://proxy:3128`` URLs."""

    def __init__(self, *, verify: ssl.SSLContext | bool = True) -> None:
        self._ssl = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
        self._idle: list[tuple[tuple[str, str, int], http.client.HTTPConnection]] = []
        self._lock = threading.Lock()
        self._proxies = urllib.request.getproxies_environment()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        key = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        target = url.raw_path.decode("ascii")
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw]
        while True:
            conn, reused = self._checkout(key)
            try:
                response = self._exchange(conn, request, target, headers, timeouts)
            except _BodyIteratorFailed as failed:
                conn.close()  # before the last chunk: the server sees a cut-off request
                raise failed.error from failed.error.__cause__
            except _STALE:
                conn.close()
                # Only a request whose body was not sent yet can go again on a fresh connection.
                if reused and not _body_started(request):
                    continue
                raise httpx.RemoteProtocolError("The server closed the connection.", request=request) from None
            except BaseException:
                conn.close()
                raise
            break
        return httpx.Response(
            response.status,
            headers=[(name, value) for name, value in response.getheaders()],
            stream=_BodyStream(self, key, conn, response, request),
            extensions={"http_version": b"HTTP/1.1"},
            request=request,
        )

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        request: httpx.Request,
        target: str,
        headers: list[tuple[str, str]],
        timeouts: dict[str, float | None],
    ) -> http.client.HTTPResponse:
        if conn.sock is None:
            conn.timeout = timeouts.get("connect")
            try:
                conn.connect()
            except TimeoutError as exc:
                raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
            except OSError as exc:  # refused, unreachable, name resolution, TLS handshake
                raise httpx.ConnectError(str(exc), request=request) from exc
        sock = conn.sock
        assert sock is not None
        sock.settimeout(timeouts.get("write"))
        try:
            conn.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders()
        except _STALE:
            raise
        except TimeoutError as exc:
            raise httpx.WriteTimeout(str(exc) or "write timed out", request=request) from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc), request=request) from exc
        write_error: OSError | None = None
        framing = {name.lower() for name, _ in headers} & {"transfer-encoding", "content-length"}
        if framing:  # a declared body goes out whatever the method, or the server reads on into the next request
            chunked = "transfer-encoding" in framing
            request.extensions["filegate_body_started"] = True
            try:
                _send_body(sock, request, chunked=chunked)
            except TimeoutError as exc:
                raise httpx.WriteTimeout(str(exc) or "write timed out", request=request) from exc
            except OSError as exc:
                write_error = exc  # the server may have answered early (401, 413) and closed: read that
        sock.settimeout(timeouts.get("read"))
        try:
            return conn.getresponse()
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
        except (http.client.HTTPException, OSError, ValueError) as exc:
            if write_error is not None:
                raise httpx.WriteError(str(write_error), request=request) from write_error
            if isinstance(exc, _STALE):
                raise
            if isinstance(exc, OSError):
                raise httpx.ReadError(str(exc), request=request) from exc
            raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__, request=request) from exc

    def _checkout(self, key: tuple[str, str, int]) -> tuple[http.client.HTTPConnection, bool]:
        while True:
            with self._lock:
                found = next((i for i in range(len(self._idle) - 1, -1, -1) if self._idle[i][0] == key), None)
                conn = self._idle.pop(found)[1] if found is not None else None
            if conn is None:
                break
            # An idle keep-alive connection that is readable was closed by the server (or sent junk):
            # httpcore makes the same check before it reuses one.
            if conn.sock is not None and not _is_readable(conn.sock):
                return conn, True
            conn.close()
        scheme, host, port = key
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"Unsupported URL scheme {scheme!r}.")
        proxy = self._proxy_for(scheme, host)
        address = (proxy.hostname or "", proxy.port or 80) if proxy else (host, port)
        conn = (
            http.client.HTTPSConnection(*address, context=self._ssl)
            if scheme == "https"
            else http.client.HTTPConnection(*address)
        )
        if proxy:
            headers = {}
            if proxy.username:
                credentials = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
                headers["Proxy-Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
            conn.set_tunnel(host, port, headers=headers)
        return conn, False

    def _proxy_for(self, scheme: str, host: str) -> SplitResult | None:
        url = self._proxies.get(scheme)
        if not url or urllib.request.proxy_bypass(host):  # NO_PROXY
            return None
        return urlsplit(url if "://" in url else f"http://{url}")

    def checkin(self, key: tuple[str, str, int], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append((key, conn))
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for _, conn in idle:
            conn.close()


def _is_readable(sock: socket.socket) -> bool:
    """Whether an idle socket has something to read (EOF included). poll, not select: fds above 1024."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _body_started(request: httpx.Request) -> bool:
    return bool(request.extensions.get("filegate_body_started"))


class _BodyIteratorFailed(Exception):
    """Carries an exception from the request body's iterator past the handlers of socket errors
    (an ``OSError`` from the iterator is not a write error, nor a stale connection)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


def _send_body(sock: socket.socket, request: httpx.Request, *, chunked: bool) -> None:
    """Send the request body as it is produced. Chunked framing goes out with the chunk in one
    ``sendmsg``, so a 1 MiB chunk is never copied to frame it (h11 joins size line, data and CRLF).

    An exception from the body's iterator (an upload refused mid-stream) propagates as is; the
    caller then closes the connection before the last chunk, so the server sees a cut-off request.
    """
    assert isinstance(request.stream, httpx.SyncByteStream)
    chunks = iter(request.stream)
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            break
        except Exception as exc:  # noqa: BLE001 - carried to handle_request, re-raised unchanged
            raise _BodyIteratorFailed(exc) from None
        if not chunk:
            continue
        if chunked:
            _sendmsg_all(sock, [b"%X\r\n" % len(chunk), chunk, b"\r\n"])
        else:
            sock.sendall(chunk)
    if chunked:
        sock.sendall(b"0\r\n\r\n")


def _sendmsg_all(sock: socket.socket, buffers: list[bytes]) -> None:
    if isinstance(sock, ssl.SSLSocket):  # no sendmsg over TLS: one record each, still no copy of the chunk
        for buffer in buffers:
            sock.sendall(buffer)
        return
    sent = sock.sendmsg(buffers)
    for buffer in buffers:
        if sent >= len(buffer):
            sent -= len(buffer)
            continue
        sock.sendall(memoryview(buffer)[sent:])
        sent = 0


class _BodyStream(httpx.SyncByteStream):
    """The body in pieces of up to ``CHUNK_SIZE``: each ``read1`` returns what has arrived, never waiting for a MiB."""

    def __init__(
        self,
        transport: BulkTransport,
        key: tuple[str, str, int],
        conn: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        request: httpx.Request,
    ) -> None:
        self._transport = transport
        self._key = key
        self._conn: http.client.HTTPConnection | None = conn
        self._response = response
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        response = self._response
        try:
            while chunk := response.read1(CHUNK_SIZE):
                yield chunk
        except TimeoutError as exc:
            self._discard()
            raise httpx.ReadTimeout(str(exc) or "read timed out", request=self._request) from exc
        except (http.client.HTTPException, OSError, ValueError) as exc:
            self._discard()
            raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__, request=self._request) from exc
        if response.length:  # Content-Length promised more than arrived: the connection broke off
            self._discard()
            raise httpx.RemoteProtocolError("The body ended before Content-Length bytes.", request=self._request)
        self._release()

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        reusable = not self._response.will_close and self._response.length in (None, 0) and not self._response.chunked
        self._response.close()
        if reusable:
            self._transport.checkin(self._key, conn)
        else:
            conn.close()

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        self._response.close()
        if conn is not None:
            conn.close()

    def close(self) -> None:
        # Closed before the end (the client went away): the rest of the body is not worth reading.
        if self._conn is not None and not self._response.isclosed():
            self._discard()
        else:
            self._release()
