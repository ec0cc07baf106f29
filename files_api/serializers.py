"""Input validation and OpenAI-shaped output for /v1/files."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from files_api.models import PURPOSES
from providers.base import Page, RemoteFile

MIN_EXPIRES_SECONDS = 3600
MAX_EXPIRES_SECONDS = 2592000


class UploadFieldsSerializer(serializers.Serializer):
    """The form fields of an upload, apart from the file itself."""

    purpose = serializers.ChoiceField(
        choices=PURPOSES,
        error_messages={
            "required": "Missing required parameter: 'purpose'.",
            "invalid_choice": "Invalid value for 'purpose': {input!r}. Expected one of " + ", ".join(PURPOSES) + ".",
        },
        help_text="What the file is for.",
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        # The SDK sends expires_after as two bracketed form fields; Python names cannot say that.
        fields["expires_after[anchor]"] = serializers.ChoiceField(
            choices=["created_at"],
            required=False,
            error_messages={
                "invalid_choice": "Invalid value for 'expires_after[anchor]': only 'created_at' is supported."
            },
            help_text="The time the expiry counts from. Only `created_at`. Send both expiry fields or neither.",
        )
        fields["expires_after[seconds]"] = serializers.IntegerField(
            min_value=MIN_EXPIRES_SECONDS,
            max_value=MAX_EXPIRES_SECONDS,
            required=False,
            error_messages={
                "invalid": "Invalid value for 'expires_after[seconds]': expected an integer.",
                "min_value": f"Invalid value for 'expires_after[seconds]': must be at least {MIN_EXPIRES_SECONDS}.",
                "max_value": f"Invalid value for 'expires_after[seconds]': must be at most {MAX_EXPIRES_SECONDS}.",
            },
            help_text=(
                "Seconds after the anchor when the file expires (3600 to 2592000). Send both expiry fields or neither."
            ),
        )
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        anchor = attrs.get("expires_after[anchor]")
        seconds = attrs.get("expires_after[seconds]")
        if (anchor is None) != (seconds is None):
            missing = "expires_after[seconds]" if seconds is None else "expires_after[anchor]"
            raise serializers.ValidationError({missing: f"Missing required parameter: '{missing}'."})
        return attrs


class FileUploadSerializer(UploadFieldsSerializer):
    """The whole multipart body, for the OpenAPI schema (the file itself is streamed, not parsed here)."""

    file = serializers.FileField(help_text="The file to upload.")


class FileListQuerySerializer(serializers.Serializer):
    purpose = serializers.CharField(
        required=False,
        default=None,
        error_messages={"blank": "Invalid value for 'purpose': must not be empty."},
        help_text="Only files with this purpose.",
    )
    limit = serializers.IntegerField(
        required=False,
        default=10000,
        min_value=1,
        max_value=10000,
        error_messages={
            "invalid": "Invalid value for 'limit': expected an integer.",
            "min_value": "Invalid value for 'limit': must be between 1 and 10000.",
            "max_value": "Invalid value for 'limit': must be between 1 and 10000.",
        },
    )
    order = serializers.ChoiceField(
        choices=["asc", "desc"],
        required=False,
        default="desc",
        error_messages={"invalid_choice": "Invalid value for 'order': expected 'asc' or 'desc'."},
    )
    after = serializers.CharField(
        required=False,
        default=None,
        max_length=128,
        error_messages={"blank": "Invalid value for 'after': must not be empty."},
        help_text="A file id: list the files after it.",
    )


class FileObjectSerializer(serializers.Serializer):
    """OpenAI's file object, field for field (``storage_uri`` only on storage-backed files)."""

    id = serializers.CharField()
    object = serializers.CharField(default="file")
    bytes = serializers.IntegerField()
    created_at = serializers.IntegerField(help_text="Unix seconds.")
    expires_at = serializers.IntegerField(allow_null=True, required=False, help_text="Unix seconds, or null.")
    filename = serializers.CharField()
    purpose = serializers.CharField()
    status = serializers.CharField(help_text="uploaded, processed or error (deprecated upstream).")
    status_details = serializers.CharField(allow_null=True, required=False)
    storage_uri = serializers.CharField(
        required=False, help_text="s3:// or gs:// location, for files the gateway stores in a bucket."
    )

    def to_representation(self, instance: RemoteFile) -> dict[str, Any]:
        # Built by hand: a list of 10,000 files goes through here, and DRF's generic field walk
        # costs several times more for the same output.
        data: dict[str, Any] = {
            "id": instance.id,
            "object": "file",
            "bytes": instance.bytes,
            "created_at": instance.created_at,
            "expires_at": instance.expires_at,
            "filename": instance.filename,
            "purpose": instance.purpose,
            "status": instance.status,
            "status_details": instance.status_details,
        }
        if instance.storage_uri:
            data["storage_uri"] = instance.storage_uri
        return data


@extend_schema_serializer(many=False)  # the list envelope is one object, not an array of them
class FileListSerializer(serializers.Serializer):
    """OpenAI's list envelope around a ``providers.base.Page``."""

    object = serializers.CharField(default="list")
    data = FileObjectSerializer(many=True)  # type: ignore[assignment]
    first_id = serializers.CharField(allow_null=True)
    last_id = serializers.CharField(allow_null=True)
    has_more = serializers.BooleanField()

    def to_representation(self, instance: Page) -> dict[str, Any]:
        # By hand, like FileObjectSerializer: a page can hold 10,000 files.
        to_dict = FileObjectSerializer().to_representation
        data = [to_dict(remote) for remote in instance.data]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": instance.has_more,
        }


class FileDeletedSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(default="file")
    deleted = serializers.BooleanField(default=True)


class ErrorDetailSerializer(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField()
    param = serializers.CharField(allow_null=True)
    code = serializers.CharField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()
