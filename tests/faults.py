"""Faults, and the books every fault must leave balanced, for every provider kind.

``books`` (a fixture over ``KINDS``) is an account of tenant_a of one kind with a view of what its
provider holds, seen round the gateway: a fake upstream's files, a bucket's objects, a folder's
files. ``assert_books_balanced`` is the check every fault test ends with: no live record without its
file at the provider, no file there without a live record unless ``reconcile_files`` reports it as an
orphan (and nothing else), no unfinished upload kept aside, and the organisation's usage equal to its
live files with nothing held. ``database_fails`` makes the gateway's own database fail chosen SQL
statements, through Django's public ``connection.execute_wrapper``.
Registered as a pytest plugin by ``tests/conftest.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from django.db import OperationalError, connection
from django.db.models import Sum

from files_api.models import File
from files_api.reconciliation import ORPHAN, Finding, reconcile_files
from tenants.models import Organization, ProviderAccount, QuotaReservation
from tests.upstream_server import FakeServer
from tests.upstreams import add_upstream_account

if TYPE_CHECKING:  # tests.conftest registers this module as a plugin: importing it here would be circular
    from tests.conftest import Tenant
    from tests.storage_kinds import StorageKind

# Kinds with a Files API of their own, by their fake upstream's fixture; then the kinds that store bytes.
HTTP_KINDS = {"openai": "fake_openai", "azure_openai": "fake_azure", "anthropic": "fake_anthropic", "groq": "fake_groq"}
STORAGE_KINDS = ("bedrock", "vertex", "local")
KINDS = [*HTTP_KINDS, *STORAGE_KINDS]


@dataclass
class Books:
    """An account of tenant_a of ``kind``, and what its provider holds."""

    tenant: Tenant
    kind: str
    account: ProviderAccount
    held: Callable[[], set[str]]  # the ids of the files the provider holds (objects: in the organisation's folder)
    leftovers: Callable[[], list[str]]  # unfinished uploads kept aside (S3 multipart uploads, a fake's partial bodies)

    def payload(self, size: int) -> bytes:
        """About ``size`` bytes the kind accepts: a batch file for Groq (batch files only), random bytes otherwise."""
        from tests.conftest import batch_file

        return batch_file(size) if self.kind == "groq" else os.urandom(size)

    def send(self, content: bytes) -> Any:
        """Upload ``content`` to the account through the gateway, as the kind accepts it."""
        from tests.conftest import upload

        account = self.account.name
        if self.kind == "groq":
            return upload(self.tenant.client, content, filename="batch.jsonl", purpose="batch", account=account)
        return upload(self.tenant.client, content, account=account)


def upstream_books(tenant: Tenant, server: FakeServer, account: ProviderAccount) -> Books:
    def leftovers() -> list[str]:
        stored = {file.path for file in server.files.values()}
        return sorted(path.name for path in server.root.iterdir() if path not in stored)

    return Books(tenant, server.kind, account, held=lambda: set(server.files), leftovers=leftovers)


def storage_books(tenant: Tenant, storage: StorageKind) -> Books:
    def held() -> set[str]:
        # Object names end in the organisation's folder and the file id (after any account prefix).
        return {
            folder_and_id[1]
            for name in storage.bucket.names()
            if (folder_and_id := name.split("/")[-2:])[0] == tenant.org.slug
        }

    return Books(tenant, storage.kind, storage.account, held=held, leftovers=storage.bucket.unfinished)


@pytest.fixture(params=KINDS)
def books(request: pytest.FixtureRequest, tenant_a: Tenant) -> Books:
    """An account of tenant_a of each kind in turn (named ``up`` on the fake upstreams)."""
    if request.param in HTTP_KINDS:
        server: FakeServer = request.getfixturevalue(HTTP_KINDS[request.param])
        return upstream_books(tenant_a, server, add_upstream_account(tenant_a, server, name="up"))
    return storage_books(tenant_a, request.getfixturevalue(request.param))


def live_bytes(organization: Organization) -> int:
    files = File.objects.filter(organization=organization, deleted_at__isnull=True)
    return int(files.aggregate(total=Sum("bytes"))["total"] or 0)


def reconcile_findings(books: Books) -> list[Finding]:
    """What ``reconcile_files`` (without ``--fix``) reports on the account and its organisation's counters."""
    findings: list[Finding] = []
    reconcile_files(organization=books.tenant.org.slug, account=books.account.name, on_finding=findings.append)
    return findings


def assert_books_balanced(books: Books, *, orphans: Collection[str] = ()) -> None:
    """Every live record of the account has its file at the provider; every file there has a live
    record, but ``orphans``, which ``reconcile_files`` must report (and it reports nothing else);
    nothing unfinished is kept aside; the organisation's usage is its live files, nothing held."""
    records = File.objects.filter(provider_account=books.account, deleted_at__isnull=True)
    live = set(records.values_list("public_id", flat=True))
    held = books.held()
    assert live - held == set(), "records whose file the provider does not hold"
    assert held - live == set(orphans), "files at the provider without a record"
    assert books.leftovers() == []
    organization = Organization.objects.get(pk=books.tenant.org.pk)
    assert (organization.used_bytes, organization.reserved_bytes) == (live_bytes(organization), 0)
    assert not QuotaReservation.objects.filter(organization=organization).exists()
    reported = sorted((finding.category, finding.subject) for finding in reconcile_findings(books))
    assert reported == sorted((ORPHAN, file_id) for file_id in orphans)


def assert_error(response: Any, status: int, code: str | None, error_type: str | None = None) -> None:
    """The response is the error envelope with this status and code (and ``type``, when given)."""
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    if error_type is not None:
        assert error["type"] == error_type


@contextmanager
def database_fails(statement: str, *, after: str = "", is_down: bool = False) -> Iterator[list[str]]:
    """The database refuses the first SQL statement starting with ``statement`` (once one starting
    with ``after`` has run), raising ``OperationalError`` as a dropped connection does; with
    ``is_down`` every statement from then on fails too, until the block ends. Yields the statements
    refused.

    Only the calling thread's connection is affected: the test client runs the request there.
    """
    refused: list[str] = []
    armed = [not after]

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        if (refused and is_down) or (armed[0] and not refused and sql.startswith(statement)):
            refused.append(sql)
            raise OperationalError("server closed the connection unexpectedly")
        if sql.startswith(after):
            armed[0] = True
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield refused
