"""``bedrock``: files for Amazon Bedrock, kept by the gateway in the account's S3 bucket.

Bedrock has no Files API: its batch jobs read JSONL from S3. The gateway stores each file at
``{prefix}{org}/{file id}`` in the account's bucket through ``providers.s3.S3Store`` (streamed
multipart upload in 8 MiB parts, aborted on any failure) and answers list and retrieve from its
records. A ``purpose=batch`` upload is rewritten line by line into Bedrock batch records while it
streams (``providers.batch_bedrock.BedrockRewriter``; ``X-Provider-Model`` names the model for
lines without ``body.model``). The file object's ``storage_uri`` (``s3://bucket/key``) is what a
``CreateModelInvocationJob`` takes as ``inputDataConfig.s3InputDataConfig.s3Uri``.

Settings: ``bucket`` (required), ``region``, ``prefix``, ``aws_access_key_id`` with
``aws_secret_access_key`` (secret), or neither for the default AWS credential chain,
``server_side_encryption`` (``AES256`` or ``aws:kms``) with an optional ``kms_key_id``, and
``endpoint_url`` for an S3-compatible store (operators only: with it, the account's keys would be
sent wherever it points).
"""

from __future__ import annotations

from typing import Any, ClassVar

from providers.base import UploadOptions
from providers.batch import RewritingStoreProvider
from providers.batch_bedrock import BedrockRewriter
from providers.fields import Field
from providers.s3 import ENCRYPTIONS, S3Store


class BedrockProvider(RewritingStoreProvider):
    kind = "bedrock"
    label = "Amazon Bedrock"
    fields: ClassVar[tuple[Field, ...]] = (
        Field("bucket", "S3 bucket", "Where this account's files are stored.", required=True, header=True),
        Field("region", "Region", "The bucket's AWS region, e.g. us-east-1.", header=True),
        Field("prefix", "Key prefix", "A folder in the bucket for the gateway's files, e.g. filegate/."),
        Field(
            "aws_access_key_id",
            "Access key ID",
            "Leave both keys empty to use the gateway's default AWS credentials (environment, instance or task role).",
            header=True,
        ),
        Field("aws_secret_access_key", "Secret access key", secret=True, header=True),
        Field(
            "server_side_encryption",
            "Server-side encryption",
            "How S3 encrypts the stored files (the bucket's default when not set).",
            type="choice",
            choices=ENCRYPTIONS,
        ),
        Field(
            "kms_key_id", "KMS key ID", "With aws:kms: the key's id or ARN (AWS's managed key when empty).", header=True
        ),
        Field(
            "endpoint_url",
            "Endpoint URL",
            "An S3-compatible store instead of AWS S3.",
            type="url",
            operator_only=True,
        ),
    )

    def __init__(self, **config: Any) -> None:
        """Raises ``ImproperlyConfigured`` for an inconsistent configuration (``S3Store``'s checks)."""
        super().__init__(**config)
        self.store = S3Store(**{field.name: str(config.get(field.name) or "") for field in self.fields})

    def rewriter(self, options: UploadOptions) -> BedrockRewriter:
        return BedrockRewriter(default_model=options.hints.model)
