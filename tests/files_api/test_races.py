"""Operations racing on one record answer truthfully: exactly one of them changed it."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone

from files_api.models import AuditEvent, File
from files_api.services import file_purge_expired
from tenants.models import Organization
from tests.conftest import Tenant, upload

PARALLEL = 10


def parallel(count: int, call: Any) -> list[Any]:
    """Run ``call`` in ``count`` threads released at the same moment; return what each returned."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        start.wait()
        results[index] = call()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


@pytest.mark.django_db(transaction=True)
def test_of_parallel_deletes_of_one_file_exactly_one_succeeds(live_server: Any, tenant_a: Tenant) -> None:
    file_id = upload(tenant_a.client, b"x" * 1000).json()["id"]
    headers = {"Authorization": f"Bearer {tenant_a.key}"}

    def delete() -> int:
        return httpx.delete(f"{live_server.url}/v1/files/{file_id}", headers=headers, timeout=30).status_code

    statuses = parallel(PARALLEL, delete)
    assert sorted(statuses) == [200] + [404] * (PARALLEL - 1)
    org = Organization.objects.get(pk=tenant_a.org.pk)
    assert (org.used_bytes, org.reserved_bytes) == (0, 0)
    outcomes = AuditEvent.objects.filter(file_id=file_id, action=AuditEvent.Action.DELETE).values_list(
        "outcome", flat=True
    )
    assert sorted(outcomes) == ["FileNotFound"] * (PARALLEL - 1) + ["success"]


@pytest.mark.django_db(transaction=True)
def test_a_delete_racing_the_purge_of_an_expired_file_frees_its_bytes_once(live_server: Any, tenant_a: Tenant) -> None:
    file_id = upload(tenant_a.client, b"x" * 1000).json()["id"]
    headers = {"Authorization": f"Bearer {tenant_a.key}"}

    def delete_or_purge(index: int) -> Any:
        if index % 2:
            return httpx.delete(f"{live_server.url}/v1/files/{file_id}", headers=headers, timeout=30).status_code
        return len(file_purge_expired())

    # Expired a moment ago: deletes of an expired file are 404s, the purge removes it.
    File.objects.filter(public_id=file_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    counter = iter(range(PARALLEL))
    lock = threading.Lock()

    def next_call() -> Any:
        with lock:
            index = next(counter)
        return delete_or_purge(index)

    results = parallel(PARALLEL, next_call)
    deletes = [result for index, result in enumerate(results) if isinstance(result, int) and result >= 200]
    purged = sum(result for result in results if isinstance(result, int) and result < 200)
    assert all(status == 404 for status in deletes if status != 200)
    assert purged + deletes.count(200) == 1  # one of them removed it
    org = Organization.objects.get(pk=tenant_a.org.pk)
    assert (org.used_bytes, org.reserved_bytes) == (0, 0)
