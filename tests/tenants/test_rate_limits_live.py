"""Rate limits on live servers: what the official ``openai`` SDK sees, and one limit held by several
processes (a gunicorn with gevent workers beside the test's own server) sharing one database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from django.db import connection

from tenants import ratelimits
from tenants.models import Organization, RateLimitCounter
from tests.conftest import Tenant, make_tenant, wait_for_a_fresh_minute
from tests.fakes import FakeProvider

pytestmark = pytest.mark.django_db(transaction=True)


def sdk(live_server: Any, key: str, *, max_retries: int = 0, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=key, max_retries=max_retries, timeout=30, **options)


def test_the_sdk_raises_a_rate_limit_error_told_apart_from_the_providers(
    live_server: Any, tenant_a: Tenant, fake_account_a: Any, fresh_minute: None
) -> None:
    Organization.objects.filter(pk=tenant_a.org.pk).update(uploads_per_minute=1)
    FakeProvider.fail_on["list"] = "rate_limited"
    with sdk(live_server, tenant_a.key) as client:
        client.files.create(file=("a.txt", b"a"), purpose="assistants")
        with pytest.raises(openai.RateLimitError) as ours:
            client.files.create(file=("b.txt", b"b"), purpose="assistants")
        with pytest.raises(openai.RateLimitError) as providers:
            client.files.list(extra_headers={"X-Provider-Account": "fake"})
    assert (ours.value.status_code, ours.value.type, ours.value.code) == (
        429,
        "rate_limit_error",
        "api_key_rate_limit_exceeded",
    )
    assert "1 uploads per minute" in ours.value.message
    assert 1 <= int(ours.value.response.headers["retry-after"]) <= 60
    assert (providers.value.type, providers.value.code) == ("rate_limit_error", "rate_limit_exceeded")
    assert providers.value.response.headers["retry-after"] == "7"


def test_the_sdks_own_retry_waits_as_told_and_gets_through(
    live_server: Any, tenant_a: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two-second "minutes", so that the retry the SDK makes by default can be watched.
    monkeypatch.setattr(ratelimits, "WINDOW_SECONDS", 2)
    Organization.objects.filter(pk=tenant_a.org.pk).update(uploads_per_minute=1)
    seen: list[tuple[float, int, str | None]] = []

    def record(response: httpx.Response) -> None:
        seen.append((time.monotonic(), response.status_code, response.headers.get("retry-after-ms")))

    wait_for_a_fresh_minute(1.5)
    hooks = {"response": [record]}
    with (
        httpx.Client(event_hooks=hooks) as http,
        sdk(live_server, tenant_a.key, max_retries=2, http_client=http) as client,
    ):
        client.files.create(file=("a.txt", b"a"), purpose="assistants")
        second = client.files.create(file=("b.txt", b"b"), purpose="assistants")
    assert second.filename == "b.txt"
    assert [status for _, status, _ in seen] == [200, 429, 200]  # one retry was enough: Retry-After was honest
    (refused_at, _, wait_ms), (retried_at, _, _) = seen[1], seen[2]
    assert wait_ms is not None
    assert 0 < int(wait_ms) <= 2000
    assert retried_at - refused_at >= int(wait_ms) / 1000 - 0.01


# Several processes, one database


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    """The URL of the database this test runs on (pytest-django's test database)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def gunicorn(settings: Any) -> Iterator[str]:
    """The production server (gunicorn, two gevent workers) on this test's database; yields its URL."""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "DATA_DIR": str(settings.DATA_DIR),
        "RATE_LIMIT_LEASE_DIVISOR": str(settings.RATE_LIMIT_LEASE_DIVISOR),
        "LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "gunicorn", "config.wsgi", "-k", "gevent", "--workers", "2", "--reuse-port"]
    server = subprocess.Popen(
        [*command, "--bind", f"127.0.0.1:{port}", "--log-level", "warning"], cwd=settings.BASE_DIR, env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, "gunicorn exited"
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


LIMIT = 200
DIVISOR = 10  # leases of 20
PROCESSES = 3  # the test's server and gunicorn's two workers


def test_processes_sharing_one_database_hold_one_limit(live_server: Any, settings: Any, request: Any) -> None:
    settings.RATE_LIMIT_LEASE_DIVISOR = DIVISOR
    tenant = make_tenant("shared")
    Organization.objects.filter(pk=tenant.org.pk).update(requests_per_minute=LIMIT)
    servers = [live_server.url, request.getfixturevalue("gunicorn")]
    wait_for_a_fresh_minute(30)

    outcomes: Counter[tuple[str, int, str | None]] = Counter()
    lock = threading.Lock()

    def hammer(n: int) -> None:
        for attempt in range(2 * LIMIT // 16):
            server = servers[(n + attempt) % 2]
            # A connection per request, so gunicorn's kernel-balanced workers both take some.
            response = httpx.get(f"{server}/v1/files", headers={"Authorization": f"Bearer {tenant.key}"}, timeout=30)
            code = response.json()["error"]["code"] if response.status_code != 200 else None
            with lock:
                outcomes[(server, response.status_code, code)] += 1

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    admitted = {server: outcomes[(server, 200, None)] for server in servers}
    refused = sum(
        count for (_, status, code), count in outcomes.items() if (status, code) == (429, "api_key_rate_limit_exceeded")
    )
    assert sum(outcomes.values()) == 2 * LIMIT
    assert sum(admitted.values()) + refused == 2 * LIMIT  # nothing but 200s and our 429s
    assert all(admitted.values()), admitted  # both servers let requests through...
    # ...and together never more than the limit, refusing early by at most (processes - 1) x lease.
    lease = LIMIT // DIVISOR
    assert LIMIT - (PROCESSES - 1) * lease <= sum(admitted.values()) <= LIMIT
    assert RateLimitCounter.objects.get(api_key=tenant.api_key).granted == LIMIT
