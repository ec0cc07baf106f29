"""Middleware of the gateway itself."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase


class ClientIdleTimeoutMiddleware:
    """Gives up on a client that stops sending its request body for CLIENT_IDLE_TIMEOUT_SECONDS.

    gunicorn hands the application the client's socket (``gunicorn.socket`` in the WSGI environ); a
    timeout on it makes a body read that waits longer than that raise ``TimeoutError``, which the
    upload turns into a 408, releasing its quota reservation and its worker. The timeout is an idle
    limit (each read may wait that long), and it is lifted before the response is sent: a slow
    reader of a download costs a greenlet, not a thread, under the gevent worker.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        sock = request.META.get("gunicorn.socket")
        seconds = settings.CLIENT_IDLE_TIMEOUT_SECONDS
        if sock is None or seconds <= 0:
            return self.get_response(request)
        sock.settimeout(seconds)
        try:
            return self.get_response(request)
        finally:
            sock.settimeout(None)
