"""One exception hierarchy for the whole gateway, rendered as OpenAI's error envelope.

Every error a client can see is ``{"error": {"message", "type", "param", "code"}}``. Services and
providers raise the classes below; the DRF ``EXCEPTION_HANDLER`` and Django's ``handler404`` /
``handler500`` render them. This module is a leaf: it imports no app of the project.

The ``type`` and ``code`` strings, pinned once (tests/config/test_errors.py has a test per row):

=====================  ======  =======================  ============================
class                  status  type                     code
=====================  ======  =======================  ============================
InvalidRequest         400     invalid_request_error    (per error, often None)
UnsupportedOperation   400     invalid_request_error    operation_not_supported
FileNotDownloadable    400     invalid_request_error    file_not_downloadable
AuthenticationFailed   401     invalid_request_error    invalid_api_key
PermissionDenied       403     invalid_request_error    permission_denied
QuotaExceeded          403     insufficient_quota       storage_quota_exceeded
ProviderStorageFull    403     insufficient_quota       provider_storage_quota_exceeded
FileNotFound           404     invalid_request_error    None (as OpenAI: "No such File object")
UnknownURL             404     invalid_request_error    unknown_url
MethodNotAllowed       405     invalid_request_error    method_not_allowed
RequestTimeout         408     invalid_request_error    request_timeout
PayloadTooLarge        413     invalid_request_error    file_too_large
UpstreamRejected       4xx     invalid_request_error    upstream_error (status kept from upstream)
RateLimited            429     rate_limit_error         api_key_rate_limit_exceeded
UpstreamRateLimited    429     rate_limit_error         rate_limit_exceeded
InternalError          500     server_error             internal_error
ProviderMisconfigured  500     server_error             provider_account_misconfigured
UpstreamError          502     server_error             upstream_error
UpstreamUnavailable    503     server_error             upstream_unavailable
DatabaseUnavailable    503     server_error             database_unavailable
UpstreamTimeout        504     server_error             upstream_timeout
=====================  ======  =======================  ============================

``QuotaExceeded`` is a 403 on purpose: the OpenAI SDKs retry 429 automatically, and retrying an
upload that can never fit only multiplies the traffic. Anthropic's Files API used 403 for the same
condition. ``ProviderStorageFull`` is the provider account's own storage limit (Anthropic's), not the
organisation's quota: another code, so a client (and an admin reading the audit) can tell which is full.

``RateLimited`` (the gateway's own per-key limit) and ``UpstreamRateLimited`` (the provider's) are
both 429s, told apart by their code: a client waiting out its own key's minute should not conclude
that the provider is overloaded. Both carry ``Retry-After``, which the SDKs honour when they retry.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db.utils import InterfaceError as DatabaseInterfaceError
from django.db.utils import OperationalError as DatabaseOperationalError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

logger = logging.getLogger("filegate.errors")


class GatewayError(Exception):
    """Base of every error the gateway reports to a client."""

    status_code = 500
    error_type = "server_error"
    default_code: str | None = "internal_error"
    default_message = "The server had an error while processing your request."

    def __init__(
        self,
        message: str | None = None,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}
        super().__init__(self.message)

    def as_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(GatewayError):
    status_code = 400
    error_type = "invalid_request_error"
    default_code: str | None = None
    default_message = "The request is invalid."


class UnsupportedOperation(InvalidRequest):
    default_code: str | None = "operation_not_supported"
    default_message = "This provider does not support this operation."


class FileNotDownloadable(UnsupportedOperation):
    """The provider keeps this file's bytes to itself (Anthropic: every file not made by its tools)."""

    default_code: str | None = "file_not_downloadable"
    default_message = "This file's content cannot be downloaded."


class AuthenticationFailed(GatewayError):
    status_code = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"
    default_message = "Incorrect API key provided."


class PermissionDenied(GatewayError):
    status_code = 403
    error_type = "invalid_request_error"
    default_code = "permission_denied"
    default_message = "You are not allowed to perform this request."


class QuotaExceeded(GatewayError):
    status_code = 403
    error_type = "insufficient_quota"
    default_code = "storage_quota_exceeded"
    default_message = "The organization's storage quota is exhausted."


class ProviderStorageFull(GatewayError):
    status_code = 403
    error_type = "insufficient_quota"
    default_code = "provider_storage_quota_exceeded"
    default_message = "The provider account's file storage is full."


class FileNotFound(GatewayError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = None
    default_message = "No such File object."


class UnknownURL(GatewayError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "unknown_url"
    default_message = "Invalid URL."


class MethodNotAllowed(GatewayError):
    status_code = 405
    error_type = "invalid_request_error"
    default_code = "method_not_allowed"
    default_message = "Method not allowed."


class RequestTimeout(GatewayError):
    """The client stopped sending its request body for longer than CLIENT_IDLE_TIMEOUT_SECONDS."""

    status_code = 408
    error_type = "invalid_request_error"
    default_code = "request_timeout"
    default_message = "The request body stopped arriving."


class PayloadTooLarge(GatewayError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "file_too_large"
    default_message = "The file is too large."


class UpstreamRejected(GatewayError):
    """An upstream 4xx. The status is the upstream's own, the body is mapped, never forwarded."""

    status_code = 400
    error_type = "invalid_request_error"
    default_code = "upstream_error"
    default_message = "The provider rejected the request."

    def __init__(self, message: str | None = None, *, status_code: int = 400, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.status_code = status_code


class RateLimited(GatewayError):
    """The API key has made its limit of requests (uploads, downloads) this minute: ``tenants.ratelimits``."""

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "api_key_rate_limit_exceeded"
    default_message = "This API key has reached its rate limit; retry later."


class UpstreamRateLimited(GatewayError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"
    default_message = "The provider is rate limiting this account; retry later."


class InternalError(GatewayError):
    pass


class ProviderMisconfigured(GatewayError):
    """A provider account the gateway cannot build (undecryptable secrets, a setting it refuses)."""

    default_code = "provider_account_misconfigured"
    default_message = "This provider account is misconfigured; an organization admin must fix it."


class UpstreamError(GatewayError):
    status_code = 502
    default_code = "upstream_error"
    default_message = "The provider returned an error."


class UpstreamUnavailable(GatewayError):
    status_code = 503
    default_code = "upstream_unavailable"
    default_message = "The provider could not be reached."


class DatabaseUnavailable(GatewayError):
    """The gateway's own database failed the request (restarted, unreachable, busy): worth a retry."""

    status_code = 503
    default_code = "database_unavailable"
    default_message = "The gateway's database is briefly unavailable; retry the request."


class UpstreamTimeout(GatewayError):
    status_code = 504
    default_code = "upstream_timeout"
    default_message = "The provider did not answer in time."


def _from_drf(exc: drf_exceptions.APIException) -> GatewayError:
    """Translate DRF's own exceptions into ours, keeping their status."""
    if isinstance(exc, drf_exceptions.ValidationError):
        param, message = _first_error(exc.detail)
        return InvalidRequest(message, param=param)
    if isinstance(exc, drf_exceptions.NotAuthenticated | drf_exceptions.AuthenticationFailed):
        return AuthenticationFailed(str(exc.detail))
    if isinstance(exc, drf_exceptions.PermissionDenied):
        return PermissionDenied(str(exc.detail))
    if isinstance(exc, drf_exceptions.NotFound):
        return FileNotFound(str(exc.detail))
    if isinstance(exc, drf_exceptions.MethodNotAllowed):
        return MethodNotAllowed(str(exc.detail))
    if isinstance(exc, drf_exceptions.UnsupportedMediaType | drf_exceptions.ParseError):
        return InvalidRequest(str(exc.detail))
    error = GatewayError(str(exc.detail), code=str(exc.default_code))
    error.status_code = exc.status_code
    error.error_type = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return error


def _first_error(detail: Any, param: str | None = None) -> tuple[str | None, str]:
    """Walk a DRF error structure down to its first message; the path becomes ``param``."""
    if isinstance(detail, dict):
        key, value = next(iter(detail.items()))
        name = None if key == "non_field_errors" else str(key)
        return _first_error(value, f"{param}.{name}" if param and name else (name or param))
    if isinstance(detail, list) and detail:
        return _first_error(detail[0], param)
    return param, str(detail)


def to_gateway_error(exc: BaseException) -> GatewayError:
    """Return the ``GatewayError`` a client should see for any exception."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, drf_exceptions.APIException):
        return _from_drf(exc)
    if isinstance(exc, Http404):
        return FileNotFound("Not found.")
    if isinstance(exc, DjangoPermissionDenied):
        return PermissionDenied()
    if isinstance(exc, DatabaseOperationalError | DatabaseInterfaceError):
        # A connection a database restart broke, or SQLite's write lock held too long: the SDKs retry
        # a 503 (after Retry-After), and the next attempt gets a sound connection.
        return DatabaseUnavailable(headers={"Retry-After": "1"})
    return InternalError()


def render(error: GatewayError) -> JsonResponse:
    """Render a ``GatewayError`` as a plain Django response (for views outside DRF)."""
    response = JsonResponse(error.as_dict(), status=error.status_code)
    for name, value in error.headers.items():
        response[name] = value
    return response


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF ``EXCEPTION_HANDLER``: every exception becomes the envelope, never ``None``."""
    from rest_framework.views import set_rollback  # rest_framework.views imports our auth class at import

    error = to_gateway_error(exc)
    if isinstance(error, InternalError) and error is not exc:
        logger.error("Unhandled exception in %s", context.get("view"), exc_info=exc)
    elif isinstance(error, DatabaseUnavailable) and error is not exc:
        logger.warning("Database error in %s: %s", context.get("view"), type(exc).__name__)
    set_rollback()
    headers = dict(error.headers)
    if isinstance(error, AuthenticationFailed):
        headers.setdefault("WWW-Authenticate", 'Bearer realm="api"')
    return Response(error.as_dict(), status=error.status_code, headers=headers)


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return render(UnknownURL(f"Invalid URL ({request.method} {request.path})"))


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return render(InvalidRequest("Bad request."))


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return render(PermissionDenied())


def handler500(request: HttpRequest) -> JsonResponse:
    return render(InternalError())
