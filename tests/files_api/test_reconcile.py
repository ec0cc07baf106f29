"""``reconcile_files``: records against what the provider holds, on every kind, through the real command.

Each kind's upstream is changed behind the gateway's back the way the world changes it (a file
deleted at the provider, an object left in the bucket by a crash, a counter off), then the command
runs with ``--json`` and the test checks what it reported, and what it changed, in the database and
upstream. ``KINDS`` lists the kinds it runs on: a storage kind's account fixture or a fake upstream's
fixture name is all a new kind needs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import F, Sum
from django.utils import timezone

from files_api.models import AuditEvent, File
from files_api.reconciliation import BATCH_SIZE, PAGE_SIZE
from providers.base import ObjectStoreProvider, mint_file_id
from providers.local import FolderStore
from tenants.models import Organization, ProviderAccount, QuotaReservation
from tenants.services import provider_account_create, provider_for
from tests.conftest import Tenant, batch_line, upload
from tests.object_stores import free_port
from tests.upstream_server import FakeServer
from tests.upstreams import FakeFilesServer, add_upstream_account

# Storage kinds by their account fixture ("local" is tenant_a's default account), kinds with a Files API
# by their fake upstream's fixture.
KINDS = ["local", "bedrock", "vertex", "fake_openai", "fake_azure", "fake_anthropic", "fake_groq"]


@dataclass
class Behind:
    """One account of tenant_a, and a way round the gateway to what its provider holds."""

    tenant: Tenant
    account: ProviderAccount
    add_unrecorded: Callable[[bytes], str]  # a file the gateway has no record of; returns its id
    remove: Callable[[File], None]  # the file goes, at the provider, not through the gateway
    holds: Callable[[str], bool]  # whether the provider has the file with this id
    deletes_orphans: bool  # storage kinds delete orphaned objects; upstream orphans are only reported

    def upload(self, content: bytes) -> File:
        """Upload through the gateway: ``content`` as a text file or, to a kind that keeps batch files
        only (Groq), as the ``custom_id`` of a batch line."""
        purposes = provider_for(self.account).purposes
        if purposes is None or "assistants" in purposes:
            response = upload(self.tenant.client, content, account=self.account.name)
        else:
            line = batch_line(content.decode().replace("\n", " "))
            response = upload(self.tenant.client, line, filename="b.jsonl", purpose="batch", account=self.account.name)
        assert response.status_code == 200, response.content
        return File.objects.get(public_id=response.json()["id"])


def storage_behind(tenant: Tenant, account: ProviderAccount) -> Behind:
    provider = provider_for(account)
    assert isinstance(provider, ObjectStoreProvider)
    folder = tenant.org.slug + "/"

    def add_unrecorded(content: bytes) -> str:
        file_id = mint_file_id()
        provider.store.save(folder + file_id, iter([content]), content_type="text/plain")
        return file_id

    def holds(file_id: str) -> bool:
        return any(item.key == folder + file_id for store in provider.stores() for item in store.iter_objects(folder))

    def remove(file: File) -> None:
        assert provider.delete(file.storage_key)

    return Behind(
        tenant=tenant,
        account=account,
        add_unrecorded=add_unrecorded,
        remove=remove,
        holds=holds,
        deletes_orphans=True,
    )


def upstream_behind(tenant: Tenant, server: FakeServer) -> Behind:
    return Behind(
        tenant=tenant,
        account=add_upstream_account(tenant, server),
        add_unrecorded=lambda content: server.add_file(content),
        remove=lambda file: server.remove(file.public_id),
        holds=lambda file_id: file_id in server.files,
        deletes_orphans=False,
    )


@pytest.fixture(params=KINDS)
def behind(request: pytest.FixtureRequest, tenant_a: Tenant, settings: Any) -> Behind:
    settings.RECONCILE_GRACE_SECONDS = 0
    if request.param == "local":
        return storage_behind(tenant_a, tenant_a.account)
    found = request.getfixturevalue(request.param)
    if isinstance(found, FakeServer):
        return upstream_behind(tenant_a, found)
    return storage_behind(tenant_a, found.account)  # a storage kind's account fixture (tests.storage_kinds)


@dataclass
class Result:
    findings: list[dict[str, Any]]
    summary: dict[str, Any]
    returncode: int

    def subjects(self, category: str) -> set[str]:
        return {finding["subject"] for finding in self.findings if finding["category"] == category}

    def actions(self) -> dict[str, str]:
        return {finding["subject"]: finding["action"] for finding in self.findings}


def reconcile(*args: str) -> Result:
    """Run the command with ``--json``; its findings, its summary and its exit status."""
    out = StringIO()
    returncode = 0
    try:
        call_command("reconcile_files", "--json", *args, stdout=out)
    except CommandError as exc:
        returncode = exc.returncode
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[-1]["type"] == "summary"
    return Result(findings=lines[:-1], summary=lines[-1], returncode=returncode)


def live_bytes(org: Organization) -> int:
    return File.objects.filter(organization=org, deleted_at__isnull=True).aggregate(total=Sum("bytes"))["total"] or 0


def org_state(org: Organization) -> Any:
    """Everything reconciliation could change in the database, to compare before and after."""
    return (
        list(File.objects.order_by("pk").values_list("public_id", "deleted_at", "missing_since", "status")),
        Organization.objects.filter(pk=org.pk).values_list("used_bytes", "reserved_bytes").get(),
        list(QuotaReservation.objects.order_by("pk").values_list("pk", "bytes")),
        AuditEvent.objects.count(),
    )


@dataclass
class World:
    kept: File
    gone: File
    found_again: File
    missing_and_gone: File
    orphan: str
    stale: QuotaReservation


def make_world(behind: Behind) -> World:
    """One of each thing to reconcile on ``behind``'s account, and on tenant_a's counters."""
    org = behind.tenant.org
    kept, gone, found_again, missing_and_gone = (behind.upload(f"file {n}\n".encode() * (n + 1)) for n in range(4))
    behind.remove(gone)
    behind.remove(missing_and_gone)
    marked = timezone.now() - timedelta(hours=2)
    File.objects.filter(pk__in=[found_again.pk, missing_and_gone.pk]).update(missing_since=marked)
    orphan = behind.add_unrecorded(b"left behind by a crash\n")
    # A hold whose worker died (counted in reserved_bytes, as quota_reserve leaves it), used_bytes
    # 123 too high, reserved_bytes 50 higher than the holds.
    stale = QuotaReservation.objects.create(organization=org, bytes=7)
    QuotaReservation.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(days=1))
    Organization.objects.filter(pk=org.pk).update(
        used_bytes=F("used_bytes") + 123, reserved_bytes=F("reserved_bytes") + 7 + 50
    )
    return World(
        kept, gone, File.objects.get(pk=found_again.pk), File.objects.get(pk=missing_and_gone.pk), orphan, stale
    )


def test_it_reports_every_category_by_id_and_changes_nothing_without_fix(behind: Behind) -> None:
    world = make_world(behind)
    before = org_state(behind.tenant.org)

    result = reconcile()

    assert result.returncode == 0
    assert result.subjects("gone") == {world.gone.public_id, world.missing_and_gone.public_id}
    assert result.subjects("found") == {world.found_again.public_id}
    assert result.subjects("orphan") == {world.orphan}
    assert result.subjects("usage") == {"used_bytes"}
    assert result.subjects("reserved") == {"reserved_bytes"}
    assert result.subjects("stale-reservation") == {f"reservation {world.stale.pk}"}
    assert len(result.findings) == 7
    assert {finding["action"] for finding in result.findings} == {""}
    usage = next(finding for finding in result.findings if finding["category"] == "usage")
    assert usage["bytes"] == 123
    assert next(f for f in result.findings if f["category"] == "reserved")["bytes"] == 50
    assert result.summary["records"] == 4
    assert result.summary["missing"] == 2
    assert result.summary["fixed"] == dict.fromkeys(result.summary["found"], 0)

    assert org_state(behind.tenant.org) == before
    assert behind.holds(world.orphan)
    assert behind.holds(world.kept.public_id)


def test_fix_repairs_what_is_safe_says_what_it_did_and_a_second_run_finds_nothing_more(behind: Behind) -> None:
    world = make_world(behind)
    org = behind.tenant.org

    result = reconcile("--fix")

    assert result.returncode == 0
    actions = result.actions()
    gone = [world.gone, world.missing_and_gone]
    for file in gone:
        assert actions[file.public_id] == f"forgotten, {file.bytes} bytes released"
        assert File.objects.get(pk=file.pk).is_deleted
        events = AuditEvent.objects.filter(file_id=file.public_id, action=AuditEvent.Action.GONE)
        assert [(event.outcome, event.bytes) for event in events] == [("success", file.bytes)]
    assert actions[world.found_again.public_id] == "missing mark cleared"
    assert File.objects.get(pk=world.found_again.pk).missing_since is None
    assert not File.objects.get(pk=world.kept.pk).is_deleted
    if behind.deletes_orphans:
        assert actions[world.orphan] == "deleted"
        assert not behind.holds(world.orphan)
        assert AuditEvent.objects.filter(file_id=world.orphan, action=AuditEvent.Action.DELETE).count() == 1
    else:
        assert actions[world.orphan].startswith("left: ")
        assert behind.holds(world.orphan)
    assert actions[f"reservation {world.stale.pk}"] == "released"
    assert not QuotaReservation.objects.filter(organization=org).exists()
    org.refresh_from_db()
    assert (org.used_bytes, org.reserved_bytes) == (live_bytes(org), 0)
    assert live_bytes(org) == world.kept.bytes + world.found_again.bytes
    assert result.summary["fixed"] == {**dict.fromkeys(result.summary["found"], 0), **{
        "gone": 2, "found": 1, "orphan": int(behind.deletes_orphans), "usage": 1, "reserved": 1, "stale-reservation": 1
    }}  # fmt: skip

    again = reconcile("--fix")

    assert again.returncode == 0
    assert again.findings == (
        [] if behind.deletes_orphans else [f for f in result.findings if f["category"] == "orphan"]
    )
    assert again.summary["records"] == 2


def test_it_leaves_what_is_younger_than_the_grace_period(behind: Behind, settings: Any) -> None:
    settings.RECONCILE_GRACE_SECONDS = 3600
    behind.upload(b"kept\n")
    gone = behind.upload(b"gone\n")
    behind.remove(gone)
    orphan = behind.add_unrecorded(b"an upload between storing and recording\n")

    result = reconcile("--fix")

    assert result.subjects("gone") == {gone.public_id}
    assert result.actions()[gone.public_id] == "left: younger than RECONCILE_GRACE_SECONDS"
    assert not File.objects.get(pk=gone.pk).is_deleted
    assert result.subjects("orphan") == {orphan}
    assert result.actions()[orphan].startswith("left: ")
    assert behind.holds(orphan)


def test_an_account_none_of_whose_files_is_found_forgets_nothing_and_is_an_error(behind: Behind) -> None:
    files = [behind.upload(b"one\n"), behind.upload(b"two\n")]
    for file in files:
        behind.remove(file)

    result = reconcile("--fix")

    assert result.returncode == 1
    assert result.subjects("gone") == {file.public_id for file in files}
    assert {result.actions()[file.public_id] for file in files} == {"left: none of the account's files was found"}
    errors = [finding for finding in result.findings if finding["category"] == "error"]
    assert [error["account"] for error in errors] == [behind.account.name]
    assert "none is forgotten" in errors[0]["detail"]
    assert not File.objects.filter(pk__in=[file.pk for file in files], deleted_at__isnull=False).exists()
    org = Organization.objects.get(pk=behind.tenant.org.pk)
    assert org.used_bytes == live_bytes(org) == sum(file.bytes for file in files)


def test_the_text_report_names_each_file_and_sums_up(behind: Behind) -> None:
    world = make_world(behind)
    out = StringIO()

    call_command("reconcile_files", stdout=out)

    text = out.getvalue()
    assert f"gone              org-a/{behind.account.name}  {world.gone.public_id} ({world.gone.bytes} bytes)" in text
    assert f"orphan            org-a/{behind.account.name}  {world.orphan}" in text
    assert "usage             org-a  used_bytes (123 bytes): used_bytes is " in text
    assert "Found: 2 gone, 1 orphan, 1 found, 1 usage, 1 reserved, 1 stale-reservation." in text
    assert text.endswith("Nothing was changed: run with --fix to repair what is safe.\n")


def test_an_unreachable_account_is_an_error_and_the_others_are_still_checked(tenant_a: Tenant, settings: Any) -> None:
    settings.RECONCILE_GRACE_SECONDS = 0
    settings.UPSTREAM_RETRIES = 0
    provider_account_create(
        organization=tenant_a.org,
        name="nowhere",
        kind="openai",
        config={"api_key": "sk-nowhere", "base_url": f"http://127.0.0.1:{free_port()}/v1"},
    )
    local = storage_behind(tenant_a, tenant_a.account)
    local.upload(b"kept\n")
    gone = local.upload(b"gone\n")
    local.remove(gone)

    result = reconcile("--fix")

    assert result.returncode == 1
    errors = [finding for finding in result.findings if finding["category"] == "error"]
    assert [(error["account"], error["detail"]) for error in errors] == [
        ("nowhere", "The OpenAI provider could not be reached.")
    ]
    assert result.actions()[gone.public_id] == f"forgotten, {gone.bytes} bytes released"
    assert result.summary["accounts"] == 2


def test_a_provider_failing_while_a_record_is_checked_is_an_error_and_forgets_nothing(
    fake_openai: FakeFilesServer, tenant_a: Tenant, settings: Any
) -> None:
    settings.RECONCILE_GRACE_SECONDS = 0
    behind = upstream_behind(tenant_a, fake_openai)
    behind.upload(b"kept\n")
    gone = behind.upload(b"gone\n")
    behind.remove(gone)
    fake_openai.fail("retrieve", status=500, times=10)

    result = reconcile("--fix")

    assert result.returncode == 1
    assert [(f["account"], f["detail"]) for f in result.findings if f["category"] == "error"] == [
        ("openai", "The OpenAI provider failed (HTTP 500).")
    ]
    assert not File.objects.get(pk=gone.pk).is_deleted
    fake_openai.faults.clear()
    assert reconcile("--fix").actions()[gone.public_id] == f"forgotten, {gone.bytes} bytes released"


def test_org_and_account_filters_choose_what_is_checked(tenant_a: Tenant, tenant_b: Tenant, settings: Any) -> None:
    settings.RECONCILE_GRACE_SECONDS = 0
    gone: dict[str, File] = {}
    for tenant in (tenant_a, tenant_b):
        local = storage_behind(tenant, tenant.account)
        local.upload(b"kept\n")
        gone[tenant.org.slug] = local.upload(b"gone\n")
        local.remove(gone[tenant.org.slug])
        provider_account_create(organization=tenant.org, name="other", kind="local", config={})
        Organization.objects.filter(pk=tenant.org.pk).update(used_bytes=F("used_bytes") + 1)

    only_b = reconcile("--org", "org-b")
    disks = reconcile("--account", "disk")
    others = reconcile("--account", "other", "--org", "org-a")

    assert {(f["organization"], f["category"]) for f in only_b.findings} == {("org-b", "gone"), ("org-b", "usage")}
    assert only_b.summary["accounts"] == 2
    assert only_b.subjects("gone") == {gone["org-b"].public_id}
    assert disks.subjects("gone") == {gone["org-a"].public_id, gone["org-b"].public_id}
    assert disks.summary["accounts"] == 2
    # An account's organisation has its usage checked too.
    assert {(f["organization"], f["category"]) for f in others.findings} == {("org-a", "usage")}
    assert (others.summary["accounts"], others.summary["organizations"]) == (1, 1)
    with pytest.raises(CommandError, match="No organisation 'org-c'"):
        call_command("reconcile_files", "--org", "org-c", stdout=StringIO())
    with pytest.raises(CommandError, match="No provider account named 'nope'"):
        call_command("reconcile_files", "--account", "nope", stdout=StringIO())


def record(account: ProviderAccount, file_id: str, *, created_at: float, nbytes: int = 3, key: str = "") -> File:
    """A record as an upload leaves it (not saved)."""
    return File(
        public_id=file_id,
        organization=account.organization,
        provider_account=account,
        storage_key=key,
        filename="seeded.jsonl",
        purpose="batch",
        bytes=nbytes,
        created_at=datetime.fromtimestamp(created_at, tz=UTC),
    )


def test_it_pages_through_an_upstream_of_thousands_of_files(
    fake_openai: FakeFilesServer, tenant_a: Tenant, tenant_b: Tenant, settings: Any
) -> None:
    settings.RECONCILE_GRACE_SECONDS = 0
    account_a = add_upstream_account(tenant_a, fake_openai)
    account_b = add_upstream_account(tenant_b, fake_openai)  # the same upstream account, shared
    ids = fake_openai.seed(3000)
    created = {file_id: fake_openai.files[file_id].object["created_at"] for file_id in ids}
    unrecorded = {ids[index] for index in (10, 700, 1600, 2200, 2900)}
    of_b = set(ids[1000:1500])  # recorded for the other organisation: not orphans of this account
    records = [
        record(account_b if file_id in of_b else account_a, file_id, created_at=created[file_id])
        for file_id in ids
        if file_id not in unrecorded
    ]
    # Gone: recorded at times the upstream also has files of, and at the newest and oldest ends.
    gone_at = [created[ids[0]] - 5, created[ids[1234]], created[ids[2999]] + 1]
    gone = [f"file-gone{n}" for n in range(3)]
    records += [record(account_a, file_id, created_at=at) for file_id, at in zip(gone, gone_at, strict=True)]
    File.objects.bulk_create(records, batch_size=1000)
    for org in (tenant_a.org, tenant_b.org):
        Organization.objects.filter(pk=org.pk).update(used_bytes=live_bytes(org))

    result = reconcile("--org", "org-a", "--fix")

    assert result.returncode == 0
    assert result.subjects("orphan") == unrecorded
    assert result.subjects("gone") == set(gone)
    assert {result.actions()[file_id] for file_id in gone} == {"forgotten, 3 bytes released"}
    assert result.summary["records"] == 3000 - 5 - 500 + 3
    assert result.summary["listed"] == 3000
    lists = fake_openai.calls("GET")
    assert len(lists) == 3
    assert {request.query["limit"][0] for request in lists} == {str(PAGE_SIZE)}
    # The merge matched every listed record in place: only the three gone ones were asked about alone.
    retrieves = [
        request.path.rsplit("/", 1)[1] for request in fake_openai.requests if request.path.startswith("/v1/files/")
    ]
    assert sorted(retrieves) == sorted(gone)
    org = Organization.objects.get(pk=tenant_a.org.pk)
    assert org.used_bytes == live_bytes(org) == 3 * (3000 - 5 - 500)

    again = reconcile("--org", "org-a", "--fix")

    assert (again.subjects("orphan"), again.subjects("gone")) == (unrecorded, set())


def test_it_pages_through_a_folder_of_more_than_a_thousand_objects(
    tenant_a: Tenant, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.RECONCILE_GRACE_SECONDS = 0
    store = provider_for(tenant_a.account).store  # type: ignore[attr-defined]
    ids = [mint_file_id() for _ in range(1200)]
    for file_id in ids:
        store.save(f"org-a/{file_id}", iter([b"{}\n"]), content_type="text/plain")
    unrecorded = set(ids[::120])  # ten of them
    now = timezone.now().timestamp()
    gone = [mint_file_id() for _ in range(4)]
    records = [
        record(tenant_a.account, file_id, created_at=now - 60, key=f"org-a/{file_id}")
        for file_id in [*ids, *gone]
        if file_id not in unrecorded
    ]
    File.objects.bulk_create(records, batch_size=1000)
    Organization.objects.filter(pk=tenant_a.org.pk).update(used_bytes=live_bytes(tenant_a.org))
    opened: list[str] = []
    open_object = FolderStore.open

    def counting_open(self: FolderStore, key: str) -> Any:
        opened.append(key.rsplit("/", 1)[1])
        return open_object(self, key)

    monkeypatch.setattr(FolderStore, "open", counting_open)

    result = reconcile("--fix")

    assert result.returncode == 0
    assert result.subjects("orphan") == unrecorded
    assert {result.actions()[file_id] for file_id in unrecorded} == {"deleted"}
    assert result.subjects("gone") == set(gone)
    assert result.summary["listed"] == 1200
    assert result.summary["records"] == 1200 - 10 + 4 > 2 * BATCH_SIZE
    assert sorted(opened) == sorted(gone)  # the listed ones were matched in place
    assert sorted(item.key for item in store.iter_objects("org-a/")) == sorted(
        f"org-a/{file_id}" for file_id in ids if file_id not in unrecorded
    )
    assert reconcile("--fix").findings == []


def test_it_deletes_no_object_outside_the_organisations_folder_nor_any_name_it_does_not_give(
    tenant_a: Tenant, tenant_b: Tenant, settings: Any
) -> None:
    settings.RECONCILE_GRACE_SECONDS = 0
    store = provider_for(tenant_a.account).store  # type: ignore[attr-defined]
    foreign = ["org-a/notes/readme.txt", "org-a/file-short", "org-ab/" + mint_file_id(), "elsewhere/" + mint_file_id()]
    for key in foreign:
        store.save(key, iter([b"not the gateway's\n"]), content_type="text/plain")
    of_b = storage_behind(tenant_b, tenant_b.account).upload(b"org-b's file\n")

    result = reconcile("--fix", "--org", "org-a")

    assert result.subjects("orphan") == {"notes/readme.txt", "file-short"}
    assert set(result.actions().values()) == {"left: not a name the gateway gives objects"}
    listed = {item.key for item in store.iter_objects("")}
    assert listed == {*foreign, of_b.storage_key}
