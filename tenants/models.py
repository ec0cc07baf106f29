"""Organisations, their admins, API keys, provider accounts and quota reservations."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from tenants import crypto


def default_storage_quota() -> int:
    return settings.DEFAULT_STORAGE_QUOTA_BYTES


def default_max_file_size() -> int:
    return settings.DEFAULT_MAX_FILE_SIZE_BYTES


def default_batch_max_size() -> int:
    return settings.DEFAULT_BATCH_MAX_SIZE_BYTES


class Organization(models.Model):
    """A tenant. Everything else (keys, accounts, files, events) belongs to exactly one."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    storage_quota_bytes = models.BigIntegerField(default=default_storage_quota)
    max_file_size_bytes = models.BigIntegerField(default=default_max_file_size)
    batch_max_size_bytes = models.BigIntegerField(default=default_batch_max_size)
    # Bytes of live files, and bytes held by uploads in flight. Only tenants.services changes these,
    # with conditional UPDATEs; never assign them from Python.
    used_bytes = models.BigIntegerField(default=0, editable=False)
    reserved_bytes = models.BigIntegerField(default=0, editable=False)
    # What each of the organisation's API keys may make per clock minute (tenants.ratelimits).
    # None: the settings' default (RATE_LIMIT_*_PER_MINUTE); 0: no limit.
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    uploads_per_minute = models.PositiveIntegerField(null=True, blank=True)
    downloads_per_minute = models.PositiveIntegerField(null=True, blank=True)
    admins: models.ManyToManyField[Any, Any] = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="organizations", blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(condition=Q(used_bytes__gte=0), name="org_used_bytes_non_negative"),
            models.CheckConstraint(condition=Q(reserved_bytes__gte=0), name="org_reserved_bytes_non_negative"),
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def available_bytes(self) -> int:
        return max(0, self.storage_quota_bytes - self.used_bytes - self.reserved_bytes)


class Membership(models.Model):
    """A staff user who administers an organisation in Django admin."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "user"], name="unique_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization}"


class ApiKey(models.Model):
    """A bearer key. Only its SHA-256 is stored; ``prefix`` is the indexed, visible part."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    # This key's own rate limits, per clock minute; None: its organisation's. They only ever lower the
    # organisation's (tenants.ratelimits.rate_limit takes the lower of the two).
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    uploads_per_minute = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    downloads_per_minute = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class ProviderAccount(models.Model):
    """One set of credentials for one provider, owned by an organisation.

    ``settings`` holds the non-secret fields (base URL, bucket, ...). Secret fields (API keys,
    AWS secret keys, service-account JSON) are encrypted together in ``secrets_encrypted``.
    Which field is which is declared by the provider class (``providers.registry``).
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="provider_accounts")
    name = models.SlugField(max_length=64)
    kind = models.CharField(max_length=32)
    settings = models.JSONField(default=dict, blank=True)
    secrets_encrypted = models.TextField(blank=True, default="", editable=False)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="unique_account_name_per_org"),
            models.UniqueConstraint(
                fields=["organization"], condition=Q(is_default=True), name="one_default_account_per_org"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization.slug}/{self.name} ({self.kind})"

    def get_secrets(self) -> dict[str, str]:
        if not self.secrets_encrypted:
            return {}
        return json.loads(crypto.decrypt(self.secrets_encrypted))

    def set_secrets(self, secrets: dict[str, Any]) -> None:
        cleaned = {key: value for key, value in secrets.items() if value not in (None, "")}
        self.secrets_encrypted = crypto.encrypt(json.dumps(cleaned)) if cleaned else ""

    @property
    def secret_names(self) -> list[str]:
        return sorted(self.get_secrets())

    def provider_config(self) -> dict[str, Any]:
        """The keyword arguments the provider class is built from (settings and secrets)."""
        return {**self.settings, **self.get_secrets()}


class QuotaReservation(models.Model):
    """Bytes held for one upload in flight, so a crashed worker's hold can be found and released."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="reservations")
    bytes = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.bytes} bytes for {self.organization_id}"


class RateLimitCounter(models.Model):
    """How many of one key's requests in one scope the processes have taken for the minute ``window``.

    One row per key and scope, restarted by the first lease of each new minute (``tenants.ratelimits``):
    the table never holds more than three rows per key, and a key's rows go with it.
    """

    # Not indexed on its own: the unique constraint's index starts with it.
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+", db_index=False)
    scope = models.CharField(max_length=16)
    window = models.BigIntegerField()  # minutes since the epoch
    granted = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "scope"], name="one_rate_counter_per_key_and_scope")]

    def __str__(self) -> str:
        return f"{self.granted} {self.scope} of key {self.api_key_id} in minute {self.window}"
