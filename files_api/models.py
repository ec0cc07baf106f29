"""The gateway's record of every file, and the audit trail."""

from __future__ import annotations

import time

from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper

from tenants.models import ApiKey, Organization, ProviderAccount

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")


class File(models.Model):
    """One file uploaded through the gateway (or deleted through it).

    ``public_id`` is what clients see: the provider's own id for kinds with a Files API, a minted
    ``file-...`` id for object-store kinds. Deleted files keep their row (``deleted_at`` set) so the
    audit trail can point at them; every live query filters ``deleted_at__isnull=True``.
    """

    public_id = models.CharField(max_length=64, unique=True)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="files")
    provider_account = models.ForeignKey(ProviderAccount, on_delete=models.PROTECT, related_name="files")
    storage_key = models.CharField(max_length=512, blank=True)
    storage_uri = models.CharField(max_length=1024, blank=True)
    filename = models.CharField(max_length=255)
    purpose = models.CharField(max_length=32)
    bytes = models.BigIntegerField()
    status = models.CharField(max_length=32, default="processed")
    status_details = models.TextField(blank=True, default="")
    # Of the bytes the provider stores (or was sent), which are what a download returns: for a batch
    # file rewritten for Bedrock or Vertex, of the rewritten bytes, not of the file the client sent.
    sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(db_index=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="files")
    deleted_at = models.DateTimeField(null=True, blank=True)
    # When the upstream last confirmed the file (pass-through kinds): retrieves answer from the record
    # until UPSTREAM_RECHECK_SECONDS have passed.
    checked_at = models.DateTimeField(null=True, blank=True)
    # When the upstream first said it has no such file. The record (and its charge) stays until that
    # is confirmed (services.file_retrieve after MISSING_FILE_CONFIRM_SECONDS, or reconcile_files).
    missing_since = models.DateTimeField(null=True, blank=True)
    # False where the provider keeps the bytes to itself (files uploaded to Anthropic).
    is_downloadable = models.BooleanField(default=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["organization", "provider_account", "created_at", "id"],
                condition=Q(deleted_at__isnull=True),
                name="live_files_page",
            ),
            # Ids are looked up case-insensitively too: a case variant of another organisation's id
            # must not reach the upstream as if it were unknown (selectors.recorded_file).
            models.Index(Upper("public_id"), name="file_public_id_upper"),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def remote_ref(self) -> str:
        """What the provider knows this file by: the object key, or the upstream id."""
        return self.storage_key or self.public_id

    @property
    def created_at_unix(self) -> int:
        return int(self.created_at.timestamp())

    @property
    def expires_at_unix(self) -> int | None:
        return int(self.expires_at.timestamp()) if self.expires_at else None

    def is_expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and self.expires_at.timestamp() <= (now or time.time())


class AuditEvent(models.Model):
    """Who did what to which file: one row per create, content read and delete, failures included."""

    class Action(models.TextChoices):
        CREATE = "file.create"
        CONTENT = "file.content"
        DELETE = "file.delete"
        EXPIRE = "file.expire"
        MISSING = "file.missing"  # the provider said it has no such file; the record is kept
        GONE = "file.gone"  # ...and that held: the record is forgotten and its bytes released

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="audit_events")
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True)
    action = models.CharField(max_length=32, choices=Action.choices)
    file_id = models.CharField(max_length=64, blank=True, db_index=True)
    provider_account = models.CharField(max_length=64, blank=True)
    bytes = models.BigIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=64, default="success")
    detail = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.file_id} {self.outcome}"
