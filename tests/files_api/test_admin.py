"""Django admin for file records and audit events: read-only, filtered, searchable, scoped per organisation."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils.text import capfirst

from files_api.models import AuditEvent, File
from tenants.models import Organization
from tenants.services import organization_create
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
        assert files["org-a"] in html
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


def column_titles(response: Any) -> list[str]:
    return [capfirst(header["text"]) for header in response.context["result_headers"]]


def test_file_list_shows_status_time_account_and_key(
    org_admin_client: Client, files: dict[str, str], tenant_a: Tenant
) -> None:
    response = org_admin_client.get("/admin/files_api/file/")
    columns = column_titles(response)
    assert columns == ["File ID", "Filename", "Purpose", "Size", "Status", "Created", "Account", "API key"]
    html = response.content.decode()
    assert f"<code>{files['org-a']}</code>" in html
    assert f"{tenant_a.api_key.prefix}…" in html
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", html)


def test_superuser_lists_also_name_the_organisation(admin_client: Client, files: dict[str, str]) -> None:
    for model in ("file", "auditevent"):
        assert column_titles(admin_client.get(f"/admin/files_api/{model}/"))[-1] == "Organization"


def test_file_page_uses_english_labels_and_zoned_times(admin_client: Client, files: dict[str, str]) -> None:
    file = File.objects.get(public_id=files["org-a"])
    html = admin_client.get(f"/admin/files_api/file/{file.pk}/change/").content.decode()
    for label in ("File ID:", "SHA-256:", "Storage URI:", "API key:", "Provider account:"):
        assert f">{label}</label>" in html, label
    for wrong in ("Sha256", "Api key", "Storage uri", "Public id"):
        assert wrong not in html
    assert file.sha256 in html
    assert re.search(r"Created:</label>\s*<div class=\"readonly\">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", html)
    assert f"({file.bytes:,} bytes)" in html


def test_audit_list_shows_a_failures_reason(org_admin_client: Client, tenant_a: Tenant) -> None:
    assert upload(tenant_a.client, b"", filename="empty.txt").status_code == 400
    response = org_admin_client.get("/admin/files_api/auditevent/")
    columns = column_titles(response)
    assert columns == ["Time", "Action", "Outcome", "Reason", "File ID", "Account", "API key", "Bytes"]
    event = AuditEvent.objects.get(organization=tenant_a.org)
    assert event.outcome != "success"
    assert event.detail
    assert event.detail[:40] in response.content.decode()


def test_audit_events_filter_by_result_and_recency(
    admin_client: Client, files: dict[str, str], tenant_a: Tenant
) -> None:
    failure = AuditEvent.objects.create(
        organization=tenant_a.org, action="file.delete", file_id="file-x", outcome="upstream_error"
    )
    old = AuditEvent.objects.create(organization=tenant_a.org, action="file.delete", file_id="file-y", outcome="x")
    AuditEvent.objects.filter(pk=old.pk).update(created_at=failure.created_at - timedelta(days=2))
    assert {event.file_id for event in results(admin_client, "auditevent", result="failure")} == {"file-x", "file-y"}
    assert [event.file_id for event in results(admin_client, "auditevent", result="failure", since="1d")] == ["file-x"]
    assert {event.file_id for event in results(admin_client, "auditevent", result="success")} == set(files.values())


def test_admin_index_shows_each_organisations_overview(
    admin_client: Client, files: dict[str, str], tenant_a: Tenant, tenant_b: Tenant
) -> None:
    assert upload(tenant_a.client, b"", filename="empty.txt").status_code == 400
    old = AuditEvent.objects.create(organization=tenant_a.org, action="file.create", outcome="upstream_error")
    AuditEvent.objects.filter(pk=old.pk).update(created_at=old.created_at - timedelta(days=2))  # not in the last day

    html = admin_client.get("/admin/").content.decode()
    rows = dict(re.findall(r'<tr class="organization-summary" data-slug="([^"]+)">(.*?)</tr>', html, re.S))
    assert set(rows) == {"org-a", "org-b"}
    cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", rows["org-a"], re.S)]
    org_a = Organization.objects.get(pk=tenant_a.org.pk)
    assert cells == [f"{org_a.used_bytes} bytes of 100 GiB (&lt;1%)", "1", "1", "1"]
    assert "result=failure" in rows["org-a"]


def test_org_admin_index_overview_shows_their_organisations_only(
    org_admin_client: Client, files: dict[str, str]
) -> None:
    html = org_admin_client.get("/admin/").content.decode()
    assert re.findall(r'data-slug="([^"]+)"', html) == ["org-a"]


def test_the_overview_costs_the_same_queries_for_many_organisations(
    admin_client: Client, files: dict[str, str], django_assert_max_num_queries: Any
) -> None:
    for index in range(20):
        organization_create(slug=f"more-{index}")
    with django_assert_max_num_queries(12):
        assert admin_client.get("/admin/").status_code == 200
