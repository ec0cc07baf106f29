"""The /v1/files API: one viewset, five operations, thin actions."""

from __future__ import annotations

import io
from typing import cast
from urllib.parse import quote

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from config.errors import InvalidRequest
from files_api import services
from files_api.serializers import (
    ErrorSerializer,
    FileDeletedSerializer,
    FileListQuerySerializer,
    FileListSerializer,
    FileObjectSerializer,
    FileUploadSerializer,
)
from files_api.upload import file_upload
from providers.base import BUCKET_HEADER, MODEL_HEADER, MODEL_HEADER_ALIAS, REGION_HEADER, UploadHints
from tenants.models import ApiKey
from tenants.ratelimits import DOWNLOADS, UPLOADS

ACCOUNT_HEADER = "X-Provider-Account"
# TrueFoundry's gateway names the account in this header: its clients work here unchanged.
TFY_ACCOUNT_HEADER = "x-tfy-provider-name"


def _header_parameter(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(
        name=name, type=str, location=OpenApiParameter.HEADER, required=False, description=description
    )


ACCOUNT_PARAMETER = _header_parameter(
    "X-Provider-Account",
    "Name of one of your organisation's provider accounts. Without it, the organisation's default "
    "account. Calls by id use the account the file was uploaded to (an id the gateway has no record "
    "of is looked up on this account).",
)
TFY_ACCOUNT_PARAMETER = _header_parameter(
    "x-tfy-provider-name",
    "Alias of X-Provider-Account, as TrueFoundry's gateway names it: a client moving from TrueFoundry "
    "changes only base_url and the key. Sending both with different values is a 400.",
)
ACCOUNT_PARAMETERS = [ACCOUNT_PARAMETER, TFY_ACCOUNT_PARAMETER]

UPLOAD_PARAMETERS = [
    _header_parameter(
        MODEL_HEADER,
        "Bedrock and Vertex accounts: the model for batch lines without body.model "
        f"(alias {MODEL_HEADER_ALIAS}). Other kinds ignore it.",
    ),
    _header_parameter(BUCKET_HEADER, "Vertex accounts: store the file in this bucket, one the account allows."),
    _header_parameter(REGION_HEADER, "Vertex accounts: the region the file is for; it must be the account's location."),
]
# A header value the gateway accepts: printable ASCII without spaces (model ids, bucket and region names).
MAX_HEADER_VALUE_LENGTH = 256
FILE_ID = OpenApiParameter(name="id", type=str, location=OpenApiParameter.PATH, description="The file id.")


def _errors(*statuses: int) -> dict[int, OpenApiResponse]:
    meaning = {
        400: (
            "Invalid request (validation, unknown or conflicting account headers, unsupported purpose or "
            "operation, a file whose content the provider keeps: file_not_downloadable)."
        ),
        401: "Missing, unknown or revoked API key.",
        403: (
            "Storage full (type insufficient_quota): the organisation's quota (storage_quota_exceeded) or the "
            "provider account's own storage (provider_storage_quota_exceeded)."
        ),
        404: "No such file (also for other organisations' files).",
        413: "File larger than the organisation's limit.",
        429: (
            "Rate limited, with Retry-After: this API key's limit for the minute is reached (code "
            "api_key_rate_limit_exceeded), or the provider is rate limiting (code rate_limit_exceeded)."
        ),
        500: "An unexpected error in the gateway (details are logged, never returned).",
        502: "The provider failed.",
        503: "The provider could not be reached.",
        504: "The provider timed out.",
    }
    # Any operation can hit a bug; it still answers with the envelope.
    return {status: OpenApiResponse(ErrorSerializer, description=meaning[status]) for status in (*statuses, 500)}


UPSTREAM = (429, 502, 503, 504)
FILES_TAG = ["files"]
# gunicorn refuses a request line over 4094 bytes (its limit_request_line) itself, with an HTML page,
# before the gateway sees the request; only ids and filters far past their own limits get there.
URI_TOO_LONG = {
    (414, "text/html"): OpenApiResponse(
        OpenApiTypes.STR,
        description="The URL is longer than the HTTP server takes (gunicorn: 4094 bytes in the request "
        "line). The server answers itself, with an HTML page, not the JSON envelope.",
    )
}


# The operation ids are the ones in OpenAI's own spec, so generated clients name their methods alike.
@extend_schema_view(
    list=extend_schema(
        operation_id="listFiles",
        summary="List files",
        description="One page of the organisation's files on the provider account, newest first by default.",
        tags=FILES_TAG,
        parameters=[*ACCOUNT_PARAMETERS, FileListQuerySerializer],
        responses={200: FileListSerializer, **_errors(400, 401, *UPSTREAM), **URI_TOO_LONG},
    ),
    create=extend_schema(
        operation_id="createFile",
        summary="Upload a file",
        description="A multipart upload, streamed to the provider account while it arrives.",
        tags=FILES_TAG,
        parameters=[*ACCOUNT_PARAMETERS, *UPLOAD_PARAMETERS],
        request={"multipart/form-data": FileUploadSerializer},
        responses={200: FileObjectSerializer, **_errors(400, 401, 403, 413, *UPSTREAM)},
    ),
    retrieve=extend_schema(
        operation_id="retrieveFile",
        summary="Retrieve a file",
        description="The file object. Another organisation's file is a 404.",
        tags=FILES_TAG,
        parameters=[*ACCOUNT_PARAMETERS, FILE_ID],
        responses={200: FileObjectSerializer, **_errors(400, 401, 404, *UPSTREAM), **URI_TOO_LONG},
    ),
    destroy=extend_schema(
        operation_id="deleteFile",
        summary="Delete a file",
        description="Deletes the file upstream and frees its bytes of the quota.",
        tags=FILES_TAG,
        parameters=[*ACCOUNT_PARAMETERS, FILE_ID],
        responses={200: FileDeletedSerializer, **_errors(400, 401, 404, *UPSTREAM), **URI_TOO_LONG},
    ),
    content=extend_schema(
        operation_id="downloadFile",
        summary="Download a file's content",
        description="The file's bytes, streamed.",
        tags=FILES_TAG,
        parameters=[*ACCOUNT_PARAMETERS, FILE_ID],
        responses={
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="The file's bytes."),
            **_errors(400, 401, 404, *UPSTREAM),
            **URI_TOO_LONG,
        },
    ),
)
class FileViewSet(viewsets.ViewSet):
    """OpenAI's Files API over the organisation's provider accounts.

    Every action takes the organisation from the API key (``request.auth``); files of other
    organisations are 404s, whatever their id. The scoping lives in one place,
    ``selectors.lookup_file`` (by id) and ``selectors.live_files`` (lists), because an id can also
    name a file the gateway never recorded, which only the provider account can answer for.
    """

    lookup_field = "id"
    lookup_value_regex = r"[^/]{1,128}"
    # Besides the key's limit on all requests (tenants.throttling).
    throttle_scopes = {"create": UPLOADS, "content": DOWNLOADS}

    def _account_name(self, request: Request) -> str | None:
        """The account named by ``X-Provider-Account`` or its alias ``x-tfy-provider-name``.

        Raises ``InvalidRequest`` when both are sent and differ: guessing which one was meant could
        put a file on the wrong provider.
        """
        return (
            _agreeing(request, ACCOUNT_HEADER, TFY_ACCOUNT_HEADER, what="accounts", code="conflicting_provider_account")
            or None
        )

    def list(self, request: Request) -> Response:
        # A plain dict, not the QueryDict: DRF takes an empty form value (`?purpose=`) for "not given"
        # and would answer it with the whole list; an empty value is invalid like any other.
        query = FileListQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        page = services.file_list(
            organization=_api_key(request).organization,
            account_name=self._account_name(request),
            **query.validated_data,
        )
        return Response(FileListSerializer(page).data)

    def create(self, request: Request) -> Response:
        remote = file_upload(
            api_key=_api_key(request),
            account_name=self._account_name(request),
            # DRF hands over no stream at all for an empty body; read that as an empty body.
            body=request.stream or io.BytesIO(),
            content_type=request.content_type,
            content_length=_content_length(request),
            content_encoding=request.META.get("HTTP_CONTENT_ENCODING", ""),
            hints=_upload_hints(request),
        )
        return Response(FileObjectSerializer(remote).data)

    def retrieve(self, request: Request, id: str) -> Response:
        remote = services.file_retrieve(
            organization=_api_key(request).organization, account_name=self._account_name(request), file_id=id
        )
        return Response(FileObjectSerializer(remote).data)

    def destroy(self, request: Request, id: str) -> Response:
        deleted_id = services.file_delete(
            api_key=_api_key(request), account_name=self._account_name(request), file_id=id
        )
        return Response(FileDeletedSerializer({"id": deleted_id}).data)

    @action(detail=True, methods=["get"])
    def content(self, request: Request, id: str) -> StreamingHttpResponse:
        found = services.file_content(api_key=_api_key(request), account_name=self._account_name(request), file_id=id)
        response = StreamingHttpResponse(found.content.chunks, content_type=found.content.media_type)
        response["Content-Disposition"] = _attachment(found.filename)
        if found.content.size is not None:
            response["Content-Length"] = str(found.content.size)
        return response


def _api_key(request: Request) -> ApiKey:
    # HasApiKey guarantees request.auth is an ApiKey before any action runs.
    return cast(ApiKey, request.auth)


def _upload_hints(request: Request) -> UploadHints:
    """The upload's optional headers, checked for shape: printable ASCII without spaces, at most 256
    characters. Raises ``InvalidRequest`` naming the header (also when the model header and its
    alias disagree)."""
    model = _plain(MODEL_HEADER, _agreeing(request, MODEL_HEADER, MODEL_HEADER_ALIAS, what="models"))
    region = _plain(REGION_HEADER, request.headers.get(REGION_HEADER, "").strip())
    bucket = _plain(BUCKET_HEADER, request.headers.get(BUCKET_HEADER, "").strip())
    return UploadHints(model=model, region=region, bucket=bucket)


def _agreeing(request: Request, name: str, alias: str, *, what: str, code: str | None = None) -> str:
    """The value of header ``name`` or of its ``alias`` ("" if neither); both sent and different is a 400."""
    values = {request.headers.get(header, "").strip() for header in (name, alias)} - {""}
    if len(values) > 1:
        raise InvalidRequest(
            f"The {name} and {alias} headers name different {what}; send one of them.", param=name, code=code
        )
    return values.pop() if values else ""


def _plain(name: str, value: str) -> str:
    if len(value) > MAX_HEADER_VALUE_LENGTH or not (value.isascii() and value.isprintable() and " " not in value):
        raise InvalidRequest(
            f"The {name} header must be printable ASCII without spaces, at most {MAX_HEADER_VALUE_LENGTH} characters.",
            param=name,
        )
    return value


def _content_length(request: Request) -> int | None:
    try:
        value = int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    return value if value >= 0 else None


def _attachment(filename: str) -> str:
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
