"""Django admin for file records and audit events: read-only, filtered, searchable, scoped per organisation."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from files_api.models import AuditEvent, File
from tenants.models import Membership
from tests.conftest import Tenant, upload


@pytest.fixture
def files(tenant_a: Tenant, tenant_b: Tenant) -> dict[str, str]:
    """One file in each organisation (and their audit events), by organisation slug."""
    ids = {}
    for tenant, purpose in ((tenant_a, "assistants"), (tenant_b, "vision")):
        response = upload(
            tenant.client, f"{tenant.org.slug} data".encode(), filename=f"{tenant.org.slug}.txt", purpose=purpose
        )
        assert response.status_code == 200
        ids[tenant.org.slug] = response.json()["id"]
    return ids


@pytest.fixture
def org_admin_client(django_user_model: Any, tenant_a: Tenant) -> Client:
    user = django_user_model.objects.create_user(username="alice", is_staff=True)
    Membership.objects.create(user=user, organization=tenant_a.org)
    client = Client()
    client.force_login(user)
    return client


def results(client: Client, model: str, **params: str) -> list[Any]:
    response = client.get(f"/admin/files_api/{model}/", params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


@pytest.mark.parametrize("model", ["file", "auditevent"])
def test_nobody_can_add_change_or_delete_records(admin_client: Client, files: dict[str, str], model: str) -> None:
    obj = (File if model == "file" else AuditEvent).objects.first()
    assert admin_client.get(f"/admin/files_api/{model}/add/").status_code == 403
    assert admin_client.post(f"/admin/files_api/{model}/{obj.pk}/delete/", {"post": "yes"}).status_code == 403
    page = admin_client.get(f"/admin/files_api/{model}/{obj.pk}/change/")
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert 'name="_save"' not in page.content.decode()
    assert admin_client.post(f"/admin/files_api/{model}/{obj.pk}/change/", {}).status_code == 403
    assert admin_client.get(f"/admin/files_api/{model}/").context["action_form"] is None  # no bulk delete
    assert (File if model == "file" else AuditEvent).objects.filter(pk=obj.pk).exists()


def test_superuser_sees_every_organisations_files(admin_client: Client, files: dict[str, str]) -> None:
    assert {file.public_id for file in results(admin_client, "file")} == set(files.values())


def test_org_admin_sees_only_their_files_and_events(
    org_admin_client: Client, files: dict[str, str], tenant_a: Tenant
) -> None:
    assert [file.public_id for file in results(org_admin_client, "file")] == [files["org-a"]]
    events = results(org_admin_client, "auditevent")
    assert events
    assert {event.organization_id for event in events} == {tenant_a.org.pk}


def test_org_admin_cannot_open_another_organisations_record(org_admin_client: Client, files: dict[str, str]) -> None:
    other_file = File.objects.get(public_id=files["org-b"])
    other_event = AuditEvent.objects.filter(file_id=files["org-b"]).first()
    for url in (
        f"/admin/files_api/file/{other_file.pk}/change/",
        f"/admin/files_api/auditevent/{other_event.pk}/change/",
    ):
        response = org_admin_client.get(url)
        assert response.status_code in (302, 403, 404)
        assert files["org-b"] not in response.content.decode()


def test_org_admin_filters_never_name_other_organisations(org_admin_client: Client, files: dict[str, str]) -> None:
    for model in ("file", "auditevent"):
        html = org_admin_client.get(f"/admin/files_api/{model}/").content.decode()
        assert "org-a" in html
        assert "org-b" not in html
    assert "vision" not in org_admin_client.get("/admin/files_api/file/").content.decode()  # org B's purpose


def test_files_are_searchable_by_id_and_filename(admin_client: Client, files: dict[str, str]) -> None:
    assert [file.public_id for file in results(admin_client, "file", q=files["org-b"])] == [files["org-b"]]
    assert [file.filename for file in results(admin_client, "file", q="org-a.txt")] == ["org-a.txt"]


def test_files_filter_by_organisation_purpose_and_state(
    admin_client: Client, files: dict[str, str], tenant_a: Tenant, tenant_b: Tenant
) -> None:
    by_org = results(admin_client, "file", organization__id__exact=str(tenant_b.org.pk))
    assert [file.public_id for file in by_org] == [files["org-b"]]
    assert [file.purpose for file in results(admin_client, "file", purpose="vision")] == ["vision"]

    assert tenant_a.client.delete(f"/v1/files/{files['org-a']}").status_code == 200
    assert [file.public_id for file in results(admin_client, "file", state="deleted")] == [files["org-a"]]
    assert [file.public_id for file in results(admin_client, "file", state="live")] == [files["org-b"]]


def test_audit_events_filter_by_action_and_outcome_and_search_by_file(
    admin_client: Client, files: dict[str, str], tenant_a: Tenant
) -> None:
    AuditEvent.objects.create(
        organization=tenant_a.org, action="file.delete", file_id="file-x", outcome="upstream_error"
    )
    creates = results(admin_client, "auditevent", action="file.create")
    assert {event.file_id for event in creates} == set(files.values())
    assert [event.file_id for event in results(admin_client, "auditevent", outcome="upstream_error")] == ["file-x"]
    assert {event.file_id for event in results(admin_client, "auditevent", q=files["org-a"])} == {files["org-a"]}


@pytest.mark.parametrize("model", ["file", "auditevent"])
def test_lists_have_a_date_hierarchy(admin_client: Client, files: dict[str, str], model: str) -> None:
    response = admin_client.get(f"/admin/files_api/{model}/")
    assert response.context["cl"].date_hierarchy == "created_at"
    assert "created_at__year=" in response.content.decode()
