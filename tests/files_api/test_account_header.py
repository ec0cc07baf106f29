"""The provider account header: ``X-Provider-Account``, or TrueFoundry's ``x-tfy-provider-name`` for it,
so a client written for TrueFoundry's gateway changes only ``base_url`` and the key."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from files_api.models import AuditEvent, File
from tenants.models import Organization
from tenants.services import provider_account_create
from tests.conftest import Tenant, batch_file, upload
from tests.upstream_groq import FakeGroq
from tests.upstreams import add_upstream_account

TFY = "HTTP_X_TFY_PROVIDER_NAME"
OURS = "HTTP_X_PROVIDER_ACCOUNT"


@pytest.fixture
def second_account(tenant_a: Tenant) -> str:
    """A second, non-default local account of tenant_a."""
    return provider_account_create(organization=tenant_a.org, name="second", kind="local", config={}).name


def upload_with(tenant: Tenant, **headers: str) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = {"purpose": "assistants", "file": SimpleUploadedFile("a.txt", b"hello")}
    return tenant.client.post("/v1/files", data, format="multipart", **headers)


@pytest.mark.parametrize("header", [OURS, TFY])
def test_either_header_names_the_account_of_an_upload_and_a_list(tenant_a, second_account, header):
    response = upload_with(tenant_a, **{header: second_account})
    assert response.status_code == 200, response.json()
    assert File.objects.get(public_id=response.json()["id"]).provider_account.name == second_account
    assert upload(tenant_a.client, b"on the default").status_code == 200
    listed = tenant_a.client.get("/v1/files", **{header: second_account}).json()["data"]
    assert [file["id"] for file in listed] == [response.json()["id"]]


def test_both_headers_naming_the_same_account_are_fine(tenant_a, second_account):
    response = upload_with(tenant_a, **{OURS: second_account, TFY: second_account})
    assert response.status_code == 200
    assert File.objects.get(public_id=response.json()["id"]).provider_account.name == second_account


def test_an_empty_alias_is_no_header(tenant_a, second_account):
    response = upload_with(tenant_a, **{OURS: second_account, TFY: ""})
    assert File.objects.get(public_id=response.json()["id"]).provider_account.name == second_account


CALLS = {
    "upload": lambda tenant, headers: upload_with(tenant, **headers),
    "list": lambda tenant, headers: tenant.client.get("/v1/files", **headers),
    "retrieve": lambda tenant, headers: tenant.client.get("/v1/files/file-x", **headers),
    "content": lambda tenant, headers: tenant.client.get("/v1/files/file-x/content", **headers),
    "delete": lambda tenant, headers: tenant.client.delete("/v1/files/file-x", **headers),
}


@pytest.mark.parametrize("call", CALLS)
def test_headers_naming_different_accounts_are_a_400_that_changes_nothing(tenant_a, second_account, call):
    response = CALLS[call](tenant_a, {OURS: second_account, TFY: "disk"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "X-Provider-Account",
        "conflicting_provider_account",
    )
    assert "x-tfy-provider-name" in error["message"]
    org = Organization.objects.get(pk=tenant_a.org.pk)
    assert (org.used_bytes, org.reserved_bytes, File.objects.count(), AuditEvent.objects.count()) == (0, 0, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_a_truefoundry_client_works_unchanged_but_for_base_url_and_key(live_server, tenant_a, fake_groq: FakeGroq):
    add_upstream_account(tenant_a, fake_groq, name="groq-batch")
    # TrueFoundry's documented client: provider name in extra_headers on each call.
    tfy = {"x-tfy-provider-name": "groq-batch"}
    with openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=tenant_a.key, max_retries=0) as client:
        created = client.files.create(file=("requests.jsonl", batch_file(500)), purpose="batch", extra_headers=tfy)
        assert created.id in fake_groq.files
        assert [f.id for f in client.files.list(extra_headers=tfy)] == [created.id]
        assert client.files.retrieve(created.id, extra_headers=tfy).purpose == "batch"
        assert client.files.content(created.id, extra_headers=tfy).read() == fake_groq.content_of(created.id)
        assert client.files.delete(created.id, extra_headers=tfy).deleted is True
    assert fake_groq.files == {}
