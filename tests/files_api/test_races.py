"""Operations racing on one record answer truthfully: exactly one of them changed it.

Clients race through a live server (real HTTP, one thread per request), the purge and reconciliation
run in threads of their own, all released by one barrier. Whoever wins, the file's bytes are freed
exactly once, the organisation's usage equals its live files, and exactly one success is audited for
the record; the losers are told 404 (clients) or do nothing (the purge, reconciliation). The same
tests run on SQLite (a database file, as the embedded default) and on PostgreSQL (``DATABASE_URL``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.db import connections, transaction
from django.db.models import F, Sum
from django.utils import timezone

from files_api.models import AuditEvent, File
from files_api.reconciliation import Finding, Summary, reconcile_files
from files_api.services import file_purge_expired
from providers.base import mint_file_id
from tenants.models import Organization, QuotaReservation
from tenants.services import provider_for
from tests.conftest import Tenant, upload
from tests.upstreams import FakeFilesServer, add_upstream_account

PARALLEL = 10
DELETERS = 6  # of PARALLEL, in the expiry race; the others purge


def parallel(count: int, call: Callable[[int], Any]) -> list[Any]:
    """Run ``call(index)`` in ``count`` threads released at the same moment; return what each returned.

    An exception in any of them is raised here (the first one), once all have ended.
    """
    start = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = call(index)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    if errors:
        raise errors[0]
    return results


def delete(live_server: Any, tenant: Tenant, file_id: str) -> int:
    headers = {"Authorization": f"Bearer {tenant.key}"}
    return httpx.delete(f"{live_server.url}/v1/files/{file_id}", headers=headers, timeout=30).status_code


def successes(file_id: str) -> list[str]:
    """The audited successes that changed this record (a client's delete, the purge, reconciliation)."""
    changes = [AuditEvent.Action.DELETE, AuditEvent.Action.EXPIRE, AuditEvent.Action.GONE]
    return list(
        AuditEvent.objects.filter(file_id=file_id, action__in=changes, outcome="success").values_list(
            "action", flat=True
        )
    )


def assert_usage_is_the_live_files(tenant: Tenant) -> None:
    org = Organization.objects.get(pk=tenant.org.pk)
    live = File.objects.filter(organization=org, deleted_at__isnull=True).aggregate(total=Sum("bytes"))["total"] or 0
    held = QuotaReservation.objects.filter(organization=org).aggregate(total=Sum("bytes"))["total"] or 0
    assert (org.used_bytes, org.reserved_bytes) == (live, held)


@pytest.mark.django_db(transaction=True)
def test_of_parallel_deletes_of_one_file_exactly_one_succeeds(live_server: Any, tenant_a: Tenant) -> None:
    file_id = upload(tenant_a.client, b"x" * 1000).json()["id"]

    statuses = parallel(PARALLEL, lambda index: delete(live_server, tenant_a, file_id))

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
    # Expired a moment ago: deletes of an expired file are 404s, and of the purges one removes it.
    File.objects.filter(public_id=file_id).update(expires_at=timezone.now() - timedelta(seconds=1))

    def delete_or_purge(index: int) -> Any:
        if index % 2:
            return delete(live_server, tenant_a, file_id)
        return [file.public_id for file in file_purge_expired()]

    results = parallel(PARALLEL, delete_or_purge)

    assert [status for status in results if isinstance(status, int)] == [404] * (PARALLEL // 2)
    assert sorted(len(purged) for purged in results if isinstance(purged, list)) == [0] * (PARALLEL // 2 - 1) + [1]
    assert successes(file_id) == [AuditEvent.Action.EXPIRE]
    assert list(provider_for(tenant_a.account).store.iter_objects("org-a/")) == []  # type: ignore[attr-defined]
    assert_usage_is_the_live_files(tenant_a)
    assert Organization.objects.get(pk=tenant_a.org.pk).used_bytes == 0


@pytest.mark.django_db(transaction=True)
def test_deletes_racing_the_expiry_of_a_file_leave_exactly_one_winner(live_server: Any, tenant_a: Tenant) -> None:
    """The file expires while deletes arrive (before, at and after the instant) and purges run: a
    delete that still saw it live removes it, or the purge does; never both, never neither."""
    outcomes: set[str] = set()
    for round_number in range(6):
        file = File.objects.get(public_id=upload(tenant_a.client, b"e" * (100 + round_number)).json()["id"])
        expiry = time.time() + 0.5
        File.objects.filter(pk=file.pk).update(expires_at=timezone.now() + timedelta(seconds=0.5))

        def act(index: int, file_id: str = file.public_id, expiry: float = expiry) -> Any:
            # A delete takes some 30 ms through the live server: six are sent from 50 ms before the
            # instant to 10 ms after it, and four purges run 1 to 13 ms after it, finding the file
            # expired while deletes that found it live are still under way.
            if index >= DELETERS:
                time.sleep(max(0.0, expiry - time.time() + 0.001 + (index - DELETERS) * 0.004))
                return [purged.public_id for purged in file_purge_expired()]
            time.sleep(max(0.0, expiry - time.time() - 0.05 + index * 0.012))
            return delete(live_server, tenant_a, file_id)

        results = parallel(PARALLEL, act)
        purged = sum(len(result) for result in results if isinstance(result, list))
        purged += len(file_purge_expired())  # if every purge ran before the expiry, nothing is left behind
        statuses = [result for result in results if isinstance(result, int)]
        assert set(statuses) <= {200, 404}
        assert statuses.count(200) + purged == 1
        assert len(successes(file.public_id)) == 1
        assert File.objects.get(pk=file.pk).is_deleted
        outcomes.add("deleted" if 200 in statuses else "purged")
    assert list(provider_for(tenant_a.account).store.iter_objects("org-a/")) == []  # type: ignore[attr-defined]
    assert_usage_is_the_live_files(tenant_a)
    assert Organization.objects.get(pk=tenant_a.org.pk).used_bytes == 0


@pytest.fixture(params=["local", "fake_openai"])
def account_name(request: pytest.FixtureRequest, tenant_a: Tenant) -> str:
    """An account of tenant_a of each family: stored by the gateway, or behind a Files API."""
    if request.param == "local":
        return tenant_a.account.name
    server: FakeFilesServer = request.getfixturevalue(request.param)
    return add_upstream_account(tenant_a, server).name


def remove_behind_the_gateway(file: File) -> None:
    assert provider_for(file.provider_account).delete(file.remote_ref)


@pytest.mark.django_db(transaction=True)
def test_reconciliation_forgetting_a_gone_file_while_clients_delete_it_leaves_one_winner(
    live_server: Any, tenant_a: Tenant, account_name: str, settings: Any
) -> None:
    settings.RECONCILE_GRACE_SECONDS = 0
    kept = upload(tenant_a.client, b"kept\n", account=account_name).json()["id"]
    files = []
    for round_number in range(3):
        file_id = upload(tenant_a.client, b"g" * (50 + round_number), account=account_name).json()["id"]
        file = File.objects.get(public_id=file_id)
        remove_behind_the_gateway(file)  # deleted at the provider, not through the gateway

        def act(index: int, file_id: str = file_id) -> Any:
            if index < 2:
                return reconcile_files(organization="org-a", fix=True)
            return delete(live_server, tenant_a, file_id)

        results = parallel(PARALLEL, act)
        forgotten = sum(result.fixed["gone"] for result in results if isinstance(result, Summary))
        statuses = [result for result in results if isinstance(result, int)]
        assert set(statuses) <= {200, 404}
        assert statuses.count(200) + forgotten == 1
        assert len(successes(file_id)) == 1
        assert all(result.errors == 0 for result in results if isinstance(result, Summary))
        files.append(file)
    assert File.objects.filter(pk__in=[file.pk for file in files], deleted_at__isnull=True).count() == 0
    assert not File.objects.get(public_id=kept).is_deleted
    assert_usage_is_the_live_files(tenant_a)
    assert Organization.objects.get(pk=tenant_a.org.pk).used_bytes == len(b"kept\n")


@pytest.mark.django_db(transaction=True)
def test_reconciliation_racing_uploads_corrects_the_drift_and_keeps_every_hold_and_commit(
    live_server: Any, tenant_a: Tenant
) -> None:
    """Uploads reserve, store and commit while reconciliation recounts usage (default grace period:
    the objects of uploads in flight are not touched). Only the drift made beforehand is corrected."""
    upload(tenant_a.client, b"before\n")
    Organization.objects.filter(pk=tenant_a.org.pk).update(used_bytes=F("used_bytes") + 1000)
    headers = {"Authorization": f"Bearer {tenant_a.key}"}

    findings: list[Finding] = []

    def act(index: int) -> Any:
        if index < 3:
            return [reconcile_files(organization="org-a", fix=True, on_finding=findings.append) for _ in range(3)]
        content = bytes([65 + index]) * (1000 * index)
        files = {"file": (f"upload-{index}.txt", content)}
        response = httpx.post(
            f"{live_server.url}/v1/files", headers=headers, data={"purpose": "assistants"}, files=files, timeout=30
        )
        return response.status_code, response.json().get("id"), content

    results = parallel(PARALLEL, act)

    summaries = [summary for result in results if isinstance(result, list) for summary in result]
    uploads = [result for result in results if isinstance(result, tuple)]
    assert [status for status, _, _ in uploads] == [200] * (PARALLEL - 3)
    # Exactly the 1000 bytes of drift were corrected, once; no upload in flight looked like drift.
    assert [(f.bytes, f.action != "") for f in findings if f.category in ("usage", "reserved")] == [(1000, True)]
    assert sum(summary.found["gone"] for summary in summaries) == 0
    assert len(summaries) == 9
    assert all(summary.errors == 0 for summary in summaries)
    assert_usage_is_the_live_files(tenant_a)
    assert not QuotaReservation.objects.filter(organization=tenant_a.org).exists()
    for _, file_id, content in uploads:
        creates = AuditEvent.objects.filter(file_id=file_id, action=AuditEvent.Action.CREATE, outcome="success")
        assert creates.count() == 1
        response = httpx.get(f"{live_server.url}/v1/files/{file_id}/content", headers=headers, timeout=30)
        assert response.content == content


@pytest.mark.django_db(transaction=True)
def test_a_recount_waits_for_an_upload_committing_and_counts_it(tenant_a: Tenant) -> None:
    """An upload's record and its charge are one transaction: a recount that starts while it is open
    waits for it and then counts the file, instead of recounting without it and losing its charge."""
    Organization.objects.filter(pk=tenant_a.org.pk).update(used_bytes=F("used_bytes") + 1000)  # drift
    key = f"org-a/{mint_file_id()}"
    nbytes = provider_for(tenant_a.account).store.save(key, iter([b"u" * 300]), content_type="text/plain")  # type: ignore[attr-defined]
    holding, release = threading.Event(), threading.Event()
    findings: list[Finding] = []

    def commit_slowly() -> None:
        try:
            with transaction.atomic():
                File.objects.create(
                    public_id=key.split("/")[1],
                    organization=tenant_a.org,
                    provider_account=tenant_a.account,
                    storage_key=key,
                    filename="slow.txt",
                    purpose="assistants",
                    bytes=nbytes,
                    created_at=timezone.now(),
                )
                Organization.objects.filter(pk=tenant_a.org.pk).update(used_bytes=F("used_bytes") + nbytes)
                holding.set()
                release.wait(10)
        finally:
            connections.close_all()

    def recount() -> None:
        try:
            reconcile_files(organization="org-a", fix=True, on_finding=findings.append)
        finally:
            connections.close_all()

    committer = threading.Thread(target=commit_slowly)
    committer.start()
    assert holding.wait(10)
    recounter = threading.Thread(target=recount)
    recounter.start()
    time.sleep(0.5)  # the recount is now waiting for the upload's transaction
    release.set()
    committer.join(10)
    recounter.join(30)

    [usage] = [finding for finding in findings if finding.category == "usage"]
    assert (usage.bytes, usage.action) == (1000, f"set to {nbytes}")
    assert_usage_is_the_live_files(tenant_a)
    assert Organization.objects.get(pk=tenant_a.org.pk).used_bytes == nbytes
