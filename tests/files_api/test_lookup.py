"""File.objects.by_public_id: the hot-path lookup by id gives exactly what the ORM's get() gives."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from files_api.models import File
from tests.conftest import Tenant


def values(file: File) -> dict[str, object]:
    return {field.attname: getattr(file, field.attname) for field in File._meta.concrete_fields}


def make_file(tenant: Tenant, public_id: str, **fields: object) -> File:
    now = timezone.now()
    defaults: dict[str, object] = {
        "organization": tenant.org,
        "provider_account": tenant.account,
        "filename": "naïve.jsonl",
        "purpose": "batch",
        "bytes": 2**40,
        "created_at": now.replace(microsecond=123456),
    }
    return File.objects.create(public_id=public_id, **{**defaults, **fields})


def test_it_reads_every_field_as_the_orm_does(tenant_a: Tenant) -> None:
    now = timezone.now()
    make_file(
        tenant_a,
        "file-full",
        storage_key="org/file-full",
        status="error",
        status_details="line 3: bad JSON",
        sha256="ab" * 32,
        expires_at=now + timedelta(days=30),
        deleted_at=now,
        checked_at=now - timedelta(seconds=5),
        api_key=tenant_a.api_key,
    )
    make_file(tenant_a, "file-sparse")
    for public_id in ("file-full", "file-sparse"):
        found = File.objects.by_public_id(public_id)
        assert found is not None
        assert values(found) == values(File.objects.get(public_id=public_id))
        assert found.created_at.tzinfo is not None and not found._state.adding
        assert found.organization == tenant_a.org  # relations load as usual


def test_an_unknown_id_is_none(tenant_a: Tenant) -> None:
    make_file(tenant_a, "file-known")
    assert File.objects.by_public_id("file-unknown") is None
    assert File.objects.by_public_id("file-KNOWN") is None
