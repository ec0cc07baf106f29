"""Django admin for file records and the audit trail (read-only for everyone, scoped per organisation),
and the per-organisation overview on the admin index.

The lists are built to fit a 1366 px screen: short columns (a key's prefix, an account's name), the
organisation column only for users who administer more than one, and an audit failure's reason in
the list itself.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from files_api.models import AuditEvent, File
from tenants.admin import ChoiceFilter, OrganizationScopedAdmin, member_org_ids, size_column, time_column
from tenants.display import format_size, usage_html
from tenants.models import ApiKey, Organization

# The index page starts with the overview below (templates/admin/filegate_index.html).
admin.site.index_template = "admin/filegate_index.html"

OVERVIEW_MAX_ORGANIZATIONS = 50


class LiveFilter(ChoiceFilter):
    title = "state"
    parameter_name = "state"
    conditions = {"live": ("Live", Q(deleted_at__isnull=True)), "deleted": ("Deleted", Q(deleted_at__isnull=False))}


class ResultFilter(ChoiceFilter):
    title = "result"
    parameter_name = "result"
    conditions = {"success": ("Success", Q(outcome="success")), "failure": ("Failure", ~Q(outcome="success"))}


class RecentFilter(admin.SimpleListFilter):
    title = "when"
    parameter_name = "since"
    periods = {"1d": ("Last 24 hours", timedelta(days=1)), "7d": ("Last 7 days", timedelta(days=7))}

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(value, label) for value, (label, _) in self.periods.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        period = self.periods.get(self.value() or "")
        if period is None:
            return queryset
        return queryset.filter(created_at__gte=timezone.now() - period[1])


def key_prefix(api_key: ApiKey | None) -> str:
    return f"{api_key.prefix}…" if api_key is not None else "-"


def shortened(text: str, length: int) -> SafeString | str:
    """``text`` cut to ``length`` characters, the whole of it in the tooltip."""
    if len(text) <= length:
        return text
    return format_html('<span title="{}">{}</span>', text, Truncator(text).chars(length))


@admin.register(File)
class FileAdmin(OrganizationScopedAdmin):
    # Rows are the quota's ledger and the audit trail's anchor: changing one here would desynchronise
    # them from the provider, so they change only through the API.
    read_only = True
    list_display = ("file_id", "name", "purpose", "size", "state", "created", "account", "key", "organization")
    list_display_links = ("file_id",)
    list_filter = (
        ("organization", admin.RelatedOnlyFieldListFilter),
        ("provider_account", admin.RelatedOnlyFieldListFilter),
        "purpose",
        "status",
        LiveFilter,
    )
    search_fields = ("public_id", "filename")
    date_hierarchy = "created_at"
    list_select_related = ("organization", "provider_account", "api_key")
    fields = (
        "file_id",
        "organization",
        "provider_account",
        "filename",
        "purpose",
        "size_exact",
        "status",
        "status_details",
        "sha256_hex",
        "storage_uri_shown",
        "storage_key",
        "key",
        "created",
        "expires",
        "deleted",
        "checked",
    )
    readonly_fields = fields

    created = time_column("created_at", "Created")
    expires = time_column("expires_at", "Expires")
    deleted = time_column("deleted_at", "Deleted")
    checked = time_column("checked_at", "Last confirmed upstream")
    size = size_column("bytes", "Size")

    @admin.display(description="File ID", ordering="public_id")
    def file_id(self, file: File) -> SafeString:
        return format_html("<code>{}</code>", file.public_id)

    @admin.display(description="Filename", ordering="filename")
    def name(self, file: File) -> SafeString | str:
        return shortened(file.filename, 32)

    @admin.display(description="Size")
    def size_exact(self, file: File) -> str:
        return f"{format_size(file.bytes)} ({file.bytes:,} bytes)"

    @admin.display(description="Status", ordering="status")
    def state(self, file: File) -> str:
        if file.is_deleted:
            return "deleted"
        if file.is_expired():
            return "expired"
        return file.status

    @admin.display(description="Account", ordering="provider_account__name")
    def account(self, file: File) -> str:
        return file.provider_account.name

    @admin.display(description="API key", ordering="api_key__prefix")
    def key(self, file: File) -> str:
        return key_prefix(file.api_key)

    @admin.display(description="SHA-256")
    def sha256_hex(self, file: File) -> SafeString | str:
        return format_html("<code>{}</code>", file.sha256) if file.sha256 else "-"

    @admin.display(description="Storage URI")
    def storage_uri_shown(self, file: File) -> SafeString | str:
        return format_html("<code>{}</code>", file.storage_uri) if file.storage_uri else "-"


@admin.register(AuditEvent)
class AuditEventAdmin(OrganizationScopedAdmin):
    read_only = True
    list_display = ("time", "action", "outcome", "reason", "file", "account", "key", "size", "organization")
    list_filter = (
        ResultFilter,
        RecentFilter,
        "action",
        "outcome",
        ("organization", admin.RelatedOnlyFieldListFilter),
        "provider_account",
    )
    search_fields = ("file_id", "detail")
    date_hierarchy = "created_at"
    list_select_related = ("organization", "api_key")
    fields = ("time", "organization", "action", "outcome", "full_reason", "file", "account", "key", "size")
    readonly_fields = fields

    time = time_column("created_at", "Time")
    size = size_column("bytes", "Bytes")

    @admin.display(description="Reason")
    def reason(self, event: AuditEvent) -> SafeString | str:
        return shortened(event.detail, 60)

    @admin.display(description="Reason")
    def full_reason(self, event: AuditEvent) -> str:
        return event.detail or "-"

    @admin.display(description="File ID", ordering="file_id")
    def file(self, event: AuditEvent) -> SafeString | str:
        if not event.file_id:
            return "-"
        url = f"{reverse('admin:files_api_file_changelist')}?{urlencode({'q': event.file_id})}"
        return format_html('<a href="{}"><code>{}</code></a>', url, event.file_id)

    @admin.display(description="Account", ordering="provider_account")
    def account(self, event: AuditEvent) -> str:
        return event.provider_account or "-"

    @admin.display(description="API key", ordering="api_key__prefix")
    def key(self, event: AuditEvent) -> str:
        return key_prefix(event.api_key)


# The admin index overview


@dataclass(frozen=True)
class OrganizationSummary:
    """One organisation's line on the admin index."""

    organization: Organization
    usage: SafeString  # a bar and "12.3 GiB of 100 GiB (12%)"
    live_files: int
    uploads: int  # successful uploads in the last 24 hours
    failures: int  # failed operations of any kind in the last 24 hours
    change_url: str
    uploads_url: str
    failures_url: str


def organization_summaries(org_ids: Collection[int] | None) -> tuple[list[OrganizationSummary], int]:
    """Summaries of the given organisations (None: all), by slug, at most OVERVIEW_MAX_ORGANIZATIONS.

    Returns them with the number of organisations left out. Three queries, however many organisations.
    """
    organizations = Organization.objects.order_by("slug")
    if org_ids is not None:
        organizations = organizations.filter(pk__in=org_ids)
    total = organizations.count()
    shown = list(
        organizations.annotate(live_file_count=Count("files", filter=Q(files__deleted_at__isnull=True)))[
            :OVERVIEW_MAX_ORGANIZATIONS
        ]
    )
    counts = {
        row["organization"]: row
        for row in AuditEvent.objects.filter(
            organization__in=[org.pk for org in shown], created_at__gte=timezone.now() - timedelta(days=1)
        )
        .values("organization")
        .annotate(
            uploads=Count("pk", filter=Q(action=AuditEvent.Action.CREATE, outcome="success")),
            failures=Count("pk", filter=~Q(outcome="success")),
        )
    }
    events_url = reverse("admin:files_api_auditevent_changelist")
    summaries = []
    for org in shown:
        row = counts.get(org.pk, {})
        recent: dict[str, str | int] = {"organization__id__exact": org.pk, "since": "1d"}
        uploads = {**recent, "action__exact": AuditEvent.Action.CREATE.value, "result": "success"}
        summaries.append(
            OrganizationSummary(
                organization=org,
                usage=usage_html(org.used_bytes, org.storage_quota_bytes),
                live_files=getattr(org, "live_file_count", 0),
                uploads=row.get("uploads", 0),
                failures=row.get("failures", 0),
                change_url=reverse("admin:tenants_organization_change", args=[org.pk]),
                uploads_url=f"{events_url}?{urlencode(uploads)}",
                failures_url=f"{events_url}?{urlencode({**recent, 'result': 'failure'})}",
            )
        )
    return summaries, total - len(shown)


def overview_context(request: HttpRequest) -> dict[str, Any]:
    """What the index's overview shows this user: every organisation for superusers, else their own."""
    if not request.user.is_staff:
        return {"summaries": [], "left_out": 0}
    org_ids = None if request.user.is_superuser else member_org_ids(request)
    summaries, left_out = organization_summaries(org_ids)
    return {"summaries": summaries, "left_out": left_out}
