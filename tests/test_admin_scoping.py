"""An org admin reaches their own organisation's objects only, in every model admin, by any URL.

alice administers org-a. For each model admin, org-b's object must stay out of her lists, pages,
forms and actions; and nothing she posts can raise her own limits or make anyone staff.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django import forms
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import models
from django.forms.models import model_to_dict
from django.test import Client

from files_api.models import AuditEvent, File
from tenants.models import ApiKey, Membership, Organization, ProviderAccount
from tenants.services import provider_account_create
from tests.conftest import Tenant, upload


@dataclass(frozen=True)
class Scoped:
    model: type[models.Model]
    pick: Callable[[Tenant], models.Model]  # the tenant's object of this model

    @property
    def url(self) -> str:
        return f"/admin/{self.model._meta.app_label}/{self.model._meta.model_name}/"


SCOPED = [
    Scoped(Organization, lambda tenant: tenant.org),
    Scoped(Membership, lambda tenant: Membership.objects.get(organization=tenant.org)),
    Scoped(ApiKey, lambda tenant: tenant.api_key),
    Scoped(ProviderAccount, lambda tenant: tenant.account),
    Scoped(File, lambda tenant: File.objects.get(organization=tenant.org)),
    Scoped(AuditEvent, lambda tenant: AuditEvent.objects.filter(organization=tenant.org).first()),
]
IDS = [scoped.model._meta.model_name for scoped in SCOPED]


@pytest.fixture
def world(org_admin: Any, tenant_a: Tenant, tenant_b: Tenant) -> tuple[Tenant, Tenant]:
    """org-a (alice's) and org-b, each with a file, its audit event and an org admin."""
    for tenant in (tenant_a, tenant_b):
        assert upload(tenant.client, f"{tenant.org.slug} data".encode()).status_code == 200
    return tenant_a, tenant_b


def snapshot(obj: models.Model) -> dict[str, Any]:
    fresh = type(obj).objects.get(pk=obj.pk)
    return {field.attname: getattr(fresh, field.attname) for field in fresh._meta.concrete_fields}


def test_every_registered_model_admin_is_covered() -> None:
    registered = {model for model in apps.get_models() if admin.site.is_registered(model)}
    user_model = get_user_model()
    group_model = apps.get_model("auth", "Group")
    login_records = {apps.get_model("axes", name) for name in ("AccessAttempt", "AccessLog", "AccessFailureLog")}
    assert registered == {scoped.model for scoped in SCOPED} | {user_model, group_model} | login_records


def test_org_admin_cannot_see_the_login_records(org_admin_client: Client) -> None:
    # django-axes' records of who tried to log in from where: for operators only.
    for model in ("accessattempt", "accesslog", "accessfailurelog"):
        assert org_admin_client.get(f"/admin/axes/{model}/").status_code == 403, model


@pytest.mark.parametrize("scoped", SCOPED, ids=IDS)
def test_org_admin_lists_only_their_organisations_objects(
    org_admin_client: Client, world: tuple[Tenant, Tenant], scoped: Scoped
) -> None:
    own, other = world
    response = org_admin_client.get(scoped.url)
    assert response.status_code == 200
    listed = {obj.pk for obj in response.context["cl"].result_list}
    assert scoped.pick(own).pk in listed
    assert scoped.pick(other).pk not in listed
    assert other.org.slug not in response.content.decode()


@pytest.mark.parametrize("scoped", SCOPED, ids=IDS)
def test_org_admin_cannot_open_another_organisations_object(
    org_admin_client: Client, world: tuple[Tenant, Tenant], scoped: Scoped
) -> None:
    obj = scoped.pick(world[1])
    for suffix in ("change", "delete", "history"):
        response = org_admin_client.get(f"{scoped.url}{obj.pk}/{suffix}/")
        assert response.status_code in (302, 403, 404), suffix
        if response.status_code == 302:
            assert response["Location"] == "/admin/"  # "does not exist", as for an unknown id
        assert str(obj) not in response.content.decode()


@pytest.mark.parametrize("scoped", SCOPED, ids=IDS)
def test_org_admin_cannot_change_another_organisations_object(
    org_admin_client: Client, world: tuple[Tenant, Tenant], scoped: Scoped
) -> None:
    obj = scoped.pick(world[1])
    before = snapshot(obj)
    posted = {key: value for key, value in model_to_dict(obj).items() if value is not None}
    posted.update({"name": "hijacked", "storage_quota_bytes": "1 PiB", "organization": world[0].org.pk})
    response = org_admin_client.post(f"{scoped.url}{obj.pk}/change/", posted)
    assert response.status_code in (302, 403, 404)
    assert snapshot(obj) == before


@pytest.mark.parametrize("scoped", SCOPED, ids=IDS)
def test_org_admin_cannot_delete_another_organisations_object(
    org_admin_client: Client, world: tuple[Tenant, Tenant], scoped: Scoped
) -> None:
    obj = scoped.pick(world[1])
    org_admin_client.post(f"{scoped.url}{obj.pk}/delete/", {"post": "yes"})
    org_admin_client.post(scoped.url, {"action": "delete_selected", "post": "yes", "_selected_action": [obj.pk]})
    assert type(obj).objects.filter(pk=obj.pk).exists()


def test_org_admin_cannot_reach_another_organisations_key_pages(
    org_admin_client: Client, world: tuple[Tenant, Tenant]
) -> None:
    other = world[1]
    for page in ("created", "revoke"):
        response = org_admin_client.get(f"/admin/tenants/apikey/{other.api_key.pk}/{page}/")
        assert response.status_code == 302
        assert response["Location"] == "/admin/"
    org_admin_client.post(f"/admin/tenants/apikey/{other.api_key.pk}/revoke/")
    assert other.client.get("/v1/files").status_code == 200


def test_org_admin_cannot_test_another_organisations_account(
    org_admin_client: Client, world: tuple[Tenant, Tenant]
) -> None:
    response = org_admin_client.post(
        "/admin/tenants/provideraccount/",
        {"action": "test_connection", "_selected_action": [world[1].account.pk]},
        follow=True,
    )
    assert "org-b" not in response.content.decode()


def test_org_admin_cannot_raise_their_own_limits(org_admin_client: Client, world: tuple[Tenant, Tenant]) -> None:
    own = world[0].org
    before = snapshot(own)
    response = org_admin_client.post(
        f"/admin/tenants/organization/{own.pk}/change/",
        {
            "name": own.name,
            "storage_quota_bytes": "10 TiB",
            "max_file_size_bytes": "10 GiB",
            "batch_max_size_bytes": "10 GiB",
            "used_bytes": 0,
            "membership_set-TOTAL_FORMS": 0,
            "membership_set-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 302
    assert snapshot(own) == before


def test_org_admin_cannot_make_anyone_staff_or_superuser(
    org_admin_client: Client, org_admin: Any, world: tuple[Tenant, Tenant], django_user_model: Any
) -> None:
    dave = django_user_model.objects.create_user(username="dave")
    for url in (
        "/admin/auth/user/",
        "/admin/auth/user/add/",
        f"/admin/auth/user/{dave.pk}/change/",
        "/admin/auth/group/",
    ):
        assert org_admin_client.get(url).status_code == 403, url
    org_admin_client.post(f"/admin/auth/user/{dave.pk}/change/", {"username": "dave", "is_staff": "on"})
    org_admin_client.post(
        f"/admin/auth/user/{org_admin.pk}/change/", {"username": "alice", "is_staff": "on", "is_superuser": "on"}
    )
    assert org_admin_client.get("/admin/tenants/membership/add/").status_code == 403
    org_admin_client.post("/admin/tenants/membership/add/", {"organization": world[0].org.pk, "user": dave.pk})
    org_admin_client.post(
        f"/admin/tenants/organization/{world[0].org.pk}/change/",
        {
            "name": "A",
            "membership_set-TOTAL_FORMS": 1,
            "membership_set-INITIAL_FORMS": 0,
            "membership_set-0-user": dave.pk,
            "membership_set-0-organization": world[0].org.pk,
        },
    )
    dave.refresh_from_db()
    org_admin.refresh_from_db()
    assert (dave.is_staff, dave.is_superuser) == (False, False)
    assert org_admin.is_superuser is False
    assert not Membership.objects.filter(user=dave).exists()


@pytest.mark.parametrize(
    "scoped", [s for s in SCOPED if s.model in (ApiKey, ProviderAccount)], ids=["apikey", "account"]
)
def test_org_admin_cannot_pick_another_organisations_objects_in_any_form(
    org_admin_client: Client, world: tuple[Tenant, Tenant], scoped: Scoped
) -> None:
    own, other = world
    pages = [f"{scoped.url}add/", f"{scoped.url}{scoped.pick(own).pk}/change/"]
    pages += [f"/admin/tenants/organization/{own.org.pk}/change/"]
    for page in pages:
        response = org_admin_client.get(page)
        assert response.status_code == 200, page
        for name, field in response.context["adminform"].form.fields.items():
            if isinstance(field, forms.ModelChoiceField):
                for choice in field.queryset:
                    organization_id = choice.pk if isinstance(choice, Organization) else choice.organization_id
                    assert organization_id == own.org.pk, (page, name)

    response = org_admin_client.post(
        f"{scoped.url}add/", {"organization": other.org.pk, "name": "sneaky", "kind": "local"}
    )
    assert response.status_code == 200
    assert "organization" in response.context["adminform"].form.errors
    assert not scoped.model.objects.filter(name="sneaky").exists()


def test_org_admin_cannot_move_their_account_to_another_organisation(
    org_admin_client: Client, world: tuple[Tenant, Tenant]
) -> None:
    own, other = world
    account = own.account
    response = org_admin_client.post(
        f"/admin/tenants/provideraccount/{account.pk}/change/",
        {"organization": other.org.pk, "name": account.name, "kind": "local", "make_default": "on"},
    )
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.organization_id == own.org.pk


def test_list_filters_offer_only_their_organisations_accounts(
    org_admin_client: Client, world: tuple[Tenant, Tenant]
) -> None:
    own, other = world
    provider_account_create(organization=own.org, name="second", kind="local", config={})
    provider_account_create(organization=other.org, name="other-secret-name", kind="local", config={})
    for url in ("/admin/files_api/file/", "/admin/files_api/auditevent/", "/admin/tenants/provideraccount/"):
        assert "other-secret-name" not in org_admin_client.get(url).content.decode(), url
