"""Django admin for tenants: org scoping, write-only secrets, one-time keys, usage and actions."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from rest_framework.test import APIClient

from providers import registry
from tenants.models import ApiKey, Membership, Organization, ProviderAccount
from tenants.services import provider_account_create
from tests.conftest import Tenant, upload

SECRET = "sk-super-secret-value-1234"
NO_MEMBERSHIP_CHANGES = {"membership_set-TOTAL_FORMS": 0, "membership_set-INITIAL_FORMS": 0}


@pytest.fixture
def org_admin(django_user_model: Any, tenant_a: Tenant, tenant_b: Tenant) -> Any:
    user = django_user_model.objects.create_user(username="alice", is_staff=True)
    Membership.objects.create(user=user, organization=tenant_a.org)
    other = django_user_model.objects.create_user(username="carol", is_staff=True)
    Membership.objects.create(user=other, organization=tenant_b.org)
    return user


@pytest.fixture
def org_admin_client(org_admin: Any) -> Client:
    client = Client()
    client.force_login(org_admin)
    return client


@pytest.fixture
def fake_account_b(tenant_b: Tenant, fake_provider: Any) -> ProviderAccount:
    return provider_account_create(
        organization=tenant_b.org, name="fake-b", kind="fake", config={"api_key": SECRET}, is_default=False
    )


def changelist(client: Client, model: str, **params: str) -> list[Any]:
    response = client.get(f"/admin/tenants/{model}/", params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def account_form(account: ProviderAccount, **overrides: Any) -> dict[str, Any]:
    data = {
        "organization": account.organization_id,
        "name": account.name,
        "kind": account.kind,
        "settings": json.dumps(account.settings),
        "secrets": "",
    }
    if account.is_default:
        data["make_default"] = "on"
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def api_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


# Who sees what


def test_superuser_sees_every_organisation(admin_client: Client, tenant_a: Tenant, tenant_b: Tenant) -> None:
    assert {org.slug for org in changelist(admin_client, "organization")} == {"org-a", "org-b"}


@pytest.mark.parametrize("model", ["organization", "apikey", "provideraccount", "membership"])
def test_org_admin_lists_only_their_organisations_objects(
    org_admin_client: Client, tenant_a: Tenant, model: str
) -> None:
    rows = changelist(org_admin_client, model)
    assert rows
    assert {row.pk if model == "organization" else row.organization_id for row in rows} == {tenant_a.org.pk}


@pytest.mark.parametrize(
    ("model", "target"),
    [
        ("organization", lambda t: t.org),
        ("apikey", lambda t: t.api_key),
        ("provideraccount", lambda t: t.account),
    ],
)
def test_org_admin_cannot_open_another_organisations_object(
    org_admin_client: Client, tenant_b: Tenant, model: str, target: Any
) -> None:
    obj = target(tenant_b)
    for suffix in ("change", "delete", "history"):
        response = org_admin_client.get(f"/admin/tenants/{model}/{obj.pk}/{suffix}/")
        assert response.status_code in (302, 403, 404), suffix
        assert str(obj) not in response.content.decode()


def test_org_admin_cannot_edit_another_organisations_account_by_post(
    org_admin_client: Client, tenant_b: Tenant
) -> None:
    account = tenant_b.account
    response = org_admin_client.post(
        f"/admin/tenants/provideraccount/{account.pk}/change/", account_form(account, name="hijacked")
    )
    assert response.status_code in (302, 403, 404)
    account.refresh_from_db()
    assert account.name == "disk"


def test_org_admin_cannot_pick_another_organisation(
    org_admin_client: Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    page = org_admin_client.get("/admin/tenants/provideraccount/add/")
    choices = list(page.context["adminform"].form.fields["organization"].queryset)
    assert choices == [tenant_a.org]

    response = org_admin_client.post(
        "/admin/tenants/provideraccount/add/",
        {"organization": tenant_b.org.pk, "name": "sneaky", "kind": "local", "settings": "{}"},
    )
    assert response.status_code == 200
    assert "organization" in response.context["adminform"].form.errors
    assert not ProviderAccount.objects.filter(name="sneaky").exists()

    response = org_admin_client.post("/admin/tenants/apikey/add/", {"organization": tenant_b.org.pk, "name": "sneaky"})
    assert response.status_code == 200
    assert not ApiKey.objects.filter(name="sneaky").exists()


def test_org_admin_cannot_revoke_another_organisations_key(
    org_admin_client: Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    org_admin_client.post(
        "/admin/tenants/apikey/",
        {"action": "revoke", "_selected_action": [tenant_b.api_key.pk]},
    )
    assert tenant_b.client.get("/v1/files").status_code == 200


def test_org_admin_sees_limits_but_cannot_change_them(org_admin_client: Client, tenant_a: Tenant) -> None:
    org = tenant_a.org
    url = f"/admin/tenants/organization/{org.pk}/change/"
    page = org_admin_client.get(url)
    assert page.status_code == 200
    form = page.context["adminform"].form
    assert "storage_quota_bytes" not in form.fields
    assert "name" in form.fields

    response = org_admin_client.post(
        url, {"name": "Renamed", "storage_quota_bytes": 10**15, "slug": "other", **NO_MEMBERSHIP_CHANGES}
    )
    assert response.status_code == 302
    org.refresh_from_db()
    assert org.name == "Renamed"
    assert org.slug == "org-a"
    assert org.storage_quota_bytes == 100 * 1024**3


def test_org_admin_cannot_add_or_delete_organisations(org_admin_client: Client, tenant_a: Tenant) -> None:
    assert org_admin_client.get("/admin/tenants/organization/add/").status_code == 403
    response = org_admin_client.post(f"/admin/tenants/organization/{tenant_a.org.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert Organization.objects.filter(pk=tenant_a.org.pk).exists()


def test_superuser_changes_limits_and_rejects_non_positive_ones(admin_client: Client, tenant_a: Tenant) -> None:
    url = f"/admin/tenants/organization/{tenant_a.org.pk}/change/"
    form = {
        "slug": "org-a",
        "name": "A",
        "storage_quota_bytes": 0,
        "max_file_size_bytes": 10,
        "batch_max_size_bytes": 10,
        **NO_MEMBERSHIP_CHANGES,
    }
    assert admin_client.post(url, form).status_code == 200
    tenant_a.org.refresh_from_db()
    assert tenant_a.org.storage_quota_bytes == 100 * 1024**3

    assert admin_client.post(url, {**form, "storage_quota_bytes": 5000}).status_code == 302
    tenant_a.org.refresh_from_db()
    assert tenant_a.org.storage_quota_bytes == 5000


def test_superuser_adds_an_organisation_with_default_limits(admin_client: Client, settings: Any) -> None:
    assert admin_client.get("/admin/tenants/organization/add/").status_code == 200
    response = admin_client.post(
        "/admin/tenants/organization/add/",
        {
            "slug": "org-c",
            "name": "C",
            "storage_quota_bytes": settings.DEFAULT_STORAGE_QUOTA_BYTES,
            "max_file_size_bytes": settings.DEFAULT_MAX_FILE_SIZE_BYTES,
            "batch_max_size_bytes": settings.DEFAULT_BATCH_MAX_SIZE_BYTES,
            **NO_MEMBERSHIP_CHANGES,
        },
    )
    assert response.status_code == 302
    assert Organization.objects.get(slug="org-c").used_bytes == 0


def test_staff_user_without_membership_sees_nothing(django_user_model: Any, tenant_a: Tenant) -> None:
    user = django_user_model.objects.create_user(username="bob", is_staff=True)
    client = Client()
    client.force_login(user)
    assert client.get("/admin/tenants/apikey/").status_code == 403
    assert client.get(f"/admin/tenants/apikey/{tenant_a.api_key.pk}/change/").status_code in (302, 403, 404)


# Usage


def test_usage_bar_renders_the_percentage(admin_client: Client, tenant_a: Tenant) -> None:
    Organization.objects.filter(pk=tenant_a.org.pk).update(storage_quota_bytes=4000, used_bytes=1000, reserved_bytes=7)
    html = admin_client.get("/admin/tenants/organization/").content.decode()
    assert "25.0%" in html
    assert "width:25.0%" in html
    assert "1000\xa0bytes" in html or "1000 bytes" in html  # used, human readable
    assert "7\xa0bytes" in html or "7 bytes" in html  # reserved


def test_organisation_list_counts_live_files(admin_client: Client, tenant_a: Tenant) -> None:
    for name in ("one.txt", "two.txt"):
        assert upload(tenant_a.client, filename=name).status_code == 200
    deleted = upload(tenant_a.client, filename="gone.txt").json()["id"]
    assert tenant_a.client.delete(f"/v1/files/{deleted}").status_code == 200

    rows = changelist(admin_client, "organization")
    counts = {org.slug: org.live_file_count for org in rows}
    assert counts["org-a"] == 2


# Provider accounts


def test_secrets_never_appear_in_the_change_page(
    admin_client: Client, fake_account_b: ProviderAccount, org_b: Organization
) -> None:
    html = admin_client.get(f"/admin/tenants/provideraccount/{fake_account_b.pk}/change/").content.decode()
    assert SECRET not in html
    assert "api_key: set" in html
    assert SECRET not in admin_client.get("/admin/tenants/provideraccount/").content.decode()


def test_secrets_are_not_echoed_back_when_the_form_has_errors(
    admin_client: Client, fake_account_b: ProviderAccount
) -> None:
    response = admin_client.post(
        f"/admin/tenants/provideraccount/{fake_account_b.pk}/change/",
        account_form(fake_account_b, secrets="api_key=sk-typed-just-now\nbogus=1"),
    )
    assert response.status_code == 200
    assert "sk-typed-just-now" not in response.content.decode()


def test_blank_secret_keeps_the_stored_value(admin_client: Client, fake_account_b: ProviderAccount) -> None:
    url = f"/admin/tenants/provideraccount/{fake_account_b.pk}/change/"
    response = admin_client.post(url, account_form(fake_account_b, settings='{"base_url": "http://127.0.0.1:9"}'))
    assert response.status_code == 302
    fake_account_b.refresh_from_db()
    assert fake_account_b.get_secrets() == {"api_key": SECRET}
    assert fake_account_b.settings == {"base_url": "http://127.0.0.1:9"}

    assert admin_client.post(url, account_form(fake_account_b, secrets="api_key=")).status_code == 302
    fake_account_b.refresh_from_db()
    assert fake_account_b.get_secrets() == {"api_key": SECRET}

    assert admin_client.post(url, account_form(fake_account_b, secrets="api_key=sk-new")).status_code == 302
    fake_account_b.refresh_from_db()
    assert fake_account_b.get_secrets() == {"api_key": "sk-new"}
    assert "sk-new" not in fake_account_b.secrets_encrypted  # encrypted at rest


def test_clear_secrets_forgets_them(admin_client: Client, fake_account_b: ProviderAccount) -> None:
    url = f"/admin/tenants/provideraccount/{fake_account_b.pk}/change/"
    assert admin_client.post(url, account_form(fake_account_b, clear_secrets="on")).status_code == 302
    fake_account_b.refresh_from_db()
    assert fake_account_b.get_secrets() == {}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"secrets": "bogus=1"}, "secrets"),
        ({"secrets": "no equals sign"}, "secrets"),
        ({"settings": '{"bogus": 1}'}, "settings"),
        ({"settings": f'{{"api_key": "{SECRET}"}}'}, "settings"),  # a secret would be stored in plain text
        ({"settings": "[1, 2]"}, "settings"),
        ({"kind": "nonexistent"}, "kind"),
    ],
)
def test_invalid_config_is_a_form_error(
    admin_client: Client, fake_account_b: ProviderAccount, overrides: dict[str, str], field: str
) -> None:
    response = admin_client.post(
        f"/admin/tenants/provideraccount/{fake_account_b.pk}/change/", account_form(fake_account_b, **overrides)
    )
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    fake_account_b.refresh_from_db()
    assert fake_account_b.settings == {}
    assert fake_account_b.get_secrets() == {"api_key": SECRET}


def test_org_admin_adds_an_account_with_encrypted_secrets(
    org_admin_client: Client, tenant_a: Tenant, fake_provider: Any
) -> None:
    response = org_admin_client.post(
        "/admin/tenants/provideraccount/add/",
        {"organization": tenant_a.org.pk, "name": "fake", "kind": "fake", "settings": "{}", "secrets": "api_key=sk-1"},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    account = ProviderAccount.objects.get(organization=tenant_a.org, name="fake")
    assert account.get_secrets() == {"api_key": "sk-1"}
    assert account.settings == {}
    assert not account.is_default  # the org already has a default


def test_making_an_account_default_undefaults_the_others(admin_client: Client, tenant_a: Tenant) -> None:
    other = provider_account_create(organization=tenant_a.org, name="disk2", kind="local", config={})
    assert not other.is_default
    response = admin_client.post(
        f"/admin/tenants/provideraccount/{other.pk}/change/", account_form(other, make_default="on")
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    defaults = ProviderAccount.objects.filter(organization=tenant_a.org, is_default=True)
    assert list(defaults.values_list("name", flat=True)) == ["disk2"]


def test_duplicate_account_name_is_a_form_error(admin_client: Client, tenant_a: Tenant) -> None:
    response = admin_client.post(
        "/admin/tenants/provideraccount/add/",
        {"organization": tenant_a.org.pk, "name": "disk", "kind": "local", "settings": "{}"},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert ProviderAccount.objects.filter(organization=tenant_a.org).count() == 1


def test_test_connection_reports_success_for_a_local_account(admin_client: Client, tenant_a: Tenant) -> None:
    response = admin_client.post(
        "/admin/tenants/provideraccount/",
        {"action": "test_connection", "_selected_action": [tenant_a.account.pk]},
        follow=True,
    )
    texts = [str(message) for message in get_messages(response.wsgi_request)]
    assert texts == ["org-a/disk (local): connection OK."]


def test_test_connection_reports_the_mapped_error(
    admin_client: Client, fake_account_b: ProviderAccount, fake_provider: Any
) -> None:
    fake_provider.fail_on["check"] = "unavailable"
    response = admin_client.post(
        "/admin/tenants/provideraccount/",
        {"action": "test_connection", "_selected_action": [fake_account_b.pk]},
        follow=True,
    )
    messages = list(get_messages(response.wsgi_request))
    assert [message.level_tag for message in messages] == ["error"]
    assert "could not be reached" in str(messages[0])
    assert SECRET not in str(messages[0])


def test_test_connection_builds_the_provider_from_the_registry(
    admin_client: Client, tenant_a: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, str]] = []
    real = registry.get_provider

    def spy(kind: str, config: dict[str, Any], *, cache_key: str = "") -> Any:
        seen.append((kind, cache_key))
        return real(kind, config, cache_key=cache_key)

    monkeypatch.setattr(registry, "get_provider", spy)
    admin_client.post(
        "/admin/tenants/provideraccount/", {"action": "test_connection", "_selected_action": [tenant_a.account.pk]}
    )
    assert seen == [("local", str(tenant_a.account.pk))]


# API keys


def test_new_key_is_shown_once_and_works(org_admin_client: Client, tenant_a: Tenant) -> None:
    response = org_admin_client.post("/admin/tenants/apikey/add/", {"organization": tenant_a.org.pk, "name": "ci"})
    assert response.status_code == 200
    html = response.content.decode()
    match = re.search(r'value="(fg_[A-Za-z0-9_-]+)"', html)
    assert match, html
    plaintext = match.group(1)
    api_key = ApiKey.objects.get(name="ci")
    assert api_key.organization == tenant_a.org
    assert plaintext.startswith(api_key.prefix)
    assert api_key.key_hash != plaintext

    assert api_client(plaintext).get("/v1/files").status_code == 200

    for url in ("/admin/tenants/apikey/", f"/admin/tenants/apikey/{api_key.pk}/change/"):
        page = org_admin_client.get(url).content.decode()
        assert plaintext not in page
        assert api_key.key_hash not in page
    assert api_key.prefix in org_admin_client.get(f"/admin/tenants/apikey/{api_key.pk}/change/").content.decode()


def test_key_change_page_shows_metadata_but_never_the_hash(admin_client: Client, tenant_a: Tenant) -> None:
    page = admin_client.get(f"/admin/tenants/apikey/{tenant_a.api_key.pk}/change/")
    html = page.content.decode()
    assert tenant_a.api_key.prefix in html
    assert tenant_a.api_key.key_hash not in html
    assert tenant_a.key not in html
    assert set(page.context["adminform"].form.fields) == {"name"}


def test_revoke_action_makes_the_api_refuse_the_key(org_admin_client: Client, tenant_a: Tenant) -> None:
    assert tenant_a.client.get("/v1/files").status_code == 200
    response = org_admin_client.post(
        "/admin/tenants/apikey/", {"action": "revoke", "_selected_action": [tenant_a.api_key.pk]}
    )
    assert response.status_code == 302
    assert api_client(tenant_a.key).get("/v1/files").status_code == 401
    tenant_a.api_key.refresh_from_db()
    assert tenant_a.api_key.is_revoked
