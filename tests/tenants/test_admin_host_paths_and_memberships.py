"""Operators alone set server paths, internal hosts and memberships; an account with files keeps its kind."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tenants.models import Membership, ProviderAccount
from tenants.services import provider_account_create
from tests.conftest import Tenant, upload


def local_account_form(account: ProviderAccount, path: str = "") -> dict[str, Any]:
    return {
        "organization": account.organization_id,
        "name": account.name,
        "kind": "local",
        "local__path": path,
        "make_default": "on",
    }


def test_org_admin_cannot_point_a_local_account_at_a_folder_of_the_server(
    org_admin_client: Client, tenant_a: Tenant, tmp_path: Any
) -> None:
    account = tenant_a.account
    page = org_admin_client.get(f"/admin/tenants/provideraccount/{account.pk}/change/")
    assert page.context["adminform"].form.fields["local__path"].disabled
    response = org_admin_client.post(
        f"/admin/tenants/provideraccount/{account.pk}/change/",
        local_account_form(account, str(tmp_path / "anywhere")),
    )
    assert response.status_code == 302  # a disabled input's posted value is ignored
    account.refresh_from_db()
    assert account.settings == {}


def test_org_admin_cannot_add_a_local_account_with_a_path(org_admin_client: Client, tenant_a: Tenant) -> None:
    response = org_admin_client.post(
        "/admin/tenants/provideraccount/add/",
        {"organization": tenant_a.org.pk, "name": "elsewhere", "kind": "local", "local__path": "/"},
    )
    assert response.status_code == 302
    assert ProviderAccount.objects.get(name="elsewhere").settings == {}


def test_org_admin_may_still_edit_an_account_whose_path_an_operator_set(
    org_admin_client: Client, tenant_a: Tenant, tmp_path: Any
) -> None:
    account = tenant_a.account
    ProviderAccount.objects.filter(pk=account.pk).update(settings={"path": str(tmp_path / "ops")})
    account.refresh_from_db()
    response = org_admin_client.post(
        f"/admin/tenants/provideraccount/{account.pk}/change/",
        {**local_account_form(account, "/elsewhere"), "name": "renamed"},
    )
    assert response.status_code == 302
    account.refresh_from_db()
    assert (account.name, account.settings) == ("renamed", {"path": str(tmp_path / "ops")})


def test_superuser_may_set_a_local_path(admin_client: Client, tenant_a: Tenant, tmp_path: Any) -> None:
    account = tenant_a.account
    response = admin_client.post(
        f"/admin/tenants/provideraccount/{account.pk}/change/", local_account_form(account, str(tmp_path / "ops"))
    )
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.settings == {"path": str(tmp_path / "ops")}


def test_org_admin_cannot_add_a_member_through_the_organisation_inline(
    org_admin_client: Client, tenant_a: Tenant, django_user_model: Any
) -> None:
    mallory = django_user_model.objects.create_user(username="mallory", is_staff=True)
    response = org_admin_client.post(
        f"/admin/tenants/organization/{tenant_a.org.pk}/change/",
        {
            "name": "A",
            "membership_set-TOTAL_FORMS": 1,
            "membership_set-INITIAL_FORMS": 0,
            "membership_set-0-user": mallory.pk,
            "membership_set-0-organization": tenant_a.org.pk,
        },
    )
    assert response.status_code in (302, 200, 403)
    assert not Membership.objects.filter(user=mallory).exists()


def openai_account_form(org_id: int, base_url: str) -> dict[str, Any]:
    return {
        "organization": org_id,
        "name": "oai",
        "kind": "openai",
        "openai__base_url": base_url,
        "openai__api_key": "sk-test",
    }


@pytest.mark.parametrize(
    "base_url",
    [
        "http://169.254.169.254/latest",
        "https://10.0.0.5/v1",
        "http://api.openai.com/v1",
        "https://evil.example/v1",
        "https://api.openai.com.evil.example/v1",
        "https://[::1/v1",
    ],
)
def test_org_admin_cannot_point_an_account_at_an_arbitrary_host(
    org_admin_client: Client, tenant_a: Tenant, base_url: str
) -> None:
    response = org_admin_client.post(
        "/admin/tenants/provideraccount/add/", openai_account_form(tenant_a.org.pk, base_url)
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "only platform operators" in str(errors["openai__base_url"])
    assert not ProviderAccount.objects.filter(name="oai").exists()


def test_org_admin_may_name_a_real_provider_host(org_admin_client: Client, tenant_a: Tenant) -> None:
    form = {
        "organization": tenant_a.org.pk,
        "name": "oai",
        "kind": "azure_openai",
        "azure_openai__base_url": "https://my-resource.openai.azure.com",
        "azure_openai__api_key": "k-test",
    }
    response = org_admin_client.post("/admin/tenants/provideraccount/add/", form)
    assert response.status_code == 302
    assert ProviderAccount.objects.get(name="oai").settings == {"base_url": "https://my-resource.openai.azure.com"}


@pytest.mark.parametrize(
    ("kind", "base_url"), [("anthropic", "https://api.anthropic.com"), ("groq", "https://api.groq.com/openai/v1")]
)
def test_org_admin_may_name_anthropics_and_groqs_hosts(
    org_admin_client: Client, tenant_a: Tenant, kind: str, base_url: str
) -> None:
    form = {"organization": tenant_a.org.pk, "name": kind, "kind": kind, f"{kind}__base_url": base_url}
    form[f"{kind}__api_key"] = "k-test"
    response = org_admin_client.post("/admin/tenants/provideraccount/add/", form)
    assert response.status_code == 302
    assert ProviderAccount.objects.get(name=kind).settings == {"base_url": base_url}
    evil = {**form, "name": "evil", f"{kind}__base_url": base_url.replace("api.", "api.evil.", 1)}
    assert org_admin_client.post("/admin/tenants/provideraccount/add/", evil).status_code == 200
    assert not ProviderAccount.objects.filter(name="evil").exists()


def test_org_admin_may_keep_a_host_an_operator_set(org_admin_client: Client, tenant_a: Tenant) -> None:
    account = provider_account_create(
        organization=tenant_a.org,
        name="oai",
        kind="openai",
        config={"api_key": "sk-1", "base_url": "http://10.0.0.5:8080/v1"},
    )
    form = {**openai_account_form(tenant_a.org.pk, "http://10.0.0.5:8080/v1"), "name": "renamed", "openai__api_key": ""}
    response = org_admin_client.post(f"/admin/tenants/provideraccount/{account.pk}/change/", form)
    assert response.status_code == 302
    account.refresh_from_db()
    assert (account.name, account.settings["base_url"]) == ("renamed", "http://10.0.0.5:8080/v1")


def test_superuser_may_point_an_account_at_any_host(admin_client: Client, tenant_a: Tenant) -> None:
    response = admin_client.post(
        "/admin/tenants/provideraccount/add/", openai_account_form(tenant_a.org.pk, "http://127.0.0.1:9/v1")
    )
    assert response.status_code == 302
    assert ProviderAccount.objects.get(name="oai").settings == {"base_url": "http://127.0.0.1:9/v1"}


def test_the_kind_of_an_account_with_files_is_fixed(admin_client: Client, tenant_a: Tenant) -> None:
    assert upload(tenant_a.client, b"data").status_code == 200
    account = tenant_a.account
    response = admin_client.post(
        f"/admin/tenants/provideraccount/{account.pk}/change/",
        {**local_account_form(account), "kind": "openai", "openai__api_key": "sk-x"},
    )
    account.refresh_from_db()
    assert account.kind == "local"
    assert response.status_code in (200, 302)
