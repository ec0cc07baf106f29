"""Storage quota: usage is exact after every upload, delete and failure; holds are reserved, settled, reclaimed."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from config.errors import QuotaExceeded
from files_api.models import AuditEvent, File
from tenants.models import Organization, QuotaReservation
from tenants.services import quota_commit, quota_reclaim_stale, quota_release, quota_reserve
from tests.conftest import MULTIPART, Tenant, make_tenant, multipart_body, upload
from tests.fakes import FakeProvider

UPSTREAM_FAILURES = [
    ("rejected", 400, "upstream_error"),
    ("rate_limited", 429, "rate_limit_exceeded"),
    ("error", 502, "upstream_error"),
    ("unavailable", 503, "upstream_unavailable"),
    ("timeout", 504, "upstream_timeout"),
    ("bug", 500, "internal_error"),
]


def org(tenant: Tenant) -> Organization:
    return Organization.objects.get(pk=tenant.org.pk)


def live_bytes(tenant: Tenant) -> int:
    live = File.objects.filter(organization=tenant.org, deleted_at__isnull=True)
    return live.aggregate(total=Sum("bytes"))["total"] or 0


def assert_usage_exact(tenant: Tenant) -> None:
    current = org(tenant)
    assert current.used_bytes == live_bytes(tenant)
    assert current.reserved_bytes == 0
    assert not current.reservations.exists()


def set_quota(tenant: Tenant, quota: int) -> None:
    Organization.objects.filter(pk=tenant.org.pk).update(storage_quota_bytes=quota)


def backdate(reservation: QuotaReservation, days: int = 1) -> None:
    QuotaReservation.objects.filter(pk=reservation.pk).update(created_at=timezone.now() - timedelta(days=days))


def test_usage_is_the_sum_of_live_files_after_uploads_and_deletes(client_a: Any, tenant_a: Tenant) -> None:
    ids = [upload(client_a, b"x" * size).json()["id"] for size in (10, 200, 3000)]
    assert org(tenant_a).used_bytes == 3210
    client_a.delete(f"/v1/files/{ids[1]}")
    assert_usage_exact(tenant_a)
    assert org(tenant_a).used_bytes == 3010


def test_usage_is_unchanged_by_a_rejected_upload_after_successful_ones(client_a: Any, tenant_a: Tenant) -> None:
    upload(client_a, b"x" * 50)
    assert upload(client_a, b"", filename="empty.txt").status_code == 400
    assert upload(client_a, b"y" * 10, purpose="nonsense").status_code == 400
    assert_usage_exact(tenant_a)
    assert org(tenant_a).used_bytes == 50


def test_deleting_the_same_file_twice_frees_its_bytes_once(client_a: Any, tenant_a: Tenant) -> None:
    upload(client_a, b"keep")
    file_id = upload(client_a, b"x" * 100).json()["id"]
    assert client_a.delete(f"/v1/files/{file_id}").status_code == 200
    assert client_a.delete(f"/v1/files/{file_id}").status_code == 404
    assert org(tenant_a).used_bytes == 4


def test_quota_exceeded_is_403_insufficient_quota(tenant_a: Tenant) -> None:
    set_quota(tenant_a, 100)
    response = upload(tenant_a.client, b"x" * 500)
    assert response.status_code == 403
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("insufficient_quota", "storage_quota_exceeded", None)
    assert "100-byte storage quota" in error["message"]


def test_quota_exceeded_leaves_nothing_behind(tenant_a: Tenant) -> None:
    set_quota(tenant_a, 100)
    upload(tenant_a.client, b"x" * 500)
    assert not File.objects.exists()
    assert_usage_exact(tenant_a)
    event = AuditEvent.objects.get(action=AuditEvent.Action.CREATE)
    assert event.outcome == "storage_quota_exceeded"


def test_an_upload_that_needs_the_last_free_bytes_succeeds(tenant_a: Tenant) -> None:
    body = multipart_body(("purpose", "assistants", None), ("file", b"x" * 1000, "a.txt"))
    set_quota(tenant_a, len(body))  # the hold is the request's Content-Length; the charge is the file's size
    response = tenant_a.client.generic("POST", "/v1/files", body, content_type=MULTIPART)
    assert response.status_code == 200, response.json()
    assert org(tenant_a).used_bytes == 1000


def test_quota_counts_used_bytes_against_new_uploads(tenant_a: Tenant) -> None:
    upload(tenant_a.client, b"x" * 900)
    set_quota(tenant_a, 1000)
    assert upload(tenant_a.client, b"y" * 200).status_code == 403
    assert org(tenant_a).used_bytes == 900


def test_deleting_files_makes_room_again(tenant_a: Tenant) -> None:
    file_id = upload(tenant_a.client, b"x" * 900).json()["id"]
    set_quota(tenant_a, 1300)
    assert upload(tenant_a.client, b"y" * 200).status_code == 403
    tenant_a.client.delete(f"/v1/files/{file_id}")
    assert upload(tenant_a.client, b"y" * 200).status_code == 200


def test_quota_of_one_org_does_not_limit_another(tenant_a: Tenant, tenant_b: Tenant) -> None:
    set_quota(tenant_a, 10)
    assert upload(tenant_b.client, b"x" * 1000).status_code == 200


@pytest.mark.parametrize(("failure", "status", "code"), UPSTREAM_FAILURES, ids=[f[0] for f in UPSTREAM_FAILURES])
def test_an_upstream_upload_failure_leaves_usage_exact_and_no_record(
    tenant_a: Tenant, fake_account_a: Any, fake_provider: type[FakeProvider], failure: str, status: int, code: str
) -> None:
    upload(tenant_a.client, b"earlier", account="fake")
    fake_provider.fail_on["upload"] = failure
    response = upload(tenant_a.client, b"x" * 100, account="fake")
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert File.objects.count() == 1
    assert_usage_exact(tenant_a)
    assert org(tenant_a).used_bytes == 7


@pytest.mark.parametrize(("failure", "status", "code"), UPSTREAM_FAILURES, ids=[f[0] for f in UPSTREAM_FAILURES])
def test_an_upstream_delete_failure_keeps_the_file_and_its_charge(
    tenant_a: Tenant, fake_account_a: Any, fake_provider: type[FakeProvider], failure: str, status: int, code: str
) -> None:
    file_id = upload(tenant_a.client, b"x" * 100, account="fake").json()["id"]
    fake_provider.fail_on["delete"] = failure
    response = tenant_a.client.delete(f"/v1/files/{file_id}")
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert File.objects.get(public_id=file_id).deleted_at is None
    assert_usage_exact(tenant_a)
    assert org(tenant_a).used_bytes == 100


def test_an_upload_through_the_fake_provider_is_charged_its_size(
    tenant_a: Tenant, fake_account_a: Any, fake_provider: type[FakeProvider]
) -> None:
    file_id = upload(tenant_a.client, b"x" * 321, account="fake").json()["id"]
    assert fake_provider.files[file_id][1] == b"x" * 321
    assert_usage_exact(tenant_a)
    assert org(tenant_a).used_bytes == 321


def test_a_failure_after_the_upstream_upload_removes_the_orphan(
    tenant_a: Tenant, fake_account_a: Any, fake_provider: type[FakeProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_commit(**kwargs: Any) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr("files_api.upload.quota_commit", broken_commit)
    response = upload(tenant_a.client, b"x" * 100, account="fake")
    assert response.status_code == 500
    assert fake_provider.calls == ["upload", "delete"]
    assert fake_provider.files == {}
    assert not File.objects.exists()
    assert_usage_exact(tenant_a)


def test_quota_reserve_holds_bytes_and_records_the_hold(tenant_a: Tenant) -> None:
    reservation = quota_reserve(organization_id=tenant_a.org.pk, nbytes=300)
    assert org(tenant_a).reserved_bytes == 300
    assert list(QuotaReservation.objects.values_list("pk", "bytes")) == [(reservation.pk, 300)]


def test_quota_reserve_refuses_beyond_used_plus_held(tenant_a: Tenant) -> None:
    set_quota(tenant_a, 1000)
    quota_reserve(organization_id=tenant_a.org.pk, nbytes=600)
    with pytest.raises(QuotaExceeded):
        quota_reserve(organization_id=tenant_a.org.pk, nbytes=401)
    quota_reserve(organization_id=tenant_a.org.pk, nbytes=400)
    assert org(tenant_a).reserved_bytes == 1000


def test_quota_commit_settles_the_hold_at_the_real_size(tenant_a: Tenant) -> None:
    reservation = quota_reserve(organization_id=tenant_a.org.pk, nbytes=500)
    quota_commit(reservation=reservation, actual_bytes=420)
    current = org(tenant_a)
    assert (current.used_bytes, current.reserved_bytes) == (420, 0)
    assert not QuotaReservation.objects.exists()


def test_a_file_stored_larger_than_its_hold_is_charged_its_size_when_the_quota_has_room(tenant_a: Tenant) -> None:
    set_quota(tenant_a, 1000)
    other = quota_reserve(organization_id=tenant_a.org.pk, nbytes=300)  # another upload in flight
    grown = quota_reserve(organization_id=tenant_a.org.pk, nbytes=500)
    quota_commit(reservation=grown, actual_bytes=700)  # its own 500 and the 200 nobody holds
    assert (org(tenant_a).used_bytes, org(tenant_a).reserved_bytes) == (700, 300)
    assert list(QuotaReservation.objects.values_list("pk", flat=True)) == [other.pk]


def test_a_file_stored_larger_than_its_hold_and_the_quota_allows_is_refused_and_charges_nothing(
    tenant_a: Tenant,
) -> None:
    set_quota(tenant_a, 1000)
    quota_reserve(organization_id=tenant_a.org.pk, nbytes=300)
    grown = quota_reserve(organization_id=tenant_a.org.pk, nbytes=500)
    with pytest.raises(QuotaExceeded) as raised, transaction.atomic():
        quota_commit(reservation=grown, actual_bytes=701)
    assert raised.value.message.startswith("This file is 701 bytes as stored, more than the 500 bytes reserved for it,")
    assert "the organization has 700 of its 1000-byte storage quota left" in raised.value.message
    # Nothing charged, and the hold is still there for the caller to release (once).
    assert (org(tenant_a).used_bytes, org(tenant_a).reserved_bytes) == (0, 800)
    quota_release(reservation=grown)
    quota_release(reservation=grown)
    assert (org(tenant_a).used_bytes, org(tenant_a).reserved_bytes) == (0, 300)


def test_a_refused_commit_leaves_the_callers_transaction_usable(tenant_a: Tenant) -> None:
    """The refusal undoes itself (a savepoint): the caller's transaction can go on and commit."""
    set_quota(tenant_a, 100)
    grown = quota_reserve(organization_id=tenant_a.org.pk, nbytes=100)
    with transaction.atomic():
        with pytest.raises(QuotaExceeded):
            quota_commit(reservation=grown, actual_bytes=101)
        quota_commit(reservation=grown, actual_bytes=100)
    assert (org(tenant_a).used_bytes, org(tenant_a).reserved_bytes) == (100, 0)


def test_quota_release_is_idempotent(tenant_a: Tenant) -> None:
    kept = quota_reserve(organization_id=tenant_a.org.pk, nbytes=50)
    released = quota_reserve(organization_id=tenant_a.org.pk, nbytes=200)
    quota_release(reservation=released)
    quota_release(reservation=released)
    assert org(tenant_a).reserved_bytes == kept.bytes


def test_stale_reservations_are_reclaimed(tenant_a: Tenant) -> None:
    stale = quota_reserve(organization_id=tenant_a.org.pk, nbytes=700)
    fresh = quota_reserve(organization_id=tenant_a.org.pk, nbytes=30)
    backdate(stale)
    assert quota_reclaim_stale() == 1
    assert org(tenant_a).reserved_bytes == 30
    assert list(QuotaReservation.objects.values_list("pk", flat=True)) == [fresh.pk]


def test_reclaiming_for_one_org_leaves_other_orgs_holds(tenant_a: Tenant, tenant_b: Tenant) -> None:
    backdate(quota_reserve(organization_id=tenant_a.org.pk, nbytes=10))
    backdate(quota_reserve(organization_id=tenant_b.org.pk, nbytes=20))
    assert quota_reclaim_stale(organization_id=tenant_a.org.pk) == 1
    assert (org(tenant_a).reserved_bytes, org(tenant_b).reserved_bytes) == (0, 20)


def test_quota_reserve_retries_after_reclaiming_stale_holds(tenant_a: Tenant) -> None:
    set_quota(tenant_a, 1000)
    backdate(quota_reserve(organization_id=tenant_a.org.pk, nbytes=1000))
    reservation = quota_reserve(organization_id=tenant_a.org.pk, nbytes=600)
    assert org(tenant_a).reserved_bytes == 600
    assert list(QuotaReservation.objects.values_list("pk", flat=True)) == [reservation.pk]


def test_quota_reserve_does_not_reclaim_fresh_holds(tenant_a: Tenant) -> None:
    set_quota(tenant_a, 1000)
    quota_reserve(organization_id=tenant_a.org.pk, nbytes=1000)
    with pytest.raises(QuotaExceeded):
        quota_reserve(organization_id=tenant_a.org.pk, nbytes=1)
    assert org(tenant_a).reserved_bytes == 1000


def test_an_upload_succeeds_once_a_crashed_workers_hold_is_reclaimed(tenant_a: Tenant) -> None:
    set_quota(tenant_a, 10_000)
    backdate(quota_reserve(organization_id=tenant_a.org.pk, nbytes=10_000))
    assert upload(tenant_a.client, b"x" * 100).status_code == 200
    assert_usage_exact(tenant_a)


def test_a_commit_after_the_hold_was_reclaimed_still_charges_the_file(tenant_a: Tenant) -> None:
    reservation = quota_reserve(organization_id=tenant_a.org.pk, nbytes=100)
    backdate(reservation)
    quota_reclaim_stale()
    quota_commit(reservation=reservation, actual_bytes=80)
    current = org(tenant_a)
    assert (current.used_bytes, current.reserved_bytes) == (80, 0)


def test_a_late_commit_is_refused_when_its_reclaimed_hold_was_given_to_another_upload(tenant_a: Tenant) -> None:
    set_quota(tenant_a, 1000)
    late = quota_reserve(organization_id=tenant_a.org.pk, nbytes=600)
    backdate(late)
    # The hold counts as abandoned: the next upload takes its room (reclaiming it) and is charged.
    quota_commit(reservation=quota_reserve(organization_id=tenant_a.org.pk, nbytes=600), actual_bytes=600)
    with pytest.raises(QuotaExceeded):
        quota_commit(reservation=late, actual_bytes=600)
    current = org(tenant_a)
    assert (current.used_bytes, current.reserved_bytes) == (600, 0)


def test_a_late_commit_is_charged_only_within_what_other_holds_leave(tenant_a: Tenant) -> None:
    set_quota(tenant_a, 1000)
    late = quota_reserve(organization_id=tenant_a.org.pk, nbytes=500)
    backdate(late)
    quota_reclaim_stale()
    quota_reserve(organization_id=tenant_a.org.pk, nbytes=700)  # an upload still in flight
    with pytest.raises(QuotaExceeded):
        quota_commit(reservation=late, actual_bytes=400)
    assert (org(tenant_a).used_bytes, org(tenant_a).reserved_bytes) == (0, 700)
    quota_commit(reservation=late, actual_bytes=300)  # what is left fits it exactly
    assert (org(tenant_a).used_bytes, org(tenant_a).reserved_bytes) == (300, 700)


def test_an_upload_whose_hold_was_reclaimed_and_given_away_is_refused_and_removed_upstream(
    tenant_a: Tenant, fake_account_a: Any, fake_provider: type[FakeProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upload outlives QUOTA_RESERVATION_TTL_SECONDS; meanwhile another upload fills the quota."""
    set_quota(tenant_a, 6000)
    upload_to_fake = FakeProvider.upload

    def slow_upload(provider: FakeProvider, stream: Any, options: Any) -> Any:
        remote = upload_to_fake(provider, stream, options)
        for reservation in QuotaReservation.objects.all():
            backdate(reservation)
        assert upload(tenant_a.client, b"y" * 5000).status_code == 200  # reclaims the hold, takes the room
        return remote

    monkeypatch.setattr(FakeProvider, "upload", slow_upload)
    response = upload(tenant_a.client, b"x" * 3000, account="fake")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "storage_quota_exceeded"
    assert fake_provider.files == {}  # no record will point at it: deleted upstream
    assert [file.bytes for file in File.objects.filter(organization=tenant_a.org)] == [5000]
    assert_usage_exact(tenant_a)


RACERS = 12
FITS = 5


def race(target: Any, count: int) -> list[Any]:
    """Run ``target(n)`` in ``count`` threads released together; return their results in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(n: int) -> None:
        barrier.wait()
        try:
            results[n] = target(n)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_reservations_never_exceed_the_quota() -> None:
    tenant = make_tenant("racers", storage_quota_bytes=FITS * 100)

    def reserve(n: int) -> str:
        try:
            quota_reserve(organization_id=tenant.org.pk, nbytes=100)
        except QuotaExceeded:
            return "refused"
        return "granted"

    assert Counter(race(reserve, RACERS)) == {"granted": FITS, "refused": RACERS - FITS}
    assert org(tenant).reserved_bytes == FITS * 100
    assert QuotaReservation.objects.count() == FITS


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_late_commits_are_charged_exactly_as_far_as_the_quota_fits() -> None:
    tenant = make_tenant("racers", storage_quota_bytes=RACERS * 100)
    late = [quota_reserve(organization_id=tenant.org.pk, nbytes=100) for _ in range(RACERS)]
    for reservation in late:
        backdate(reservation)
    # Other uploads take the reclaimed room, leaving enough for FITS of the late ones.
    quota_commit(
        reservation=quota_reserve(organization_id=tenant.org.pk, nbytes=(RACERS - FITS) * 100),
        actual_bytes=(RACERS - FITS) * 100,
    )

    def commit(n: int) -> str:
        try:
            with transaction.atomic():
                quota_commit(reservation=late[n], actual_bytes=100)
        except QuotaExceeded:
            return "refused"
        return "charged"

    assert Counter(race(commit, RACERS)) == {"charged": FITS, "refused": RACERS - FITS}
    assert (org(tenant).used_bytes, org(tenant).reserved_bytes) == (RACERS * 100, 0)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_commits_of_grown_files_are_charged_exactly_as_far_as_the_quota_fits() -> None:
    """Each file held 100 bytes and was stored at 150: the quota has room for FITS of the extra 50s."""
    tenant = make_tenant("racers", storage_quota_bytes=RACERS * 100 + FITS * 50)
    holds = [quota_reserve(organization_id=tenant.org.pk, nbytes=100) for _ in range(RACERS)]

    def commit(n: int) -> str:
        try:
            with transaction.atomic():
                quota_commit(reservation=holds[n], actual_bytes=150)
        except QuotaExceeded:
            return "refused"  # its hold stays until released below, as the upload path releases it after
        return "charged"

    assert Counter(race(commit, RACERS)) == {"charged": FITS, "refused": RACERS - FITS}
    assert (org(tenant).used_bytes, org(tenant).reserved_bytes) == (FITS * 150, (RACERS - FITS) * 100)
    for hold in holds:
        quota_release(reservation=hold)
    assert (org(tenant).used_bytes, org(tenant).reserved_bytes) == (FITS * 150, 0)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_uploads_succeed_exactly_as_far_as_the_quota_fits(live_server: Any) -> None:
    content = b"q" * 10_000
    body = multipart_body(("purpose", "assistants", None), ("file", content, "race.txt"))
    # Each upload holds its Content-Length while in flight and is charged its file size: room for
    # five holds, and too little left after five charges for a sixth.
    tenant = make_tenant("racers", storage_quota_bytes=FITS * len(body) + len(body) // 2)
    assert FITS * len(content) + len(body) > FITS * len(body) + len(body) // 2

    def post(n: int) -> httpx.Response:
        return httpx.post(
            f"{live_server.url}/v1/files",
            content=body,
            headers={"Authorization": f"Bearer {tenant.key}", "Content-Type": MULTIPART},
            timeout=60,
        )

    responses = race(post, RACERS)
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: FITS, 403: RACERS - FITS}
    refused = [response.json()["error"] for response in responses if response.status_code == 403]
    assert {(error["type"], error["code"]) for error in refused} == {("insufficient_quota", "storage_quota_exceeded")}
    assert File.objects.filter(organization=tenant.org).count() == FITS
    assert_usage_exact(tenant)
    assert org(tenant).used_bytes == FITS * len(content)
