"""The /v1/files API: one viewset, five operations, thin actions."""

from __future__ import annotations

from urllib.parse import quote

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from files_api import services
from files_api.serializers import (
    ErrorSerializer,
    FileDeletedSerializer,
    FileListQuerySerializer,
    FileListSerializer,
    FileObjectSerializer,
    FileUploadSerializer,
)
from files_api.uploads import MultipartForm
from tenants.services import provider_account_resolve

ACCOUNT_HEADER = "HTTP_X_PROVIDER_ACCOUNT"

ACCOUNT_PARAMETER = OpenApiParameter(
    name="X-Provider-Account",
    type=str,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Name of one of your organisation's provider accounts. Without it, the organisation's "
        "default account. Calls by id use the account the file was uploaded to."
    ),
)
FILE_ID = OpenApiParameter(name="id", type=str, location=OpenApiParameter.PATH, description="The file id.")


def _errors(*statuses: int) -> dict[int, OpenApiResponse]:
    meaning = {
        400: "Invalid request (validation, unknown account, unsupported operation).",
        401: "Missing, unknown or revoked API key.",
        403: "Storage quota exceeded (code storage_quota_exceeded).",
        404: "No such file (also for other organisations' files).",
        413: "File larger than the organisation's limit.",
        429: "The provider is rate limiting (Retry-After kept).",
        502: "The provider failed.",
        503: "The provider could not be reached.",
        504: "The provider timed out.",
    }
    return {status: OpenApiResponse(ErrorSerializer, description=meaning[status]) for status in statuses}


UPSTREAM = (429, 502, 503, 504)


@extend_schema_view(
    list=extend_schema(
        summary="List files",
        parameters=[ACCOUNT_PARAMETER, FileListQuerySerializer],
        responses={200: FileListSerializer, **_errors(400, 401, *UPSTREAM)},
    ),
    create=extend_schema(
        summary="Upload a file",
        parameters=[ACCOUNT_PARAMETER],
        request={"multipart/form-data": FileUploadSerializer},
        responses={200: FileObjectSerializer, **_errors(400, 401, 403, 413, *UPSTREAM)},
    ),
    retrieve=extend_schema(
        summary="Retrieve a file",
        parameters=[ACCOUNT_PARAMETER, FILE_ID],
        responses={200: FileObjectSerializer, **_errors(400, 401, 404, *UPSTREAM)},
    ),
    destroy=extend_schema(
        summary="Delete a file",
        parameters=[ACCOUNT_PARAMETER, FILE_ID],
        responses={200: FileDeletedSerializer, **_errors(400, 401, 404, *UPSTREAM)},
    ),
    content=extend_schema(
        summary="Download a file's content",
        parameters=[ACCOUNT_PARAMETER, FILE_ID],
        responses={
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="The file's bytes."),
            **_errors(400, 401, 404, *UPSTREAM),
        },
    ),
)
class FileViewSet(viewsets.ViewSet):
    """OpenAI's Files API over the organisation's provider accounts.

    Every action takes the organisation from the API key (``request.auth``); files of other
    organisations are 404s, whatever their id.
    """

    lookup_field = "id"
    lookup_value_regex = r"[^/]{1,128}"

    def _account_name(self, request: Request) -> str | None:
        return request.META.get(ACCOUNT_HEADER) or None

    def list(self, request: Request) -> Response:
        query = FileListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        page = services.file_list(
            organization=request.auth.organization, account_name=self._account_name(request), **query.validated_data
        )
        data = FileObjectSerializer(page.data, many=True).data
        return Response(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": page.has_more,
            }
        )

    def create(self, request: Request) -> Response:
        account = provider_account_resolve(organization=request.auth.organization, name=self._account_name(request))
        form = MultipartForm(request.stream, content_type=request.content_type, content_length=_content_length(request))
        remote = services.file_upload(api_key=request.auth, account=account, form=form)
        return Response(FileObjectSerializer(remote).data)

    def retrieve(self, request: Request, id: str) -> Response:
        remote = services.file_retrieve(
            organization=request.auth.organization, account_name=self._account_name(request), file_id=id
        )
        return Response(FileObjectSerializer(remote).data)

    def destroy(self, request: Request, id: str) -> Response:
        deleted_id = services.file_delete(api_key=request.auth, account_name=self._account_name(request), file_id=id)
        return Response({"id": deleted_id, "object": "file", "deleted": True})

    @action(detail=True, methods=["get"])
    def content(self, request: Request, id: str) -> StreamingHttpResponse:
        content = services.file_content(api_key=request.auth, account_name=self._account_name(request), file_id=id)
        response = StreamingHttpResponse(content.chunks, content_type="application/octet-stream")
        response["Content-Disposition"] = _attachment(content.filename)
        if content.size_bytes is not None:
            response["Content-Length"] = str(content.size_bytes)
        return response


def _content_length(request: Request) -> int | None:
    try:
        value = int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    return value if value >= 0 else None


def _attachment(filename: str) -> str:
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
