"""Rate limits in Django admin: operators set an organisation's; org admins see them, and may only
lower them for their own keys."""

from __future__ import annotations

from typing import Any

from django.test import Client

from tenants.models import ApiKey, Organization
from tests.conftest import Tenant, make_tenant, upload

NO_MEMBERSHIP_CHANGES = {"membership_set-TOTAL_FORMS": 0, "membership_set-INITIAL_FORMS": 0}
NO_LIMITS = {"requests_per_minute": "", "uploads_per_minute": "", "downloads_per_minute": ""}


def org_form(org: Organization, **values: Any) -> dict[str, Any]:
    return {
        "slug": org.slug,
        "name": org.name,
        "storage_quota_bytes": "100 GiB",
        "max_file_size_bytes": "512 MiB",
        "batch_max_size_bytes": "50 MiB",
        **NO_LIMITS,
        **NO_MEMBERSHIP_CHANGES,
        **values,
    }


def key_form(api_key: ApiKey, **values: Any) -> dict[str, Any]:
    return {"name": api_key.name, **NO_LIMITS, **values}


def rate_limits_of(model: type[Organization] | type[ApiKey], pk: int) -> tuple[int | None, ...]:
    obj = model.objects.get(pk=pk)
    return (obj.requests_per_minute, obj.uploads_per_minute, obj.downloads_per_minute)


def errors_of(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 200  # the form again, not a redirect
    return dict(response.context["adminform"].form.errors)


def test_operators_set_an_organisations_limits(admin_client: Client, tenant_a: Tenant) -> None:
    url = f"/admin/tenants/organization/{tenant_a.org.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert "Empty: the gateway's default (6000 per minute). 0: no limit." in page
    response = admin_client.post(url, org_form(tenant_a.org, requests_per_minute="600", uploads_per_minute="0"))
    assert response.status_code == 302
    assert rate_limits_of(Organization, tenant_a.org.pk) == (600, 0, None)


def test_an_organisations_limit_cannot_be_negative(admin_client: Client, tenant_a: Tenant) -> None:
    url = f"/admin/tenants/organization/{tenant_a.org.pk}/change/"
    errors = errors_of(admin_client.post(url, org_form(tenant_a.org, uploads_per_minute="-1")))
    assert list(errors) == ["uploads_per_minute"]
    assert rate_limits_of(Organization, tenant_a.org.pk) == (None, None, None)


def test_org_admins_see_their_organisations_limits_but_cannot_change_them(
    org_admin_client: Client, tenant_a: Tenant
) -> None:
    Organization.objects.filter(pk=tenant_a.org.pk).update(uploads_per_minute=0)
    url = f"/admin/tenants/organization/{tenant_a.org.pk}/change/"
    page = org_admin_client.get(url)
    assert set(page.context["adminform"].form.fields) == {"name"}
    assert "requests: 6000 per minute; uploads: no limit; downloads: 1200 per minute" in page.content.decode()

    response = org_admin_client.post(
        url, {"name": "A", "requests_per_minute": "99999", "uploads_per_minute": "5", **NO_MEMBERSHIP_CHANGES}
    )
    assert response.status_code == 302
    assert rate_limits_of(Organization, tenant_a.org.pk) == (None, 0, None)


def test_org_admins_lower_their_own_keys_limits(
    org_admin_client: Client,
    tenant_a: Tenant,
    fresh_minute: None,
) -> None:
    Organization.objects.filter(pk=tenant_a.org.pk).update(uploads_per_minute=10)
    url = f"/admin/tenants/apikey/{tenant_a.api_key.pk}/change/"
    assert "Empty: the organisation's limit (10 per minute)." in org_admin_client.get(url).content.decode()

    response = org_admin_client.post(url, key_form(tenant_a.api_key, uploads_per_minute="1", requests_per_minute="50"))
    assert response.status_code == 302
    assert rate_limits_of(ApiKey, tenant_a.api_key.pk) == (50, 1, None)
    page = org_admin_client.get(url).content.decode()
    assert "requests: 50 per minute; uploads: 1 per minute; downloads: 1200 per minute" in page
    # The key's cache entry is at most API_KEY_CACHE_SECONDS old; this test's has not been made yet.
    assert [upload(tenant_a.client).status_code for _ in range(2)] == [200, 429]


def test_nobody_sets_a_keys_limit_above_its_organisations(
    org_admin_client: Client, admin_client: Client, tenant_a: Tenant
) -> None:
    Organization.objects.filter(pk=tenant_a.org.pk).update(uploads_per_minute=10)
    url = f"/admin/tenants/apikey/{tenant_a.api_key.pk}/change/"
    for client in (org_admin_client, admin_client):
        errors = errors_of(client.post(url, key_form(tenant_a.api_key, uploads_per_minute="11")))
        assert errors == {
            "uploads_per_minute": [
                "At most the organisation's limit, 10 per minute: a key's own limit can only lower it."
            ]
        }
        # Above the settings' default, when the organisation has none of its own.
        errors = errors_of(client.post(url, key_form(tenant_a.api_key, requests_per_minute="6001")))
        assert list(errors) == ["requests_per_minute"]
    assert rate_limits_of(ApiKey, tenant_a.api_key.pk) == (None, None, None)


def test_a_key_has_a_limit_or_none_never_zero(org_admin_client: Client, tenant_a: Tenant) -> None:
    url = f"/admin/tenants/apikey/{tenant_a.api_key.pk}/change/"
    errors = errors_of(org_admin_client.post(url, key_form(tenant_a.api_key, downloads_per_minute="0")))
    assert list(errors) == ["downloads_per_minute"]


def test_under_an_organisation_without_limits_a_keys_own_limit_is_free(
    org_admin_client: Client, tenant_a: Tenant
) -> None:
    Organization.objects.filter(pk=tenant_a.org.pk).update(downloads_per_minute=0)
    url = f"/admin/tenants/apikey/{tenant_a.api_key.pk}/change/"
    response = org_admin_client.post(url, key_form(tenant_a.api_key, downloads_per_minute="100000"))
    assert response.status_code == 302
    assert rate_limits_of(ApiKey, tenant_a.api_key.pk) == (None, None, 100000)


def test_a_new_key_gets_its_limits_from_the_add_form(org_admin_client: Client, tenant_a: Tenant) -> None:
    response = org_admin_client.post(
        "/admin/tenants/apikey/add/",
        {"organization": tenant_a.org.pk, "name": "ci", **NO_LIMITS, "uploads_per_minute": "3"},
    )
    assert response.status_code == 302
    assert rate_limits_of(ApiKey, ApiKey.objects.get(name="ci").pk) == (None, 3, None)


def test_the_add_form_checks_the_limits_against_the_chosen_organisation(admin_client: Client, tenant_a: Tenant) -> None:
    generous = make_tenant("generous")
    Organization.objects.filter(pk=generous.org.pk).update(uploads_per_minute=5000)
    post = {"name": "ci", **NO_LIMITS, "uploads_per_minute": "3000"}
    assert errors_of(admin_client.post("/admin/tenants/apikey/add/", {**post, "organization": tenant_a.org.pk}))
    response = admin_client.post("/admin/tenants/apikey/add/", {**post, "organization": generous.org.pk})
    assert response.status_code == 302
    assert ApiKey.objects.get(name="ci").organization_id == generous.org.pk


def test_org_admins_cannot_set_another_organisations_keys_limits(org_admin_client: Client, tenant_b: Tenant) -> None:
    url = f"/admin/tenants/apikey/{tenant_b.api_key.pk}/change/"
    response = org_admin_client.post(url, key_form(tenant_b.api_key, uploads_per_minute="1"))
    assert response.status_code in (302, 403, 404)
    assert rate_limits_of(ApiKey, tenant_b.api_key.pk) == (None, None, None)
