"""The gateway's own database failing after the provider did its part, on every kind.

An upload whose record (or its charge) cannot be written after the provider stored the file is a
503 ``database_unavailable`` (the SDKs retry it) and leaves nothing: the gateway deletes the file it
will never point at. A delete whose record cannot be forgotten after the provider deleted the file
is a 503 as well, and the client's retry finishes it. Each test ends with the books balanced
(``tests/faults.py``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from files_api.models import AuditEvent, File
from files_api.reconciliation import STALE, reconcile_files
from tenants.models import QuotaReservation
from tests.faults import Books, assert_books_balanced, assert_error, database_fails, reconcile_findings

INSERT_RECORD = 'INSERT INTO "files_api_file"'
CHARGE = 'UPDATE "tenants_organization"'  # quota_commit, in the record's transaction
FORGET_RECORD = 'UPDATE "files_api_file"'  # file_forget, after the provider deleted the file


@pytest.fixture(autouse=True)
def quick_failures(settings: Any) -> None:
    settings.UPSTREAM_RETRIES = 0
    settings.UPSTREAM_TIMEOUT_SECONDS = 5


def upload_outcome(books: Books) -> str:
    return AuditEvent.objects.get(organization=books.tenant.org, action=AuditEvent.Action.CREATE).outcome


@pytest.mark.parametrize(
    ("statement", "after"), [(INSERT_RECORD, ""), (CHARGE, INSERT_RECORD)], ids=["record", "charge"]
)
def test_a_record_that_cannot_be_written_is_a_503_and_the_stored_file_is_deleted(
    books: Books, statement: str, after: str
) -> None:
    with database_fails(statement, after=after) as refused:
        response = books.send(books.payload(3000))
    assert len(refused) == 1
    assert_error(response, 503, "database_unavailable", "server_error")
    assert response["Retry-After"] == "1"
    assert not File.objects.exists()
    assert upload_outcome(books) == "database_unavailable"
    assert_books_balanced(books)


@pytest.mark.django_db(transaction=True)  # no test transaction around the request: its savepoints would fail too
def test_a_database_down_from_the_record_on_still_deletes_the_stored_file_and_its_hold_is_reclaimed(
    books: Books, settings: Any
) -> None:
    with database_fails(INSERT_RECORD, is_down=True) as refused:
        response = books.send(books.payload(3000))
    assert len(refused) > 1  # the record, the release of the hold, the audit event
    assert_error(response, 503, "database_unavailable", "server_error")
    assert not File.objects.exists()
    assert books.held() == set()  # deleted at the provider: that needs no database
    # The hold could not be given back: it is a stale reservation once its time is up.
    hold = QuotaReservation.objects.get(organization=books.tenant.org)
    QuotaReservation.objects.filter(pk=hold.pk).update(created_at=timezone.now() - timedelta(days=1))
    assert [finding.category for finding in reconcile_findings(books)] == [STALE]
    assert reconcile_files(organization=books.tenant.org.slug, fix=True).fixed == {STALE: 1}
    assert_books_balanced(books)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_connection_the_database_drops_at_the_record_is_a_503_that_leaves_nothing(books: Books) -> None:
    """The real thing on PostgreSQL: the server ends the request's connection as a restart does."""

    def terminate(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        if sql.startswith(INSERT_RECORD):
            execute("SELECT pg_terminate_backend(pg_backend_pid())", None, False, context)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(terminate):
        response = books.send(books.payload(3000))
    assert_error(response, 503, "database_unavailable", "server_error")
    assert not File.objects.exists()
    assert upload_outcome(books) == "database_unavailable"
    assert_books_balanced(books)


def test_a_delete_whose_record_cannot_be_forgotten_is_a_503_and_a_retry_finishes_it(books: Books) -> None:
    kept = books.send(books.payload(2000)).json()["id"]
    file_id = books.send(books.payload(3000)).json()["id"]
    with database_fails(FORGET_RECORD) as refused:
        response = books.tenant.client.delete(f"/v1/files/{file_id}")
    assert len(refused) == 1
    assert_error(response, 503, "database_unavailable", "server_error")
    assert File.objects.get(public_id=file_id).deleted_at is None  # still charged: not yet forgotten
    assert books.held() == {kept}
    assert books.tenant.client.delete(f"/v1/files/{file_id}").json() == {
        "id": file_id,
        "object": "file",
        "deleted": True,
    }
    assert_books_balanced(books)
