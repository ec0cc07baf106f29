"""Which file an id names: variants of another organisation's id are answered like unknown ids.

When two organisations' accounts share one upstream credential, the upstream serves both their
files. An upstream that is lenient about ids (case, a trailing dot) would hand org B org A's file
for a variant of its id if the gateway took the variant for an unknown id of B's. It must not, and
recorded-elsewhere ids must cost what unknown ids cost, so timing does not tell them apart either.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core import serializers
from django.utils import timezone

from files_api.models import File
from files_api.selectors import lookup_file, normalize_file_id
from providers import registry
from tenants.services import provider_account_create
from tests.conftest import Tenant, upload
from tests.fakes import FakeProvider

BY_ID = {
    "retrieve": lambda client, file_id: client.get(f"/v1/files/{file_id}", HTTP_X_PROVIDER_ACCOUNT="fake"),
    "content": lambda client, file_id: client.get(f"/v1/files/{file_id}/content", HTTP_X_PROVIDER_ACCOUNT="fake"),
    "delete": lambda client, file_id: client.delete(f"/v1/files/{file_id}", HTTP_X_PROVIDER_ACCOUNT="fake"),
}


class LenientProvider(FakeProvider):
    """An upstream that finds a file whatever the case of its id and with trailing dots."""

    @classmethod
    def _canonical(cls, remote_id: str) -> str:
        for known in cls.files:
            if known.lower() == remote_id.rstrip(".").lower():
                return known
        return remote_id

    def retrieve(self, remote_id: str) -> Any:
        return super().retrieve(self._canonical(remote_id))

    def open_content(self, remote_id: str) -> Any:
        return super().open_content(self._canonical(remote_id))

    def delete(self, remote_id: str) -> bool:
        return super().delete(self._canonical(remote_id))


@pytest.fixture
def shared_upstream(tenant_a: Tenant, tenant_b: Tenant, fake_provider: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A file of org A on a lenient upstream that org B reaches with the same credential. Returns its id."""
    monkeypatch.setitem(registry.PROVIDERS, "fake", "tests.files_api.test_lookup.LenientProvider")
    registry._classes.pop("fake", None)
    for tenant in (tenant_a, tenant_b):
        provider_account_create(organization=tenant.org, name="fake", kind="fake", config={"api_key": "sk-shared"})
    response = upload(tenant_a.client, b"A's secret", account="fake")
    assert response.status_code == 200, response.json()
    FakeProvider.calls.clear()
    return response.json()["id"]


@pytest.mark.parametrize("operation", BY_ID)
@pytest.mark.parametrize("variant", [str.upper, lambda file_id: file_id + ".", lambda file_id: file_id + ".."])
def test_a_variant_of_another_orgs_id_is_not_found(tenant_b: Tenant, shared_upstream: str, operation, variant):
    response = BY_ID[operation](tenant_b.client, variant(shared_upstream))
    assert response.status_code == 404, response.json()
    assert "delete" not in FakeProvider.calls and "content" not in FakeProvider.calls
    assert shared_upstream in FakeProvider.files  # A's file is still there


@pytest.mark.parametrize("operation", BY_ID)
def test_recorded_elsewhere_and_unknown_ids_get_the_same_answer_for_the_same_work(
    tenant_b: Tenant, shared_upstream: str, operation: str
) -> None:
    recorded = BY_ID[operation](tenant_b.client, shared_upstream)
    calls_for_recorded, FakeProvider.calls[:] = list(FakeProvider.calls), []
    unknown = BY_ID[operation](tenant_b.client, "fake-999999")
    assert (recorded.status_code, unknown.status_code) == (404, 404)
    body = recorded.json()["error"]
    assert body == {**unknown.json()["error"], "message": body["message"]}
    # One upstream round trip each: an unknown id is looked up upstream, a recorded-elsewhere id is
    # looked up too (and the answer discarded), so response time does not tell them apart.
    assert len(calls_for_recorded) == len(FakeProvider.calls) == 1


def test_the_owner_reaches_its_file_through_a_trailing_dot(tenant_a: Tenant, shared_upstream: str) -> None:
    response = BY_ID["retrieve"](tenant_a.client, shared_upstream + ".")
    assert response.status_code == 200 and response.json()["id"] == shared_upstream


def test_normalize_file_id() -> None:
    assert normalize_file_id(" file-abc.. ") == "file-abc"
    assert normalize_file_id("file_011CNha8") == "file_011CNha8"


def test_lookup_file_flags_an_id_recorded_for_another_organisation(
    tenant_a: Tenant, tenant_b: Tenant, shared_upstream: str
) -> None:
    own = lookup_file(tenant_a.org, shared_upstream)
    assert own.file is not None and not own.is_shadowed
    foreign = lookup_file(tenant_b.org, shared_upstream.upper())
    assert foreign.file is None and foreign.is_shadowed
    unknown = lookup_file(tenant_b.org, "fake-999999")
    assert unknown.file is None and not unknown.is_shadowed and unknown.is_possible
    impossible = lookup_file(tenant_b.org, "x" * 65)
    assert not impossible.is_possible


@pytest.mark.postgres
def test_the_case_insensitive_lookup_uses_its_index(db: Any) -> None:
    from django.db import connection

    from files_api.selectors import _CANDIDATES_SQL

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a tiny test table would be scanned anyway
        cursor.execute("EXPLAIN " + _CANDIDATES_SQL, ["FILE-ABC"])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "file_public_id_upper" in plan, plan


def test_a_looked_up_record_is_the_record_the_orm_reads_field_for_field(tenant_a: Tenant) -> None:
    """The lookup builds records from its own column list (a cursor and Model.from_db on PostgreSQL):
    every field must land where the ORM puts it, with the same type, and none may be left deferred."""
    now = timezone.now()
    record = File.objects.create(
        public_id="file-EveryFieldSet",
        organization=tenant_a.org,
        provider_account=tenant_a.account,
        storage_key="org-a/file-EveryFieldSet/report.pdf",
        storage_uri="s3://bucket/org-a/file-EveryFieldSet/report.pdf",
        filename="report.pdf",
        purpose="user_data",
        bytes=12345,
        status="pending",
        status_details="still checking",
        sha256="ab" * 32,
        created_at=now - timedelta(minutes=5),
        expires_at=now + timedelta(days=1),
        api_key=tenant_a.api_key,
        checked_at=now - timedelta(minutes=1),
        missing_since=now - timedelta(seconds=30),
        is_downloadable=False,
    )
    found = lookup_file(tenant_a.org, "FILE-everyfieldset").file
    assert found is None  # a case variant is not the id
    found = lookup_file(tenant_a.org, "file-EveryFieldSet").file
    assert found is not None
    assert found.get_deferred_fields() == set()
    from_orm = File.objects.get(pk=record.pk)
    assert serializers.serialize("python", [found]) == serializers.serialize("python", [from_orm])
    assert found.created_at == from_orm.created_at and found.created_at.utcoffset() is not None
    assert found.is_downloadable is False and found.api_key_id == tenant_a.api_key.pk
