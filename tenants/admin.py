"""Django admin for organisations, their admins, API keys and provider accounts.

Who sees what: superusers (platform operators) see and change everything. Any other staff user is
an org admin of the organisations they have a ``Membership`` in, and their membership is their
permission: they see only those organisations' objects, may change what ``member_actions`` allows,
and never the limits an operator sets. Objects of other organisations are left out of every
queryset, so a crafted URL to one finds nothing.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable
from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db import models
from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import capfirst

from config.errors import GatewayError, InvalidRequest
from providers import registry
from tenants import crypto
from tenants.display import format_size, format_time, usage_html
from tenants.forms import (
    LIMIT_FIELDS,
    RATE_LIMIT_FIELDS,
    ApiKeyForm,
    OrganizationForm,
    ProviderAccountForm,
    account_form_class,
    account_inputs,
    installed_kinds,
    kind_label,
)
from tenants.models import ApiKey, Membership, Organization, ProviderAccount
from tenants.ratelimits import SCOPES, format_rate, organization_rate_limit, rate_limit
from tenants.services import (
    api_key_create,
    api_key_delete,
    api_key_revoke,
    org_admin_add,
    provider_account_forget,
    provider_account_save,
)

logger = logging.getLogger("filegate.admin")

admin.site.site_header = "filegate administration"
admin.site.site_title = "filegate admin"
# The app sidebar takes a third of a 1366 px screen; the lists need the room more (every page links home).
admin.site.enable_nav_sidebar = False

_ORG_IDS_ATTR = "_filegate_member_org_ids"
_NEW_KEY_ATTR = "_filegate_new_key_plaintext"
# Between the POST that creates a key and the page that shows it (post/redirect/get), its plaintext
# waits in the session, encrypted, and is removed by the first view of that page.
NEW_KEYS_SESSION_KEY = "filegate_new_api_keys"


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


def column(name: str, description: str, show: Callable[[Any], str]) -> Callable[[Any, Any], str]:
    """An admin display method showing the field ``name`` through ``show`` ("-" when it is empty)."""

    @admin.display(description=description, ordering=name)
    def display(model_admin: Any, obj: Any) -> str:
        value = getattr(obj, name)
        return "-" if value is None else show(value)

    return display


def time_column(name: str, description: str) -> Callable[[Any, Any], str]:
    """A datetime field, with its time zone: "2026-11-26 14:03:05 UTC"."""
    return column(name, description, format_time)


def size_column(name: str, description: str) -> Callable[[Any, Any], str]:
    """A byte count, in binary units: "12.3 GiB"."""
    return column(name, description, format_size)


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

    def is_single_org(self, request: HttpRequest) -> bool:
        """An org admin of one organisation: a column naming it would say the same on every row."""
        return not request.user.is_superuser and len(member_org_ids(request)) <= 1

    def get_list_display(self, request: HttpRequest) -> Any:
        columns = super().get_list_display(request)
        if self.is_single_org(request):
            return [column for column in columns if column != "organization"]
        return columns

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        if self.organization_field == "organization" and self.is_single_org(request) and member_org_ids(request):
            initial.setdefault("organization", str(next(iter(member_org_ids(request)))))
        return initial

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        # An org admin may only pick their own organisations and their objects; a posted id of
        # another organisation's is then an invalid choice, not a silent move.
        if not request.user.is_superuser:
            related = db_field.related_model
            if related is Organization:
                kwargs["queryset"] = Organization.objects.filter(pk__in=member_org_ids(request))
            elif hasattr(related, "organization"):  # the model belongs to an organisation (a foreign key)
                kwargs["queryset"] = related.objects.filter(organization__in=member_org_ids(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def response_action(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        # Whatever goes wrong in an action, the admin gets a message and the list back, never a
        # traceback page (which, with DEBUG on, would show the request's settings and headers).
        try:
            return super().response_action(request, queryset)
        except Exception as exc:  # noqa: BLE001 - the point is to catch everything
            log_unexpected(f"admin action on {self.opts.label}", exc)
            self.message_user(
                request, f"The action failed: {unexpected_message(exc)}", messages.ERROR, fail_silently=True
            )
            return HttpResponseRedirect(request.get_full_path())

    def missing_object(self, request: HttpRequest, object_id: str) -> HttpResponseRedirect:
        """What the admin does for an id it cannot find (or that belongs to another organisation)."""
        self.message_user(
            request,
            # The words (and quotes) of Django's own message for an unknown id: both must read the same.
            f"{capfirst(self.opts.verbose_name)} with ID \u201c{object_id}\u201d doesn\u2019t exist. "
            "Perhaps it was deleted?",
            messages.WARNING,
        )
        return HttpResponseRedirect(reverse("admin:index", current_app=self.admin_site.name))


class ChoiceFilter(admin.SimpleListFilter):
    """A list filter whose choices are conditions: ``conditions = {value: (label, Q(...))}``."""

    conditions: ClassVar[dict[str, tuple[str, Q]]] = {}

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(value, label) for value, (label, _) in self.conditions.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        choice = self.conditions.get(self.value() or "")
        return queryset if choice is None else queryset.filter(choice[1])


def rate_limits_text(limit_of: Callable[[str], int]) -> str:
    """ "requests: 6000 per minute; uploads: no limit; downloads: 1200 per minute"."""
    return "; ".join(f"{scope}: {format_rate(limit_of(scope))}" for scope in SCOPES)


def log_unexpected(what: str, exc: BaseException) -> None:
    # Where and what, not the exception's message: it can quote a header or setting it choked on,
    # and provider credentials are never logged.
    logger.error("%s failed with %s:\n%s", what, type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__)))


def unexpected_message(exc: BaseException) -> str:
    return f"an unexpected error ({type(exc).__name__}); the details are in the server log."


# Organisations and their admins

MEMBER_PICK_HELP = (
    "Who can be picked: any active user who is not a superuser (superusers see every organisation "
    "anyway). Saving makes the user staff, so they can log in to this admin, where they see only the "
    "organisations they are a member of. From the command line: "
    "<code>python manage.py create_org_admin SLUG USERNAME</code>."
)


class MemberPicker:
    """The user picker of a membership: superusers may make any active non-superuser an org admin; nobody else may."""

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "user":
            users = db_field.related_model.objects
            kwargs["queryset"] = (
                users.filter(is_active=True, is_superuser=False).order_by("username")
                if request.user.is_superuser
                else users.none()
            )
            kwargs["help_text"] = MEMBER_PICK_HELP
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]


class MembershipInline(MemberPicker, admin.TabularInline):
    """The users who administer an organisation; only operators change them."""

    model = Membership
    extra = 0
    fields = ("user", "created")
    readonly_fields = ("created",)
    verbose_name = "organisation admin"
    verbose_name_plural = "organisation admins"
    created = time_column("created_at", "Since")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser or bool(member_org_ids(request))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser


@admin.register(Organization)
class OrganizationAdmin(OrganizationScopedAdmin):
    form = OrganizationForm
    organization_field = "pk"
    member_actions = frozenset({"view", "change"})
    inlines = (MembershipInline,)
    list_display = ("slug", "name", "usage", "live_files", "reserved", "default_account")
    search_fields = ("slug", "name")
    shown = ("usage", "live_files", "reserved", "default_account", "created")
    limits_shown = ("storage_quota", "max_file_size", "batch_max_size", "rate_limits")

    reserved = size_column("reserved_bytes", "Reserved by uploads in flight")
    storage_quota = size_column("storage_quota_bytes", "Storage quota")
    max_file_size = size_column("max_file_size_bytes", "Largest file")
    batch_max_size = size_column("batch_max_size_bytes", "Largest batch file")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Organization]:
        # "files" is files_api's reverse relation, named rather than imported: tenants must not import files_api.
        defaults = Prefetch(
            "provider_accounts", queryset=ProviderAccount.objects.filter(is_default=True), to_attr="default_accounts"
        )
        return (
            super()
            .get_queryset(request)
            .annotate(live_file_count=Count("files", filter=Q(files__deleted_at__isnull=True)))
            .prefetch_related(defaults)
        )

    def get_fields(self, request: HttpRequest, obj: Organization | None = None) -> tuple[str, ...]:
        shown = self.shown if obj is not None else ()
        if request.user.is_superuser:
            return ("slug", "name", *LIMIT_FIELDS, *RATE_LIMIT_FIELDS, *shown)
        return ("slug", "name", *self.limits_shown, *shown)

    def get_readonly_fields(self, request: HttpRequest, obj: Organization | None = None) -> tuple[str, ...]:
        if request.user.is_superuser:
            return self.shown
        # Limits are the operator's contract with the organisation: its admins see them, operators set them.
        return ("slug", *LIMIT_FIELDS, *RATE_LIMIT_FIELDS, *self.limits_shown, *self.shown)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return request.user.is_superuser

    def save_formset(self, request: HttpRequest, form: forms.ModelForm, formset: Any, change: bool) -> None:
        super().save_formset(request, form, formset, change)
        for membership in [*formset.new_objects, *(obj for obj, _ in formset.changed_objects)]:
            if isinstance(membership, Membership):
                org_admin_add(organization=membership.organization, user=membership.user)

    @admin.display(description="Rate limits per key")
    def rate_limits(self, org: Organization) -> str:
        return rate_limits_text(lambda scope: organization_rate_limit(org, scope))

    @admin.display(description="Usage", ordering="used_bytes")
    def usage(self, org: Organization) -> SafeString:
        return usage_html(org.used_bytes, org.storage_quota_bytes)

    @admin.display(description="Live files", ordering="live_file_count")
    def live_files(self, org: Organization) -> int:
        return getattr(org, "live_file_count", 0)

    @admin.display(description="Default account")
    def default_account(self, org: Organization) -> SafeString | str:
        accounts = getattr(org, "default_accounts", None)
        if accounts is None:
            accounts = list(org.provider_accounts.filter(is_default=True))
        if not accounts:
            return "None: API calls must name an account in X-Provider-Account."
        account = accounts[0]
        url = reverse("admin:tenants_provideraccount_change", args=[account.pk])
        return format_html('<a href="{}">{}</a> ({})', url, account.name, kind_label(account.kind))

    created = time_column("created_at", "Created")


@admin.register(Membership)
class MembershipAdmin(MemberPicker, OrganizationScopedAdmin):
    list_display = ("user", "organization", "is_staff", "created")
    list_filter = (("organization", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("user__username", "user__email", "organization__slug")
    list_select_related = ("user", "organization")
    fields = ("organization", "user")
    created = time_column("created_at", "Since")

    @admin.display(description="Can log in", boolean=True)
    def is_staff(self, membership: Membership) -> bool:
        return membership.user.is_staff and membership.user.is_active

    def save_model(self, request: HttpRequest, obj: Membership, form: forms.ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        org_admin_add(organization=obj.organization, user=obj.user)


# API keys


class KeyStatusFilter(ChoiceFilter):
    title = "status"
    parameter_name = "status"
    conditions = {"active": ("Active", Q(revoked_at__isnull=True)), "revoked": ("Revoked", Q(revoked_at__isnull=False))}


@admin.register(ApiKey)
class ApiKeyAdmin(OrganizationScopedAdmin):
    """Keys are issued by ``api_key_create``: the plaintext is shown on one page, once, and only its hash is kept."""

    form = ApiKeyForm
    member_actions = frozenset({"view", "add", "change"})
    list_display = ("key_prefix", "name", "organization", "status", "created", "last_used")
    list_filter = (KeyStatusFilter, ("organization", admin.RelatedOnlyFieldListFilter))
    search_fields = ("prefix", "name")
    list_select_related = ("organization",)
    shown = ("key_prefix", "status", "rate_limits", "created", "last_used")

    created = time_column("created_at", "Created")
    last_used = time_column("last_used_at", "Last used")

    @admin.display(description="Rate limits in effect")
    def rate_limits(self, api_key: ApiKey) -> str:
        return rate_limits_text(lambda scope: rate_limit(api_key, scope))

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        shown_once = "; the key itself is shown once, on the next page" if obj is None else ""
        kwargs["help_texts"] = {"name": f"What the key is for (a service, a person){shown_once}."}
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("organization", "name", *RATE_LIMIT_FIELDS)
        return ("organization", "name", *RATE_LIMIT_FIELDS, *self.shown)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        return ("organization", *self.shown)

    def get_urls(self) -> list[URLPattern]:
        views = {"created": self.created_view, "revoke": self.revoke_view}
        return [
            path(f"<path:object_id>/{name}/", self.admin_site.admin_view(view), name=f"tenants_apikey_{name}")
            for name, view in views.items()
        ] + super().get_urls()

    @admin.display(description="Key prefix", ordering="prefix")
    def key_prefix(self, api_key: ApiKey) -> SafeString:
        return format_html("<code>{}…</code>", api_key.prefix)

    @admin.display(description="Status", ordering="revoked_at")
    def status(self, api_key: ApiKey) -> str:
        return f"Revoked {format_time(api_key.revoked_at)}" if api_key.is_revoked else "Active"

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None) -> Any:
        # Another key is made by coming back here, not from a button that would skip the one-time page.
        context = {"show_save_and_add_another": False, "show_save_and_continue": False, **(extra_context or {})}
        return super().add_view(request, form_url, context)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = api_key_create(
            organization=obj.organization,
            name=obj.name,
            rate_limits={field: form.cleaned_data.get(field) for field in RATE_LIMIT_FIELDS},
        )
        obj.pk = issued.api_key.pk
        obj.refresh_from_db()
        setattr(obj, _NEW_KEY_ATTR, issued.plaintext)

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> HttpResponse:
        plaintext = getattr(obj, _NEW_KEY_ATTR, None)
        if plaintext is None:
            return super().response_add(request, obj, post_url_continue)
        pending = request.session.get(NEW_KEYS_SESSION_KEY, {})
        pending[str(obj.pk)] = crypto.encrypt(plaintext)
        request.session[NEW_KEYS_SESSION_KEY] = pending
        # Post/redirect/get: reloading the page that shows the key cannot post the form again.
        return HttpResponseRedirect(reverse("admin:tenants_apikey_created", args=[obj.pk]))

    def created_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The new key's plaintext, on the first view after its creation only."""
        api_key = self.get_object(request, unquote(object_id))
        if api_key is None:
            return self.missing_object(request, object_id)
        pending = request.session.get(NEW_KEYS_SESSION_KEY, {})
        token = pending.pop(str(api_key.pk), None)
        plaintext = None
        if token is not None:
            request.session[NEW_KEYS_SESSION_KEY] = pending
            try:
                plaintext = crypto.decrypt(token)
            except ImproperlyConfigured:  # CREDENTIAL_KEYS changed in between: it is lost, say so
                plaintext = None
        return TemplateResponse(
            request, "admin/tenants/apikey/created.html", self.key_page_context(request, api_key, plaintext=plaintext)
        )

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: the confirmation page. POST: revoke, then back to the key's page."""
        api_key = self.get_object(request, unquote(object_id))
        if api_key is None:
            return self.missing_object(request, object_id)
        if not self.has_change_permission(request, api_key):
            raise PermissionDenied
        change_url = reverse("admin:tenants_apikey_change", args=[api_key.pk])
        if api_key.is_revoked:
            self.message_user(request, f"{api_key} is already revoked.", messages.INFO)
            return HttpResponseRedirect(change_url)
        if request.method == "POST":
            api_key_revoke(api_key=api_key)
            self.log_change(request, api_key, "Revoked.")
            self.message_user(request, f"Revoked {api_key}: the API refuses it from now on.", messages.SUCCESS)
            return HttpResponseRedirect(change_url)
        return TemplateResponse(
            request, "admin/tenants/apikey/revoke.html", self.key_page_context(request, api_key, title="Revoke API key")
        )

    def key_page_context(self, request: HttpRequest, api_key: ApiKey, **extra: Any) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "New API key",
            "api_key": api_key,
            "change_url": reverse("admin:tenants_apikey_change", args=[api_key.pk]),
            "changelist_url": reverse("admin:tenants_apikey_changelist"),
            "add_url": reverse("admin:tenants_apikey_add"),
            **extra,
        }

    def delete_model(self, request: HttpRequest, obj: ApiKey) -> None:
        api_key_delete(api_key=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            api_key_delete(api_key=api_key)


# Provider accounts


def connection_report(account: ProviderAccount) -> tuple[int, str]:
    """Build the account's provider and make its cheapest authenticated call: (message level, text).

    Never raises: an unexpected exception becomes a message naming its class (logged with its traceback).
    """
    try:
        provider = registry.get_provider(account.kind, account.provider_config(), cache_key=str(account.pk))
        provider.check()
    except GatewayError as exc:
        return messages.ERROR, exc.message
    except ImproperlyConfigured as exc:
        return messages.ERROR, str(exc)
    except Exception as exc:  # noqa: BLE001 - a provider bug must not become a traceback page
        log_unexpected(f"Test connection of provider account {account.pk}", exc)
        return messages.ERROR, f"the test failed with {unexpected_message(exc)}"
    return messages.SUCCESS, "connection OK."


@admin.register(ProviderAccount)
class ProviderAccountAdmin(OrganizationScopedAdmin):
    form = ProviderAccountForm
    member_actions = frozenset({"view", "add", "change", "delete"})
    list_display = ("name", "organization", "kind_name", "is_default", "secret_state", "updated")
    list_filter = (("organization", admin.RelatedOnlyFieldListFilter), "kind", "is_default")
    search_fields = ("name", "organization__slug")
    list_select_related = ("organization",)
    readonly_fields = ("stored_settings", "created", "updated")
    actions = ("test_connection",)

    created = time_column("created_at", "Created")
    updated = time_column("updated_at", "Updated")

    class Media:
        js = ("tenants/provider_account_form.js",)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        kwargs["form"] = account_form_class(is_operator=request.user.is_superuser)
        return super().get_form(request, obj, change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: ProviderAccount | None = None) -> list[Any]:
        fieldsets: list[Any] = [(None, {"fields": ["organization", "name", "kind", "make_default"]})]
        for kind, cls in installed_kinds().items():
            names = [name for field in cls.fields for name in account_inputs(kind, field)]
            if names:
                options = {
                    "fields": names,
                    "classes": ["provider-kind", f"provider-kind-{kind}"],
                    "description": f"Used only when the kind is {kind_label(kind)}.",
                }
                fieldsets.append((f"{kind_label(kind)} settings", options))
        if obj is not None and request.user.is_superuser:
            fieldsets.append(
                ("Stored settings (operators only)", {"fields": ["stored_settings"], "classes": ["collapse"]})
            )
        if obj is not None:
            fieldsets.append(("History", {"fields": ["created", "updated"]}))
        return fieldsets

    @admin.display(description="Kind", ordering="kind")
    def kind_name(self, account: ProviderAccount) -> str:
        return kind_label(account.kind)

    @admin.display(description="Secrets")
    def secret_state(self, account: ProviderAccount) -> str:
        try:
            stored = account.get_secrets()
        except ImproperlyConfigured:
            return "cannot be decrypted"
        try:
            names = sorted(field.name for field in registry.provider_class(account.kind).fields if field.secret)
        except (InvalidRequest, ImproperlyConfigured):
            names = sorted(stored)
        return ", ".join(f"{name}: {'stored' if name in stored else 'not set'}" for name in names) or "none"

    @admin.display(description="Settings as stored (JSON, secrets excluded)")
    def stored_settings(self, account: ProviderAccount) -> SafeString:
        return format_html("<pre>{}</pre>", json.dumps(account.settings, indent=2, sort_keys=True))

    def save_model(self, request: HttpRequest, obj: ProviderAccount, form: forms.ModelForm, change: bool) -> None:
        if not change and not ProviderAccount.objects.filter(organization_id=obj.organization_id).exists():
            obj.is_default = True  # as provider_account_create: an organisation's first account is its default
        provider_account_save(obj)

    def delete_model(self, request: HttpRequest, obj: ProviderAccount) -> None:
        super().delete_model(request, obj)
        provider_account_forget(account_id=obj.pk)  # this process stops using it at once

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ProviderAccount]) -> None:
        super().delete_queryset(request, queryset)
        provider_account_forget()

    @admin.action(description="Test connection", permissions=["change"])
    def test_connection(self, request: HttpRequest, queryset: QuerySet[ProviderAccount]) -> None:
        for account in queryset.select_related("organization"):
            level, text = connection_report(account)
            self.message_user(request, f"{account}: {text}", level)
