"""Django admin for tenants: org scoping, limits in MiB/GiB, usage, memberships, accounts and one-time keys."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from rest_framework.test import APIClient

from providers import registry
from tenants.models import ApiKey, Membership, Organization, ProviderAccount
from tenants.services import api_key_authenticate, org_admin_add, provider_account_create
from tests.conftest import Tenant, upload

SECRET = "sk-super-secret-value-1234"
NO_MEMBERSHIP_CHANGES = {"membership_set-TOTAL_FORMS": 0, "membership_set-INITIAL_FORMS": 0}
GiB = 1024**3
MiB = 1024**2


@pytest.fixture
def fake_account_b(tenant_b: Tenant, fake_provider: Any) -> ProviderAccount:
    return provider_account_create(
        organization=tenant_b.org, name="fake-b", kind="fake", config={"api_key": SECRET}, is_default=False
    )


def changelist(client: Client, model: str, **params: str) -> list[Any]:
    response = client.get(f"/admin/tenants/{model}/", params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def account_form(account: ProviderAccount, **values: Any) -> dict[str, Any]:
    """The change form of ``account`` as a browser posts it: every setting of its kind left blank but ``values``."""
    data: dict[str, Any] = {"organization": account.organization_id, "name": account.name, "kind": account.kind}
    if account.is_default:
        data["make_default"] = "on"
    for name, value in values.items():
        data[name if name in ("name", "kind", "make_default") else f"{data['kind']}__{name}"] = value
    return data


def api_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


# Who sees what


def test_superuser_sees_every_organisation(admin_client: Client, tenant_a: Tenant, tenant_b: Tenant) -> None:
    assert {org.slug for org in changelist(admin_client, "organization")} == {"org-a", "org-b"}


def test_org_admin_sees_limits_but_cannot_change_them(org_admin_client: Client, tenant_a: Tenant) -> None:
    org = tenant_a.org
    url = f"/admin/tenants/organization/{org.pk}/change/"
    page = org_admin_client.get(url)
    assert page.status_code == 200
    form = page.context["adminform"].form
    assert set(form.fields) == {"name"}
    assert "100 GiB" in page.content.decode()  # the quota, shown

    response = org_admin_client.post(
        url, {"name": "Renamed", "storage_quota_bytes": "900 TiB", "slug": "other", **NO_MEMBERSHIP_CHANGES}
    )
    assert response.status_code == 302
    org.refresh_from_db()
    assert (org.name, org.slug, org.storage_quota_bytes) == ("Renamed", "org-a", 100 * GiB)


def test_org_admin_cannot_add_or_delete_organisations(org_admin_client: Client, tenant_a: Tenant) -> None:
    assert org_admin_client.get("/admin/tenants/organization/add/").status_code == 403
    response = org_admin_client.post(f"/admin/tenants/organization/{tenant_a.org.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert Organization.objects.filter(pk=tenant_a.org.pk).exists()


def test_staff_user_without_membership_sees_nothing(django_user_model: Any, tenant_a: Tenant) -> None:
    user = django_user_model.objects.create_user(username="bob", is_staff=True)
    client = Client()
    client.force_login(user)
    assert client.get("/admin/tenants/apikey/").status_code == 403
    assert client.get(f"/admin/tenants/apikey/{tenant_a.api_key.pk}/change/").status_code in (302, 403, 404)


# Limits and usage


def organization_form(**overrides: Any) -> dict[str, Any]:
    return {
        "slug": "org-a",
        "name": "A",
        "storage_quota_bytes": "100 GiB",
        "max_file_size_bytes": "512 MiB",
        "batch_max_size_bytes": "50 MiB",
        **NO_MEMBERSHIP_CHANGES,
        **overrides,
    }


def test_limits_are_shown_in_mib_and_gib(admin_client: Client, tenant_a: Tenant) -> None:
    page = admin_client.get(f"/admin/tenants/organization/{tenant_a.org.pk}/change/")
    html = page.content.decode()
    assert 'value="100 GiB"' in html
    assert 'value="512 MiB"' in html
    assert 'value="50 MiB"' in html
    assert "107374182400" not in html


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("200 GiB", 200 * GiB),
        ("1.5 TiB", 3 * 1024**4 // 2),
        ("750MiB", 750 * MiB),
        ("2 gb", 2 * 10**9),
        ("5000", 5000),
    ],
)
def test_superuser_enters_limits_with_units(admin_client: Client, tenant_a: Tenant, typed: str, expected: int) -> None:
    url = f"/admin/tenants/organization/{tenant_a.org.pk}/change/"
    assert admin_client.post(url, organization_form(storage_quota_bytes=typed)).status_code == 302
    tenant_a.org.refresh_from_db()
    assert tenant_a.org.storage_quota_bytes == expected


@pytest.mark.parametrize("typed", ["0", "0 GiB", "-1 GiB", "lots", "10 parsecs", ""])
def test_a_limit_that_is_not_a_positive_size_is_a_form_error(
    admin_client: Client, tenant_a: Tenant, typed: str
) -> None:
    url = f"/admin/tenants/organization/{tenant_a.org.pk}/change/"
    response = admin_client.post(url, organization_form(storage_quota_bytes=typed))
    assert response.status_code == 200
    assert "storage_quota_bytes" in response.context["adminform"].form.errors
    tenant_a.org.refresh_from_db()
    assert tenant_a.org.storage_quota_bytes == 100 * GiB


def test_a_limit_saved_unchanged_keeps_its_exact_bytes(admin_client: Client, tenant_a: Tenant) -> None:
    Organization.objects.filter(pk=tenant_a.org.pk).update(storage_quota_bytes=123_456_789)
    url = f"/admin/tenants/organization/{tenant_a.org.pk}/change/"
    form = admin_client.get(url).context["adminform"].form
    shown = form["storage_quota_bytes"].value()
    assert form.fields["storage_quota_bytes"].widget.format_value(shown) == "123456789 bytes"
    assert admin_client.post(url, organization_form(storage_quota_bytes="123456789 bytes")).status_code == 302
    tenant_a.org.refresh_from_db()
    assert tenant_a.org.storage_quota_bytes == 123_456_789


def test_superuser_adds_an_organisation_with_default_limits(admin_client: Client, settings: Any) -> None:
    page = admin_client.get("/admin/tenants/organization/add/")
    assert page.status_code == 200
    response = admin_client.post(
        "/admin/tenants/organization/add/", organization_form(slug="org-c", name="C", storage_quota_bytes="1 TiB")
    )
    assert response.status_code == 302
    org = Organization.objects.get(slug="org-c")
    assert (org.storage_quota_bytes, org.max_file_size_bytes, org.used_bytes) == (1024**4, 512 * MiB, 0)


def test_usage_reads_as_used_of_quota_with_a_percentage(admin_client: Client, tenant_a: Tenant) -> None:
    Organization.objects.filter(pk=tenant_a.org.pk).update(
        storage_quota_bytes=100 * GiB, used_bytes=int(12.3 * GiB), reserved_bytes=5 * MiB
    )
    html = admin_client.get("/admin/tenants/organization/").content.decode()
    assert "12.3 GiB of 100 GiB (12%)" in html
    assert "width:12.3%" in html
    assert "5 MiB" in html  # reserved
    page = admin_client.get(f"/admin/tenants/organization/{tenant_a.org.pk}/change/").content.decode()
    assert "12.3 GiB of 100 GiB (12%)" in page
    assert "Reserved by uploads in flight" in page


def test_organisation_page_counts_live_files_and_names_the_default_account(
    org_admin_client: Client, tenant_a: Tenant
) -> None:
    for name in ("one.txt", "two.txt"):
        assert upload(tenant_a.client, filename=name).status_code == 200
    deleted = upload(tenant_a.client, filename="gone.txt").json()["id"]
    assert tenant_a.client.delete(f"/v1/files/{deleted}").status_code == 200

    assert {org.slug: org.live_file_count for org in changelist(org_admin_client, "organization")} == {"org-a": 2}
    page = org_admin_client.get(f"/admin/tenants/organization/{tenant_a.org.pk}/change/")
    html = page.content.decode()
    assert re.search(r"Live files:</label>\s*<div class=\"readonly\">2</div>", html)
    account_url = f"/admin/tenants/provideraccount/{tenant_a.account.pk}/change/"
    assert f'<a href="{account_url}">disk</a> (local disk (local))' in html


def test_an_organisation_without_default_account_says_so(admin_client: Client, tenant_a: Tenant) -> None:
    ProviderAccount.objects.filter(organization=tenant_a.org).update(is_default=False)
    html = admin_client.get(f"/admin/tenants/organization/{tenant_a.org.pk}/change/").content.decode()
    assert "None: API calls must name an account in X-Provider-Account." in html


# Memberships


def test_superuser_may_make_a_non_staff_user_an_org_admin(
    admin_client: Client, tenant_a: Tenant, django_user_model: Any
) -> None:
    dave = django_user_model.objects.create_user(username="dave")
    page = admin_client.get("/admin/tenants/membership/add/")
    users = page.context["adminform"].form.fields["user"]
    assert dave in users.queryset
    assert not users.queryset.filter(is_superuser=True).exists()
    assert "Who can be picked" in users.help_text

    response = admin_client.post("/admin/tenants/membership/add/", {"organization": tenant_a.org.pk, "user": dave.pk})
    assert response.status_code == 302
    dave.refresh_from_db()
    assert dave.is_staff
    assert not dave.is_superuser
    assert Membership.objects.filter(user=dave, organization=tenant_a.org).exists()


def test_the_organisation_inline_makes_the_picked_user_staff(
    admin_client: Client, tenant_a: Tenant, django_user_model: Any
) -> None:
    erin = django_user_model.objects.create_user(username="erin")
    response = admin_client.post(
        f"/admin/tenants/organization/{tenant_a.org.pk}/change/",
        organization_form(
            **{
                "membership_set-TOTAL_FORMS": 1,
                "membership_set-INITIAL_FORMS": 0,
                "membership_set-0-user": erin.pk,
                "membership_set-0-organization": tenant_a.org.pk,
            }
        ),
    )
    assert response.status_code == 302
    erin.refresh_from_db()
    assert erin.is_staff
    assert Membership.objects.filter(user=erin, organization=tenant_a.org).exists()


# Provider accounts (the per-kind form in detail: test_provider_account_form.py)


def test_secrets_never_appear_in_the_change_page(
    admin_client: Client, fake_account_b: ProviderAccount, org_b: Organization
) -> None:
    page = admin_client.get(f"/admin/tenants/provideraccount/{fake_account_b.pk}/change/")
    html = page.content.decode()
    assert SECRET not in html
    assert 'type="password" name="fake__api_key"' in html
    assert "<strong>Stored</strong> (hidden)" in html
    listing = admin_client.get("/admin/tenants/provideraccount/").content.decode()
    assert SECRET not in listing
    assert "api_key: stored" in listing


def test_blank_secret_keeps_the_stored_value(admin_client: Client, fake_account_b: ProviderAccount) -> None:
    url = f"/admin/tenants/provideraccount/{fake_account_b.pk}/change/"
    response = admin_client.post(url, account_form(fake_account_b, base_url="http://127.0.0.1:9"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    fake_account_b.refresh_from_db()
    assert fake_account_b.get_secrets() == {"api_key": SECRET}
    assert fake_account_b.settings == {"base_url": "http://127.0.0.1:9"}

    assert admin_client.post(url, account_form(fake_account_b, api_key="sk-new")).status_code == 302
    fake_account_b.refresh_from_db()
    assert fake_account_b.get_secrets() == {"api_key": "sk-new"}
    assert fake_account_b.settings == {}  # the base URL left blank is dropped
    assert "sk-new" not in fake_account_b.secrets_encrypted  # encrypted at rest


def test_an_optional_secret_can_be_forgotten(admin_client: Client, fake_account_b: ProviderAccount) -> None:
    url = f"/admin/tenants/provideraccount/{fake_account_b.pk}/change/"
    assert admin_client.post(url, account_form(fake_account_b, api_key__forget="on")).status_code == 302
    fake_account_b.refresh_from_db()
    assert fake_account_b.get_secrets() == {}


def test_org_admin_adds_an_account_with_encrypted_secrets(
    org_admin_client: Client, tenant_a: Tenant, fake_provider: Any
) -> None:
    response = org_admin_client.post(
        "/admin/tenants/provideraccount/add/",
        {"organization": tenant_a.org.pk, "name": "fake", "kind": "fake", "fake__api_key": "sk-1"},
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
        "/admin/tenants/provideraccount/add/", {"organization": tenant_a.org.pk, "name": "disk", "kind": "local"}
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
    assert messages_of(response) == ["org-a/disk (local): connection OK."]


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


def create_key(client: Client, org: Organization, name: str) -> Any:
    """POST the add form; the response redirects to the page that shows the key."""
    return client.post("/admin/tenants/apikey/add/", {"organization": org.pk, "name": name})


def shown_key(html: str) -> str | None:
    match = re.search(r'id="new-api-key"[^>]*value="(fg_[A-Za-z0-9_-]+)"', html)
    return match.group(1) if match else None


def test_a_new_key_is_shown_once_after_a_redirect_and_works(org_admin_client: Client, tenant_a: Tenant) -> None:
    response = create_key(org_admin_client, tenant_a.org, "ci")
    api_key = ApiKey.objects.get(name="ci")
    assert response.status_code == 302
    assert response["Location"] == f"/admin/tenants/apikey/{api_key.pk}/created/"

    page = org_admin_client.get(response["Location"])
    plaintext = shown_key(page.content.decode())
    assert plaintext is not None
    assert 'id="copy-api-key"' in page.content.decode()
    assert plaintext.startswith(api_key.prefix)
    assert api_key.key_hash != plaintext
    assert api_key_authenticate(plaintext=plaintext).pk == api_key.pk
    assert api_client(plaintext).get("/v1/files").status_code == 200

    again = org_admin_client.get(response["Location"])
    assert shown_key(again.content.decode()) is None
    assert "already shown once" in again.content.decode()
    assert ApiKey.objects.filter(organization=tenant_a.org).count() == 2  # the fixture's and this one

    for url in ("/admin/tenants/apikey/", f"/admin/tenants/apikey/{api_key.pk}/change/"):
        html = org_admin_client.get(url).content.decode()
        assert plaintext not in html
        assert api_key.key_hash not in html
    assert api_key.prefix in org_admin_client.get(f"/admin/tenants/apikey/{api_key.pk}/change/").content.decode()


def test_the_key_waits_for_its_page_encrypted(org_admin_client: Client, tenant_a: Tenant) -> None:
    response = create_key(org_admin_client, tenant_a.org, "ci")
    session = org_admin_client.session
    stored = str(dict(session.items()))
    page = org_admin_client.get(response["Location"]).content.decode()
    plaintext = shown_key(page)
    assert plaintext is not None
    assert plaintext not in stored
    assert "filegate_new_api_keys" in stored


def test_another_users_session_never_shows_the_key(
    org_admin_client: Client, tenant_a: Tenant, django_user_model: Any
) -> None:
    response = create_key(org_admin_client, tenant_a.org, "ci")
    colleague = django_user_model.objects.create_user(username="colleague")
    org_admin_add(organization=tenant_a.org, user=colleague)
    other = Client()
    other.force_login(colleague)
    assert shown_key(other.get(response["Location"]).content.decode()) is None
    assert shown_key(org_admin_client.get(response["Location"]).content.decode()) is not None


def test_the_add_page_offers_no_save_and_add_another(org_admin_client: Client, tenant_a: Tenant) -> None:
    html = org_admin_client.get("/admin/tenants/apikey/add/").content.decode()
    assert 'name="_addanother"' not in html
    assert 'name="_continue"' not in html
    assert "shown once, on the next page" in html


def test_key_change_page_shows_metadata_but_never_the_hash(admin_client: Client, tenant_a: Tenant) -> None:
    page = admin_client.get(f"/admin/tenants/apikey/{tenant_a.api_key.pk}/change/")
    html = page.content.decode()
    assert tenant_a.api_key.prefix in html
    assert tenant_a.api_key.key_hash not in html
    assert tenant_a.key not in html
    assert set(page.context["adminform"].form.fields) == {
        "name",
        "requests_per_minute",
        "uploads_per_minute",
        "downloads_per_minute",
    }
    assert "Key prefix" in html
    assert " UTC" in html  # created, with its zone


def test_revoke_asks_for_confirmation_on_the_keys_page(org_admin_client: Client, tenant_a: Tenant) -> None:
    key_url = f"/admin/tenants/apikey/{tenant_a.api_key.pk}/change/"
    revoke_url = f"/admin/tenants/apikey/{tenant_a.api_key.pk}/revoke/"
    assert f'href="{revoke_url}"' in org_admin_client.get(key_url).content.decode()

    confirmation = org_admin_client.get(revoke_url)
    assert confirmation.status_code == 200
    assert "Yes, revoke it" in confirmation.content.decode()
    assert tenant_a.client.get("/v1/files").status_code == 200  # a GET revokes nothing

    response = org_admin_client.post(revoke_url)
    assert response.status_code == 302
    assert response["Location"] == key_url
    assert api_client(tenant_a.key).get("/v1/files").status_code == 401  # at once: the cache forgot it
    tenant_a.api_key.refresh_from_db()
    assert tenant_a.api_key.is_revoked
    page = org_admin_client.get(key_url).content.decode()
    assert "Revoked 20" in page
    assert f'href="{revoke_url}"' not in page


def test_keys_filter_reads_active_or_revoked(org_admin_client: Client, tenant_a: Tenant) -> None:
    create_key(org_admin_client, tenant_a.org, "second")
    org_admin_client.post(f"/admin/tenants/apikey/{tenant_a.api_key.pk}/revoke/")
    html = org_admin_client.get("/admin/tenants/apikey/").content.decode()
    assert "?status=active" in html
    assert "?status=revoked" in html
    assert "Empty" not in html
    assert [key.name for key in changelist(org_admin_client, "apikey", status="active")] == ["second"]
    assert [key.name for key in changelist(org_admin_client, "apikey", status="revoked")] == ["org-a key"]


def test_deleting_a_key_makes_the_api_refuse_it_at_once(admin_client: Client, tenant_a: Tenant) -> None:
    assert tenant_a.client.get("/v1/files").status_code == 200  # now cached
    response = admin_client.post(f"/admin/tenants/apikey/{tenant_a.api_key.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not ApiKey.objects.filter(pk=tenant_a.api_key.pk).exists()
    assert api_client(tenant_a.key).get("/v1/files").status_code == 401


def test_deleting_keys_from_the_list_makes_the_api_refuse_them_at_once(
    admin_client: Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    for tenant in (tenant_a, tenant_b):
        assert tenant.client.get("/v1/files").status_code == 200
    response = admin_client.post(
        "/admin/tenants/apikey/",
        {"action": "delete_selected", "post": "yes", "_selected_action": [tenant_a.api_key.pk, tenant_b.api_key.pk]},
    )
    assert response.status_code == 302
    for tenant in (tenant_a, tenant_b):
        assert api_client(tenant.key).get("/v1/files").status_code == 401
