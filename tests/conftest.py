"""The named world every test starts from: two organisations, each with a key and a client.

``org_a`` and ``org_b`` each have a default ``local`` account (files under a per-test folder) and
an API key; ``client_a`` / ``client_b`` are DRF API clients authenticated with those keys.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from providers import registry
from tenants import ratelimits
from tenants.models import ApiKey, Organization, ProviderAccount
from tenants.services import (
    api_key_cache_clear,
    api_key_create,
    organization_create,
    provider_account_create,
    provider_account_forget,
)
from tests.fakes import FakeProvider

# Fake upstream servers (OpenAI, Azure OpenAI, Anthropic, Groq), the real object stores (moto's S3,
# the GCS emulator), accounts of the storage-backed kinds on them, an account of every kind with the
# books a fault must leave balanced, and their fixtures.
pytest_plugins = [
    "tests.upstreams",
    "tests.upstream_anthropic",
    "tests.upstream_groq",
    "tests.object_stores",
    "tests.storage_kinds",
    "tests.faults",
]

# The SDKs must never find real credentials or config on this machine.
for _name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
    os.environ[_name] = "/nonexistent/filegate-tests"
os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = ""
for _name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GROQ_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
    os.environ.pop(_name, None)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(tmp_path_factory: pytest.TempPathFactory) -> None:
    """SQLite tests run on a database file, as the embedded default does, not on Django's shared
    in-memory database: there concurrent requests (live-server races) fail at once with "table is
    locked" instead of waiting for the write lock like a real SQLite file in WAL mode."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("sqlite") / "test.sqlite3")


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    if connection.vendor == "postgresql":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: run with DATABASE_URL=postgres://...")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def wait_for_a_fresh_minute(needed: float) -> None:
    """Sleep into the next minute unless this one has ``needed`` seconds left: a test that counts requests
    or queries in real time must not straddle two minutes, each of which starts a new rate-limit count
    (``tenants.ratelimits``: the first request of a minute takes a lease from the database)."""
    left = ratelimits.seconds_left(time.time())
    if left < needed:
        time.sleep(left + 0.05)


@pytest.fixture
def fresh_minute() -> None:
    wait_for_a_fresh_minute(5)


@dataclass
class Tenant:
    org: Organization
    key: str
    api_key: ApiKey
    account: ProviderAccount
    client: APIClient


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, settings: Any) -> Path:
    settings.DATA_DIR = tmp_path / "data"
    # Real password hashing costs ~0.3 s per admin login; tests check who may log in, not the hash.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    registry.clear_cache()
    api_key_cache_clear()
    provider_account_forget()
    ratelimits.leases.clear()
    return settings.DATA_DIR


def make_tenant(slug: str, **limits: Any) -> Tenant:
    org = organization_create(slug=slug, name=slug.upper(), **limits)
    account = provider_account_create(organization=org, name="disk", kind="local", config={}, is_default=True)
    issued = api_key_create(organization=org, name=f"{slug} key")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.plaintext}")
    return Tenant(org=org, key=issued.plaintext, api_key=issued.api_key, account=account, client=client)


@pytest.fixture
def tenant_a(db: Any) -> Tenant:
    return make_tenant("org-a")


@pytest.fixture
def tenant_b(db: Any) -> Tenant:
    return make_tenant("org-b")


@pytest.fixture
def org_a(tenant_a: Tenant) -> Organization:
    return tenant_a.org


@pytest.fixture
def org_b(tenant_b: Tenant) -> Organization:
    return tenant_b.org


@pytest.fixture
def client_a(tenant_a: Tenant) -> APIClient:
    return tenant_a.client


@pytest.fixture
def client_b(tenant_b: Tenant) -> APIClient:
    return tenant_b.client


@pytest.fixture
def org_admin(django_user_model: Any, tenant_a: Tenant, tenant_b: Tenant) -> Any:
    """alice, staff and an admin of org-a only (carol administers org-b)."""
    from tenants.services import org_admin_add

    alice = django_user_model.objects.create_user(username="alice", password="alice-pw-1234")
    org_admin_add(organization=tenant_a.org, user=alice)
    carol = django_user_model.objects.create_user(username="carol", password="carol-pw-1234")
    org_admin_add(organization=tenant_b.org, user=carol)
    return alice


@pytest.fixture
def org_admin_client(org_admin: Any) -> Any:
    from django.test import Client

    client = Client()
    client.force_login(org_admin)
    return client


@pytest.fixture
def fake_provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeProvider]]:
    """Registers the in-memory ``fake`` kind for the test's duration."""
    monkeypatch.setitem(registry.PROVIDERS, "fake", "tests.fakes.FakeProvider")
    registry.clear_cache()
    FakeProvider.reset()
    yield FakeProvider
    FakeProvider.reset()
    registry._classes.pop("fake", None)
    registry.clear_cache()


@pytest.fixture
def fake_account_a(tenant_a: Tenant, fake_provider: type[FakeProvider]) -> ProviderAccount:
    return provider_account_create(
        organization=tenant_a.org, name="fake", kind="fake", config={"api_key": "sk-fake"}, is_default=False
    )


def upload(
    client: APIClient,
    content: bytes = b"hello",
    *,
    filename: str = "hello.txt",
    purpose: str | None = "assistants",
    account: str | None = None,
    **fields: Any,
) -> Any:
    """POST one file through the test client as the SDK would (purpose first, then the file)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    data: dict[str, Any] = {}
    if purpose is not None:
        data["purpose"] = purpose
    data.update(fields)
    data["file"] = SimpleUploadedFile(filename, content)
    headers = {"HTTP_X_PROVIDER_ACCOUNT": account} if account else {}
    return client.post("/v1/files", data, format="multipart", **headers)


def batch_line(custom_id: str = "req-1", **overrides: Any) -> bytes:
    import json

    line = {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    }
    line.update(overrides)
    return json.dumps(line).encode() + b"\n"


def batch_file(size: int) -> bytes:
    """A valid batch file of at least ``size`` bytes (lines of about 140 bytes, unique ids)."""
    lines, total = [], 0
    while total < size:
        line = batch_line(f"req-{len(lines)}", body={"model": "m", "input": secrets.token_hex(32)})
        lines.append(line)
        total += len(line)
    return b"".join(lines)


BOUNDARY = "filegate-test-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def multipart_body(*parts: tuple[str, str | bytes, str | None], boundary: str = BOUNDARY) -> bytes:
    """A multipart/form-data body built by hand, parts in the given order: ``(name, value, filename)``.

    ``filename`` None makes a plain field. Test clients sanitise file names and fix the part order;
    this does neither, so tests can send what a hostile or unusual client would.
    """
    body = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if filename is not None:
            head += "Content-Type: application/octet-stream\r\n"
        data = value.encode() if isinstance(value, str) else value
        body += head.encode() + b"\r\n" + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def post_raw(client: APIClient, body: bytes, content_type: str = MULTIPART, **extra: Any) -> Any:
    """POST ``body`` to /v1/files exactly as given."""
    return client.generic("POST", "/v1/files", body, content_type=content_type, **extra)


def assert_upload_left_nothing(tenant: Tenant) -> None:
    """A rejected upload leaves no record, no stored object, no charged or held bytes, and one failure event."""
    from django.conf import settings

    from files_api.models import AuditEvent, File

    org = Organization.objects.get(pk=tenant.org.pk)
    assert not File.objects.filter(organization=org).exists()
    stored = [path for path in (Path(settings.DATA_DIR) / "files").rglob("*") if path.is_file()]
    assert stored == []
    assert (org.used_bytes, org.reserved_bytes) == (0, 0)
    assert not org.reservations.exists()
    events = AuditEvent.objects.filter(organization=org, action=AuditEvent.Action.CREATE)
    assert [event.outcome != "success" for event in events] == [True]
