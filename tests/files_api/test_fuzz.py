"""Fuzzing: schemathesis against the gateway's own OpenAPI schema, over real HTTP to gunicorn.

The test starts the gateway under gunicorn with production's worker (gevent) on the test database
and runs the schemathesis CLI with ``schemathesis.toml`` against its ``/v1/openapi.json``. schemathesis tests
every operation the schema lists: boundary and type-violating values (coverage phase), random valid
and invalid requests (fuzzing), and chains along the links it infers from the schema (upload, then
list, retrieve, download and delete that file: stateful). Every answer must pass the checks: no 5xx;
status code, content type and body as documented; the key enforced; no use of a deleted file.

The organisation has two accounts, ``disk`` (kind ``local``) and ``openai`` (pass-through to the
fake OpenAI server), and the run is made twice, once with each as the default: requests that name
no account (and the chains that follow them) then exercise that kind. Afterwards uploads, downloads
and deletes must have succeeded on the default account, and the books must still be right: the
bytes charged are the live files', nothing is held, every live record has its stored object or
upstream file, and nothing else is stored.

A fixed seed makes every run send the same requests. ``FUZZ_EXAMPLES`` and ``FUZZ_SEED`` widen a
local run (see the README).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from django.conf import settings
from django.db import connection

from files_api.models import AuditEvent, File
from tenants.models import Organization
from tenants.services import provider_account_save
from tests.conftest import Tenant
from tests.upstreams import FakeFilesServer, add_upstream_account

pytestmark = pytest.mark.django_db(transaction=True)  # the server process must see the test's rows

CONFIG = Path(__file__).with_name("schemathesis.toml")
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "50"))
SEED = int(os.environ.get("FUZZ_SEED", "13"))
PHASES = ("coverage", "fuzzing", "stateful")  # the fourth, "examples", has none to run in the schema
EXERCISED = (AuditEvent.Action.CREATE, AuditEvent.Action.CONTENT, AuditEvent.Action.DELETE)


@dataclass(frozen=True)
class Gateway:
    url: str
    log: Path  # gunicorn's output, Django's error log included


def database_url() -> str:
    """The test database, for a process that is not this one."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{quote(db['USER'], safe='')}{password}@{db['HOST'] or 'localhost'}{port}/{db['NAME']}"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    """The gateway under gunicorn on a free port, stopped by its PID afterwards.

    The listening socket is made here and handed over (``fd://``), so no one can take the port in
    between, and the first request waits in its backlog until the worker is up.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    served = Gateway(url=f"http://127.0.0.1:{listener.getsockname()[1]}", log=tmp_path / "gunicorn.log")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "DATA_DIR": str(settings.DATA_DIR),
        # Far above what a run sends, yet counted: a 429 at a clock minute's end would make the
        # outcome depend on the machine's speed.
        **{f"RATE_LIMIT_{scope}_PER_MINUTE": "1000000" for scope in ("REQUESTS", "UPLOADS", "DOWNLOADS")},
    }
    with listener, open(served.log, "wb") as log:
        process = subprocess.Popen(
            [GUNICORN, "config.wsgi", "-k", "gevent", "--bind", f"fd://{listener.fileno()}"],
            cwd=settings.BASE_DIR,
            env=env,
            pass_fds=[listener.fileno()],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        try:
            ready = httpx.get(f"{served.url}/healthz", timeout=30).status_code == 200
        except httpx.HTTPError:
            ready = False
        assert ready, served.log.read_text()
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_schemathesis(url: str, key: str, report: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run", f"{url}/v1/openapi.json"]
    command += ["--seed", str(SEED), "--max-examples", str(EXAMPLES)]
    command += ["--report", "json", "--report-json-path", str(report)]
    return subprocess.run(
        command,
        cwd=report.parent,  # whatever schemathesis or Hypothesis keep on disk stays out of the repository
        env={**os.environ, "FILEGATE_FUZZ_KEY": key},
        capture_output=True,
        text=True,
        timeout=120 + 2 * EXAMPLES,  # a guard against a hang, not a budget
    )


def successes(tenant: Tenant) -> Counter[tuple[str, str]]:
    """Successful operations by (action, account name), from the audit trail."""
    events = AuditEvent.objects.filter(organization=tenant.org, outcome="success")
    return Counter(events.values_list("action", "provider_account"))


def assert_books_balance(tenant: Tenant, upstream: FakeFilesServer) -> None:
    org = Organization.objects.get(pk=tenant.org.pk)
    live = File.objects.filter(organization=org, deleted_at__isnull=True)
    assert (org.used_bytes, org.reserved_bytes) == (sum(live.values_list("bytes", flat=True)), 0)
    assert not org.reservations.exists()
    root = Path(settings.DATA_DIR) / "files"
    stored = {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}
    assert stored == set(live.filter(provider_account__kind="local").values_list("storage_key", flat=True))
    assert set(upstream.files) == set(live.filter(provider_account__kind="openai").values_list("public_id", flat=True))


@pytest.mark.parametrize("default", ["disk", "openai"])
def test_every_operation_survives_fuzzing(
    default: str, gateway: Gateway, tenant_a: Tenant, fake_openai: FakeFilesServer
) -> None:
    openai = add_upstream_account(tenant_a, fake_openai)
    if default == "openai":
        openai.is_default = True
        provider_account_save(openai)
    report_path = gateway.log.with_name("schemathesis.json")
    result = run_schemathesis(gateway.url, tenant_a.key, report_path)
    print(result.stdout)  # the run's summary, shown with -rP or -s
    gateway_log = gateway.log.read_text()[-20000:]
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n--- gateway log ---\n{gateway_log}"

    report = json.loads(report_path.read_text())
    assert report["operations"]["tested"] == report["operations"]["total"] >= 5
    assert {phase: report["phases"][phase]["status"] for phase in PHASES} == dict.fromkeys(PHASES, "success")
    done = successes(tenant_a)
    for action in EXERCISED:
        assert done[(action, default)] > 0, (action, done)
    assert_books_balance(tenant_a, fake_openai)


def test_a_request_line_too_long_for_gunicorn_is_its_documented_414(gateway: Gateway, tenant_a: Tenant) -> None:
    # The fuzz found it with 3,000 examples: an `after` of ~1,000 unicode characters, percent-encoded.
    schema = httpx.get(f"{gateway.url}/v1/openapi.json").json()
    documented = schema["paths"]["/v1/files"]["get"]["responses"]["414"]["content"]
    headers = {"Authorization": f"Bearer {tenant_a.key}"}
    response = httpx.get(f"{gateway.url}/v1/files", params={"after": "é" * 1000}, headers=headers)
    assert response.status_code == 414
    assert response.headers["Content-Type"].partition(";")[0] in documented
