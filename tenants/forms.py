"""Admin forms: organisation limits in MiB/GiB, and provider accounts with one set of inputs per kind.

A provider account's inputs are built from the ``Field`` declarations of every installed kind
(``providers.fields``), so a kind that lands later gets its form with no change here. Each kind's
inputs are named ``<kind>__<setting>``; only the chosen kind's are read. Secrets and uploaded
documents are write-only: never rendered back, kept when left blank, and after a form error the page
says which ones must be typed (or chosen) again.
"""

from __future__ import annotations

from fnmatch import fnmatch
from typing import Any, ClassVar
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadedfile import UploadedFile
from django.utils.html import escape

from config.errors import InvalidRequest
from providers import registry
from providers.base import Provider
from providers.fields import MAX_JSON_LENGTH, MAX_VALUE_LENGTH, Field
from tenants.display import SIZE_HELP, format_size_exact, parse_size
from tenants.models import ApiKey, Organization, ProviderAccount
from tenants.ratelimits import LIMIT_FIELDS as RATE_FIELDS_BY_SCOPE
from tenants.ratelimits import default_rate_limit, format_rate, organization_rate_limit
from tenants.services import provider_account_save

LIMIT_FIELDS = ("storage_quota_bytes", "max_file_size_bytes", "batch_max_size_bytes")
RATE_LIMIT_FIELDS = tuple(RATE_FIELDS_BY_SCOPE.values())


class SizeInput(forms.TextInput):
    """Shows a byte count as "100 GiB" (exactly: saving the form unchanged keeps the same number)."""

    def format_value(self, value: Any) -> str | None:
        if isinstance(value, int):
            return format_size_exact(value)
        return super().format_value(value)


class SizeField(forms.Field):
    """A positive number of bytes, entered as "512 MiB", "100 GiB" or a plain byte count."""

    widget = SizeInput

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", SIZE_HELP)
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> int | None:
        if value in self.empty_values:
            return None
        if isinstance(value, int):
            return value
        try:
            nbytes = parse_size(str(value))
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        if nbytes <= 0:
            raise forms.ValidationError("Must be more than 0 bytes.")
        if nbytes > 2**63 - 1:
            raise forms.ValidationError("Too large.")
        return nbytes


class OrganizationForm(forms.ModelForm):
    storage_quota_bytes = SizeField(label="Storage quota", help_text=f"Live files may use this much. {SIZE_HELP}")
    max_file_size_bytes = SizeField(label="Largest file", help_text=f"Larger uploads are refused. {SIZE_HELP}")
    batch_max_size_bytes = SizeField(label="Largest batch file", help_text=f"For purpose=batch (.jsonl). {SIZE_HELP}")

    class Meta:
        model = Organization
        fields = ("slug", "name", *LIMIT_FIELDS, *RATE_LIMIT_FIELDS)
        labels = {name: f"{scope.capitalize()} per minute, per key" for scope, name in RATE_FIELDS_BY_SCOPE.items()}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for scope, name in RATE_FIELDS_BY_SCOPE.items():
            if name in self.fields:
                self.fields[name].help_text = (
                    f"What each API key of the organisation may make; a key can have a lower limit of its own. "
                    f"Empty: the gateway's default ({format_rate(default_rate_limit(scope))}). 0: no limit."
                )


class ApiKeyForm(forms.ModelForm):
    """A key's name and its own rate limits, which may only lower its organisation's.

    Org admins may set them for their keys (to hold back one client); only operators change an
    organisation's limits.
    """

    class Meta:
        model = ApiKey
        fields = ("organization", "name", *RATE_LIMIT_FIELDS)
        labels = {name: f"{scope.capitalize()} per minute" for scope, name in RATE_FIELDS_BY_SCOPE.items()}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        organization = self._organization()
        for scope, name in RATE_FIELDS_BY_SCOPE.items():
            if name not in self.fields:
                continue
            limit = "" if organization is None else f" ({format_rate(organization_rate_limit(organization, scope))})"
            help_text = (
                f"Empty: the organisation's limit{limit}. Lower values hold this key back; higher ones are refused."
            )
            self.fields[name].help_text = help_text

    def _organization(self) -> Organization | None:
        cleaned = getattr(self, "cleaned_data", {})
        if cleaned.get("organization") is not None:
            return cleaned["organization"]
        return self.instance.organization if self.instance.organization_id is not None else None

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        organization = self._organization()
        if organization is None:
            return cleaned
        for scope, name in RATE_FIELDS_BY_SCOPE.items():
            value = cleaned.get(name)
            ceiling = organization_rate_limit(organization, scope)
            if value is not None and ceiling and value > ceiling:
                limit = format_rate(ceiling)
                self.add_error(name, f"At most the organisation's limit, {limit}: a key's own limit can only lower it.")
        return cleaned


# Provider accounts


def setting_name(kind: str, field: Field) -> str:
    """The form input of one kind's setting."""
    return f"{kind}__{field.name}"


def forget_name(kind: str, field: Field) -> str:
    """The "forget the stored value" checkbox of an optional write-only setting."""
    return f"{kind}__{field.name}__forget"


def is_write_only(field: Field) -> bool:
    # Secrets, and documents uploaded as files (a service-account JSON), never go back to the browser.
    return field.secret or field.type == "json"


def installed_kinds() -> dict[str, type[Provider]]:
    """Every kind an account may use whose class can be imported, by kind."""
    classes = {}
    for kind in registry.kinds():
        try:
            classes[kind] = registry.provider_class(kind)
        except ImproperlyConfigured:
            continue  # its SDK is missing: the kind is still listed, and choosing it says why
    return classes


def kind_label(kind: str) -> str:
    try:
        label = registry.provider_class(kind).label
    except (InvalidRequest, ImproperlyConfigured):
        return kind
    return f"{label} ({kind})" if label and label != kind else kind


def account_inputs(kind: str, field: Field) -> list[str]:
    """The form inputs of one setting, in display order."""
    names = [setting_name(kind, field)]
    if is_write_only(field) and not field.required:
        names.append(forget_name(kind, field))
    return names


def _form_field(field: Field, *, may_edit: bool) -> forms.Field:
    common: dict[str, Any] = {"label": field.label, "required": False, "disabled": not may_edit}
    placeholder = {"placeholder": field.default} if field.default else {}
    if field.type == "json":
        return forms.FileField(widget=forms.FileInput(attrs={"accept": ".json,application/json"}), **common)
    if field.secret:
        attrs = {"autocomplete": "new-password", "spellcheck": "false", "size": 50}
        return forms.CharField(widget=forms.PasswordInput(attrs=attrs), max_length=MAX_VALUE_LENGTH, **common)
    if field.type == "choice":
        empty = f"Default ({field.default})" if field.default else "Not set"
        return forms.ChoiceField(choices=[("", empty), *((choice, choice) for choice in field.choices)], **common)
    if field.type == "url":
        widget: forms.Widget = forms.URLInput(attrs={"size": 60, **placeholder})
    elif field.type == "seconds":
        widget = forms.NumberInput(attrs={"min": "0", "step": "any", **placeholder})
    else:
        widget = forms.TextInput(attrs={"size": 50, "spellcheck": "false", **placeholder})
    return forms.CharField(widget=widget, max_length=MAX_VALUE_LENGTH, **common)


def _help(field: Field, *, may_edit: bool, state: str) -> str:
    parts = ["<strong>Required.</strong>" if field.required else "", escape(field.help)]
    if field.default:
        parts.append(f"Default: {escape(field.default)}.")
    if field.type == "url" and not may_edit:
        parts.append("Only platform operators set this.")
    elif not may_edit:
        parts.append("A location on the gateway's own machine: only platform operators set this.")
    if state:
        parts.append(state)
    return " ".join(part for part in parts if part)


def account_form_class(*, is_operator: bool) -> type[ProviderAccountForm]:
    """The provider-account form for one kind of user: operators (superusers) or org admins.

    Org admins cannot change ``operator_only`` settings (their inputs are disabled) and may only
    point URL settings at ``ORG_ADMIN_UPSTREAM_HOSTS``.
    """
    kinds = installed_kinds()
    attrs: dict[str, Any] = {"is_operator": is_operator, "kind_fields": {k: cls.fields for k, cls in kinds.items()}}
    for kind, cls in kinds.items():
        for field in cls.fields:
            may_edit = is_operator or not field.operator_only
            attrs[setting_name(kind, field)] = _form_field(field, may_edit=may_edit)
            if is_write_only(field) and not field.required:
                attrs[forget_name(kind, field)] = forms.BooleanField(
                    required=False, disabled=not may_edit, label=f"Forget the stored {field.label.lower()}"
                )
    return type("ProviderAccountForm", (ProviderAccountForm,), attrs)


def kind_choices() -> list[tuple[str, str]]:
    return [("", "---------"), *((kind, kind_label(kind)) for kind in registry.kinds())]


class ProviderAccountForm(forms.ModelForm):
    """Name, kind and default flag, plus every installed kind's settings (see ``account_form_class``)."""

    kind = forms.ChoiceField(choices=kind_choices, help_text="Choosing a kind shows its settings below.")
    # Not the model field itself: Django would then reject a second default before provider_account_save
    # gets the chance to move the default over.
    make_default = forms.BooleanField(
        required=False,
        label="Default account",
        help_text="Used when a call names no X-Provider-Account. Making this one the default un-defaults the others.",
    )

    is_operator: ClassVar[bool] = False
    kind_fields: ClassVar[dict[str, tuple[Field, ...]]] = {}

    class Meta:
        model = ProviderAccount
        fields = ("organization", "name", "kind")
        help_texts = {"name": "What clients put in the X-Provider-Account header: letters, digits, - and _."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stored_kind = "" if self.instance.pk is None else self.instance.kind
        self.provider_settings: dict[str, str] = {}
        self.provider_secrets: dict[str, str] = {}
        self.fields["make_default"].initial = self.instance.is_default
        if self.stored_kind and "organization" in self.fields:
            # Files point at the account: it cannot move to another organisation.
            self.fields["organization"].disabled = True
        if self.stored_kind and self.instance.files.exists():
            # Its files live in that provider: another kind could not find them again.
            self.fields["kind"].disabled = True
            self.fields["kind"].help_text = "Fixed: files were uploaded through this account."
        stored = self._stored(self.stored_kind)
        for kind, fields in self.kind_fields.items():
            for field in fields:
                self._describe(kind, field, stored if kind == self.stored_kind else {})

    def _stored(self, kind: str) -> dict[str, str] | None:
        """The stored settings and secrets if the account is of ``kind`` (None: they cannot be decrypted)."""
        if not kind or kind != self.stored_kind:
            return {}
        try:
            return {**self.instance.settings, **self.instance.get_secrets()}
        except ImproperlyConfigured:
            return None

    def _describe(self, kind: str, field: Field, stored: dict[str, str] | None) -> None:
        form_field = self.fields[setting_name(kind, field)]
        state = ""
        if is_write_only(field):
            if stored is None:
                state = "<strong>Stored, but it cannot be decrypted with CREDENTIAL_KEYS</strong>: enter it again."
            elif field.name in stored:
                verb = "choose a new file" if field.type == "json" else "type a new value"
                state = f"<strong>Stored</strong> (hidden). Leave blank to keep it, or {verb} to replace it."
                form_field.widget.attrs["placeholder"] = "stored (hidden)"
            else:
                state = "<strong>Not set.</strong>"
        elif stored:
            form_field.initial = stored.get(field.name, "")
        form_field.help_text = _help(field, may_edit=not form_field.disabled, state=state)

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        kind = cleaned.get("kind")
        if not kind:
            return cleaned
        if kind not in self.kind_fields:
            try:
                registry.provider_class(kind)
            except (InvalidRequest, ImproperlyConfigured) as exc:
                self.add_error("kind", str(exc))
            return cleaned
        stored = self._stored(kind) or {}
        config: dict[str, str] = {}
        for field in self.kind_fields[kind]:
            name = setting_name(kind, field)
            if name in self.errors:
                continue
            value = self._write_only_value(kind, field, stored) if is_write_only(field) else cleaned.get(name) or ""
            if field.type == "url" and value != stored.get(field.name, ""):
                self._check_upstream_host(name, value)
            if value:
                config[field.name] = value
        if any(setting_name(kind, field) in self.errors for field in self.kind_fields[kind]):
            return cleaned
        try:
            self.provider_settings, self.provider_secrets = registry.split_config(kind, config)
        except InvalidRequest as exc:
            target = f"{kind}__{exc.param}"
            self.add_error(target if target in self.fields else None, exc.message)
        return cleaned

    def _write_only_value(self, kind: str, field: Field, stored: dict[str, str]) -> str:
        """What the account will hold: the typed value or uploaded file, else the stored one unless forgotten."""
        if self.cleaned_data.get(forget_name(kind, field)):
            return ""
        value = self.cleaned_data.get(setting_name(kind, field))
        if isinstance(value, UploadedFile):
            return self._read_upload(setting_name(kind, field), value)
        return value or stored.get(field.name, "")

    def _read_upload(self, name: str, upload: UploadedFile) -> str:
        data = upload.read(MAX_JSON_LENGTH + 1)
        if len(data) > MAX_JSON_LENGTH:
            self.add_error(name, f"The file is larger than {MAX_JSON_LENGTH // 1024} KiB: is it the right one?")
            return ""
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            self.add_error(name, "The file is not UTF-8 text: expected a JSON document.")
            return ""

    def _check_upstream_host(self, name: str, value: str) -> None:
        # An org admin pointing an account at an internal address would make the gateway call it from
        # our network position (SSRF): they may only name the real providers' hosts.
        if self.is_operator or not value:
            return
        allowed = settings.ORG_ADMIN_UPSTREAM_HOSTS
        try:
            parts = urlsplit(value)
            host = (parts.hostname or "").lower()
        except ValueError:
            parts, host = None, ""
        if parts is None or parts.scheme != "https" or not any(fnmatch(host, pattern) for pattern in allowed):
            self.add_error(
                name, f"Must be an https URL on one of {', '.join(allowed)}; only platform operators set other hosts."
            )

    def full_clean(self) -> None:
        super().full_clean()
        if self.is_bound and self.errors:
            self._ask_to_retype()

    def _ask_to_retype(self) -> None:
        """Write-only values are not sent back with the errors: say so on each one that was entered."""
        kind = self.data.get("kind") or self.stored_kind
        for field in self.kind_fields.get(kind, ()):
            name = setting_name(kind, field)
            if not is_write_only(field) or self.fields[name].disabled:
                continue
            if field.type == "json" and self.files.get(name):
                self.add_error(name, "Not saved because of the errors on this page: choose the file again.")
            elif field.type != "json" and self.data.get(name):
                self.add_error(name, "Not saved because of the errors on this page: type it again.")

    def save(self, commit: bool = True) -> ProviderAccount:
        account = super().save(commit=False)
        account.settings = self.provider_settings
        account.set_secrets(self.provider_secrets)
        account.is_default = self.cleaned_data.get("make_default", False)
        if commit:
            provider_account_save(account)
        return account
