"""Django admin for file records and the audit trail: read-only for everyone, scoped per organisation."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat

from files_api.models import AuditEvent, File
from tenants.admin import OrganizationScopedAdmin


class LiveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("live", "Live"), ("deleted", "Deleted")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[File]) -> QuerySet[File]:
        if self.value() == "live":
            return queryset.filter(deleted_at__isnull=True)
        if self.value() == "deleted":
            return queryset.filter(deleted_at__isnull=False)
        return queryset


@admin.register(File)
class FileAdmin(OrganizationScopedAdmin):
    # Rows are the quota's ledger and the audit trail's anchor: changing one here would desynchronise
    # them from the provider, so they change only through the API.
    read_only = True
    list_display = (
        "public_id",
        "filename",
        "organization",
        "provider_account",
        "purpose",
        "size",
        "status",
        "created_at",
        "expires_at",
        "deleted_at",
    )
    list_filter = (
        ("organization", admin.RelatedOnlyFieldListFilter),
        ("provider_account", admin.RelatedOnlyFieldListFilter),
        "purpose",
        "status",
        LiveFilter,
    )
    search_fields = ("public_id", "filename")
    date_hierarchy = "created_at"
    list_select_related = ("organization", "provider_account__organization")

    @admin.display(description="Size", ordering="bytes")
    def size(self, file: File) -> str:
        return filesizeformat(file.bytes)


@admin.register(AuditEvent)
class AuditEventAdmin(OrganizationScopedAdmin):
    read_only = True
    list_display = (
        "created_at",
        "action",
        "outcome",
        "organization",
        "file_id",
        "provider_account",
        "bytes",
        "api_key",
    )
    list_filter = (
        ("organization", admin.RelatedOnlyFieldListFilter),
        "action",
        "outcome",
        "provider_account",
    )
    search_fields = ("file_id", "detail")
    date_hierarchy = "created_at"
    list_select_related = ("organization", "api_key")
