"""Django admin for organisations, their admins, API keys and provider accounts.

Who sees what: superusers (platform operators) see and change everything. Any other staff user is
an org admin of the organisations they have a ``Membership`` in, and their membership is their
permission: they see only those organisations' objects, may change what ``member_actions`` allows,
and never the limits an operator sets. Objects of other organisations are left out of every
queryset, so a crafted URL to one finds nothing.
"""

from __future__ import annotations

from fnmatch import fnmatch
from typing import Any, ClassVar
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from config.errors import GatewayError, InvalidRequest
from providers import registry
from tenants.models import ApiKey, Membership, Organization, ProviderAccount
from tenants.services import api_key_create, api_key_revoke, provider_account_forget

admin.site.site_header = "filegate administration"
admin.site.site_title = "filegate admin"

LIMIT_FIELDS = ("storage_quota_bytes", "max_file_size_bytes", "batch_max_size_bytes")
# Settings naming a file or folder on the gateway's own machine: an org admin choosing one could
# make the process write (local ``path``) or read (``credentials_file``) wherever it may.
HOST_PATH_SETTINGS = ("path", "credentials_file")
# An org admin pointing ``base_url`` at an internal address would make the gateway call it with our
# network position (SSRF); org admins may only name hosts of the real providers (ORG_ADMIN_UPSTREAM_HOSTS).
URL_SETTINGS = ("base_url", "endpoint_url")
_ORG_IDS_ATTR = "_filegate_member_org_ids"
_NEW_KEY_ATTR = "_filegate_new_key_plaintext"


def member_org_ids(request: HttpRequest) -> frozenset[int]:
    """Ids of the organisations the request's user administers (read once per request)."""
    if isinstance(request.user, AnonymousUser):
        return frozenset()
    org_ids = getattr(request, _ORG_IDS_ATTR, None)
    if org_ids is None:
        memberships = Membership.objects.filter(user=request.user)
        org_ids = frozenset(memberships.values_list("organization_id", flat=True))
        setattr(request, _ORG_IDS_ATTR, org_ids)
    return org_ids


class OrganizationScopedAdmin(admin.ModelAdmin):
    """Base for every model that belongs to one organisation.

    ``organization_field`` names the foreign key to ``Organization`` (``"pk"`` for the organisation
    itself). ``member_actions`` are what an org admin may do within their organisations;
    ``read_only`` models (records and audit) cannot be changed by anyone, superusers included.
    """

    organization_field: ClassVar[str] = "organization"
    member_actions: ClassVar[frozenset[str]] = frozenset({"view"})
    read_only: ClassVar[bool] = False

    def organization_id_of(self, obj: models.Model) -> int:
        if self.organization_field == "pk":
            return obj.pk
        return getattr(obj, f"{self.organization_field}_id")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.organization_field}__in": member_org_ids(request)})

    def _may(self, request: HttpRequest, action: str, obj: models.Model | None) -> bool:
        if self.read_only and action != "view":
            return False
        if request.user.is_superuser:
            return True
        if action not in self.member_actions:
            return False
        org_ids = member_org_ids(request)
        # The object check is a second line of defence: get_queryset already hides other orgs' rows.
        return bool(org_ids) and (obj is None or self.organization_id_of(obj) in org_ids)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._may(request, "view", None)

    def has_view_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return self._may(request, "view", obj) or self._may(request, "change", obj)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self._may(request, "add", None)

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return self._may(request, "change", obj)

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return self._may(request, "delete", obj)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        # An org admin may only file things under their own organisations; a posted id of another
        # organisation is then an invalid choice, not a silent move.
        if db_field.related_model is Organization and not request.user.is_superuser:
            kwargs["queryset"] = Organization.objects.filter(pk__in=member_org_ids(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class MembershipInline(admin.TabularInline):
    """The staff users who administer an organisation; only operators change them."""

    model = Membership
    extra = 0
    fields = ("user", "created_at")
    readonly_fields = ("created_at",)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser or bool(member_org_ids(request))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "user":
            kwargs["queryset"] = db_field.related_model.objects.filter(is_staff=True)  # only staff can log in here
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class OrganizationForm(forms.ModelForm):
    class Meta:
        model = Organization
        fields = ("slug", "name", *LIMIT_FIELDS)

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        for name in LIMIT_FIELDS:
            value = cleaned.get(name)
            if value is not None and value <= 0:
                self.add_error(name, "Must be a positive number of bytes.")
        return cleaned


def usage_percent(org: Organization) -> float:
    if org.storage_quota_bytes <= 0:
        return 100.0
    return 100.0 * org.used_bytes / org.storage_quota_bytes


@admin.register(Organization)
class OrganizationAdmin(OrganizationScopedAdmin):
    form = OrganizationForm
    organization_field = "pk"
    member_actions = frozenset({"view", "change"})
    inlines = (MembershipInline,)
    list_display = ("slug", "name", "usage", "quota", "percent_used", "usage_bar", "live_files", "reserved")
    search_fields = ("slug", "name")
    fields = ("slug", "name", *LIMIT_FIELDS, "usage", "usage_bar", "reserved", "created_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Organization]:
        # "files" is files_api's reverse relation, named rather than imported: tenants must not import files_api.
        return (
            super()
            .get_queryset(request)
            .annotate(live_file_count=Count("files", filter=Q(files__deleted_at__isnull=True)))
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Organization | None = None) -> tuple[str, ...]:
        shown = ("usage", "usage_bar", "reserved", "created_at")
        if request.user.is_superuser:
            return shown
        # Limits are the operator's contract with the organisation: its admins see them, operators set them.
        return ("slug", *LIMIT_FIELDS, *shown)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return request.user.is_superuser

    @admin.display(description="Used", ordering="used_bytes")
    def usage(self, org: Organization) -> str:
        return filesizeformat(org.used_bytes)

    @admin.display(description="Quota", ordering="storage_quota_bytes")
    def quota(self, org: Organization) -> str:
        return filesizeformat(org.storage_quota_bytes)

    @admin.display(description="% used")
    def percent_used(self, org: Organization) -> str:
        return f"{usage_percent(org):.1f}%"

    @admin.display(description="Usage")
    def usage_bar(self, org: Organization) -> SafeString:
        percent = usage_percent(org)
        colour = "#c62828" if percent >= 90 else "#ef6c00" if percent >= 75 else "#2e7d32"
        return format_html(
            '<div title="{}% of {}" style="width:120px;height:10px;background:#e0e0e0;border-radius:3px">'
            '<div style="width:{}%;height:10px;background:{};border-radius:3px"></div></div>',
            f"{percent:.1f}",
            filesizeformat(org.storage_quota_bytes),
            f"{min(percent, 100.0):.1f}",
            colour,
        )

    @admin.display(description="Live files", ordering="live_file_count")
    def live_files(self, org: Organization) -> int:
        return getattr(org, "live_file_count", 0)

    @admin.display(description="Reserved", ordering="reserved_bytes")
    def reserved(self, org: Organization) -> str:
        return filesizeformat(org.reserved_bytes)


@admin.register(Membership)
class MembershipAdmin(OrganizationScopedAdmin):
    list_display = ("user", "organization", "created_at")
    list_filter = (("organization", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("user__username", "user__email", "organization__slug")
    list_select_related = ("user", "organization")

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "user":
            kwargs["queryset"] = db_field.related_model.objects.filter(is_staff=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(ApiKey)
class ApiKeyAdmin(OrganizationScopedAdmin):
    """Keys are issued by ``api_key_create``: the plaintext is shown on one page, once, and only its hash is kept."""

    member_actions = frozenset({"view", "add", "change"})
    list_display = ("prefix", "name", "organization", "created_at", "last_used_at", "revoked_at", "is_active")
    list_filter = (("organization", admin.RelatedOnlyFieldListFilter), ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("prefix", "name")
    list_select_related = ("organization",)
    actions = ("revoke",)

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("organization", "name")
        return ("organization", "name", "prefix", "created_at", "last_used_at", "revoked_at")

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        return ("organization", "prefix", "created_at", "last_used_at", "revoked_at")

    @admin.display(description="Active", boolean=True)
    def is_active(self, api_key: ApiKey) -> bool:
        return not api_key.is_revoked

    def save_model(self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = api_key_create(organization=obj.organization, name=obj.name)
        obj.pk = issued.api_key.pk
        obj.refresh_from_db()
        obj._state.adding = False
        # Lives only as long as this request's objects: response_add shows it and nothing stores it.
        setattr(obj, _NEW_KEY_ATTR, issued.plaintext)

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> HttpResponse:
        plaintext = getattr(obj, _NEW_KEY_ATTR, None)
        if plaintext is None:
            return super().response_add(request, obj, post_url_continue)
        opts = self.opts
        context = {
            **self.admin_site.each_context(request),
            "opts": opts,
            "title": "New API key",
            "api_key": obj,
            "plaintext": plaintext,
            "change_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]),
            "changelist_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
        }
        return TemplateResponse(request, "admin/tenants/apikey/created.html", context)

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        live = list(queryset.filter(revoked_at__isnull=True))
        for api_key in live:
            api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {len(live)} API key(s).", messages.SUCCESS)


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that never renders a value, not even the one just posted (like PasswordInput)."""

    def format_value(self, value: Any) -> None:
        return None


def parse_secret_lines(text: str) -> dict[str, str]:
    """``name=value`` per line (blank lines skipped). Errors name the line, never the value."""
    parsed: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, separator, value = line.partition("=")
        if not separator or not name.strip():
            raise forms.ValidationError(f"Line {number}: expected name=value.")
        parsed[name.strip()] = value.strip()
    return parsed


def _kind_help() -> str:
    lines = []
    for kind in registry.kinds():
        try:
            cls = registry.provider_class(kind)
        except ImproperlyConfigured:
            continue
        settings_names = ", ".join(sorted(cls.settings_fields)) or "none"
        secret_names = ", ".join(sorted(cls.secret_fields)) or "none"
        lines.append(f"{kind}: settings {settings_names}; secrets {secret_names}")
    return " | ".join(lines)


def save_account(account: ProviderAccount) -> None:
    """Save ``account``; if it is the default, the organisation's other accounts stop being one."""
    with transaction.atomic():
        if account.is_default:
            # Before the save: the database allows one default per organisation at any moment.
            ProviderAccount.objects.filter(organization_id=account.organization_id, is_default=True).exclude(
                pk=account.pk
            ).update(is_default=False)
        account.save()
    provider_account_forget(account_id=account.pk)


class ProviderAccountForm(forms.ModelForm):
    """Non-secret settings as JSON; secrets write-only, merged into the stored ones, checked by the registry."""

    kind = forms.ChoiceField(choices=lambda: [(kind, kind) for kind in registry.kinds()])
    secrets = forms.CharField(
        required=False,
        widget=WriteOnlyTextarea(attrs={"rows": 3, "autocomplete": "off", "spellcheck": "false"}),
        help_text=(
            "One name=value per line. Secrets are stored encrypted and never shown again. "
            "A secret left out (or left blank) keeps its stored value."
        ),
    )
    clear_secrets = forms.BooleanField(
        required=False, label="Forget stored secrets", help_text="Drop every stored secret before applying the above."
    )
    # Not the model field itself: Django would then reject a second default before save_account
    # gets the chance to move the default over.
    make_default = forms.BooleanField(
        required=False,
        label="Default account",
        help_text="Used when a call names no X-Provider-Account. Making this one the default un-defaults the others.",
    )

    # Set per request by ProviderAccountAdmin.get_form: only operators choose paths on the host.
    may_set_host_paths: ClassVar[bool] = True

    class Meta:
        model = ProviderAccount
        fields = ("organization", "name", "kind", "settings")
        help_texts = {"settings": 'A JSON object of the kind\'s non-secret settings, e.g. {"region": "us-east-1"}.'}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"].help_text = _kind_help()
        self.fields["make_default"].initial = self.instance.is_default
        if self.instance.pk and "organization" in self.fields:
            # Files point at the account: it cannot move to another organisation.
            self.fields["organization"].disabled = True
        if self.instance.pk and self.instance.files.exists():
            # Its files live in that provider: another kind could not find them again.
            self.fields["kind"].disabled = True
            self.fields["kind"].help_text = "Fixed: files were uploaded through this account."
        self.provider_settings: dict[str, Any] = {}
        self.provider_secrets: dict[str, Any] = {}

    def clean_secrets(self) -> dict[str, str]:
        return parse_secret_lines(self.cleaned_data.get("secrets") or "")

    def _stored_secrets(self) -> dict[str, str]:
        if self.instance._state.adding or self.cleaned_data.get("clear_secrets"):
            return {}
        try:
            return self.instance.get_secrets()
        except ImproperlyConfigured:
            self.add_error("secrets", "The stored secrets cannot be decrypted: forget them and enter them again.")
            return {}

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        kind = cleaned.get("kind")
        if not kind or "settings" in self.errors or "secrets" in self.errors:
            return cleaned
        provider_settings = cleaned.get("settings") or {}
        if not isinstance(provider_settings, dict):
            self.add_error("settings", 'Enter a JSON object, e.g. {"bucket": "my-bucket"}.')
            return cleaned
        try:
            cls = registry.provider_class(kind)
        except (InvalidRequest, ImproperlyConfigured) as exc:
            self.add_error("kind", str(exc))
            return cleaned
        misplaced = sorted(set(provider_settings) & cls.secret_fields)
        if misplaced:
            # Settings are stored in plain text; a secret there would escape the encryption.
            self.add_error("settings", f"{misplaced[0]!r} is a secret: enter it under Secrets, where it is encrypted.")
            return cleaned
        posted = cleaned.get("secrets") or {}
        stored_settings = self.instance.settings if self.instance.pk else {}
        changed_paths = [
            name
            for name in HOST_PATH_SETTINGS
            if name in posted or provider_settings.get(name) != stored_settings.get(name)
        ]
        if changed_paths and not self.may_set_host_paths:
            field = "secrets" if changed_paths[0] in posted else "settings"
            self.add_error(field, f"{changed_paths[0]!r} is a path on the gateway's server: only operators set it.")
            return cleaned
        url_error = self._url_error(provider_settings, stored_settings)
        if url_error:
            self.add_error("settings", url_error)
            return cleaned
        not_secret = sorted(set(posted) - cls.secret_fields)
        if not_secret:
            self.add_error(
                "secrets",
                f"{not_secret[0]!r} is not a secret of {kind!r} (its secrets: "
                f"{', '.join(sorted(cls.secret_fields)) or 'none'}); settings go in the JSON field.",
            )
            return cleaned
        # Secrets of a previous kind that this kind does not take are dropped, not kept as unknown keys.
        stored = {name: value for name, value in self._stored_secrets().items() if name in cls.secret_fields}
        merged = {**stored, **{name: value for name, value in posted.items() if value}}
        try:
            self.provider_settings, self.provider_secrets = registry.split_config(kind, {**provider_settings, **merged})
        except InvalidRequest as exc:
            self.add_error("secrets" if exc.param in cls.secret_fields else "settings", exc.message)
        return cleaned

    def _url_error(self, provider_settings: dict[str, Any], stored_settings: dict[str, Any]) -> str | None:
        if self.may_set_host_paths:
            return None
        allowed = settings.ORG_ADMIN_UPSTREAM_HOSTS
        for name in URL_SETTINGS:
            value = provider_settings.get(name)
            if not value or value == stored_settings.get(name):
                continue
            parts = urlsplit(str(value))
            host = (parts.hostname or "").lower()
            if parts.scheme != "https" or not any(fnmatch(host, pattern) for pattern in allowed):
                return f"{name!r} must be an https URL on one of {', '.join(allowed)}; only operators set other hosts."
        return None

    def save(self, commit: bool = True) -> ProviderAccount:
        account = super().save(commit=False)
        account.settings = self.provider_settings
        account.set_secrets(self.provider_secrets)
        account.is_default = self.cleaned_data.get("make_default", False)
        if commit:
            save_account(account)
        return account


@admin.register(ProviderAccount)
class ProviderAccountAdmin(OrganizationScopedAdmin):
    form = ProviderAccountForm
    member_actions = frozenset({"view", "add", "change", "delete"})
    list_display = ("name", "organization", "kind", "is_default", "secret_names", "updated_at")
    list_filter = (("organization", admin.RelatedOnlyFieldListFilter), "kind", "is_default")
    search_fields = ("name", "organization__slug")
    list_select_related = ("organization",)
    readonly_fields = ("secret_status", "created_at", "updated_at")
    fields = (
        "organization",
        "name",
        "kind",
        "settings",
        "secret_status",
        "secrets",
        "clear_secrets",
        "make_default",
        "created_at",
        "updated_at",
    )
    actions = ("test_connection",)

    @admin.display(description="Secrets")
    def secret_names(self, account: ProviderAccount) -> str:
        try:
            return ", ".join(account.secret_names) or "-"
        except ImproperlyConfigured:
            return "cannot be decrypted"

    @admin.display(description="Stored secrets")
    def secret_status(self, account: ProviderAccount) -> SafeString | str:
        try:
            stored = account.get_secrets()
        except ImproperlyConfigured:
            return "cannot be decrypted with the configured CREDENTIAL_KEYS"
        try:
            names = set(registry.provider_class(account.kind).secret_fields) if account.kind else set()
        except (InvalidRequest, ImproperlyConfigured):
            names = set()
        names |= set(stored)
        if not names:
            return "none"
        rows = ((name, "set (hidden)" if name in stored else "not set") for name in sorted(names))
        return format_html_join(mark_safe("<br>"), "{}: {}", rows)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        # A fresh class per call (modelform_factory): no other request sees this flag.
        form.may_set_host_paths = request.user.is_superuser  # type: ignore[attr-defined]
        return form

    def save_model(self, request: HttpRequest, obj: ProviderAccount, form: forms.ModelForm, change: bool) -> None:
        if not change and not ProviderAccount.objects.filter(organization_id=obj.organization_id).exists():
            obj.is_default = True  # as provider_account_create: an organisation's first account is its default
        save_account(obj)

    @admin.action(description="Test connection", permissions=["change"])
    def test_connection(self, request: HttpRequest, queryset: QuerySet[ProviderAccount]) -> None:
        for account in queryset.select_related("organization"):
            try:
                provider = registry.get_provider(account.kind, account.provider_config(), cache_key=str(account.pk))
                provider.check()
            except GatewayError as exc:
                self.message_user(request, f"{account}: {exc.message}", messages.ERROR)
            except ImproperlyConfigured as exc:
                self.message_user(request, f"{account}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{account}: connection OK.", messages.SUCCESS)
