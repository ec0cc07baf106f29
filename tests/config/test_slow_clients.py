"""Clients that stall cannot take the service down, as the README deploys it.

gunicorn is started with the README's own command line (gevent workers) on the test database.
Dozens of authenticated uploads then send their headers and the start of the file and stall, many
more than the old deployment had threads (4 workers x 2), and unauthenticated connections send half
their headers and stall. Meanwhile ``/healthz``, an authenticated list and another upload must
answer within a couple of seconds; once ``CLIENT_IDLE_TIMEOUT_SECONDS`` has passed, every stalled
upload is abandoned with its quota reservation released and nothing stored.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.db import connection

from files_api.models import AuditEvent, File
from tenants.models import Organization, QuotaReservation
from tests.conftest import Tenant, make_tenant

STALLED_UPLOADS = 48  # six times the threads of the previous deployment (4 workers x 2)
STALLED_HEADERS = 48
IDLE_SECONDS = 3
BOUNDARY = "stall-boundary"


def readme_gunicorn_command() -> list[str]:
    """The gunicorn command line of the README's deployment section."""
    readme = (Path(settings.BASE_DIR) / "README.md").read_text()
    deploy = readme.split("\n## Deploy", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    [line] = [line for line in deploy.replace("\\\n", " ").splitlines() if "gunicorn" in line]
    return shlex.split(line)


def database_url() -> str:
    database = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{database['NAME']}"
    user = database["USER"] or "postgres"
    password = f":{database['PASSWORD']}" if database["PASSWORD"] else ""
    return f"postgres://{user}{password}@{database['HOST']}:{database['PORT'] or 5432}/{database['NAME']}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gateway(transactional_db: Any, tmp_path: Path) -> Iterator[str]:
    """gunicorn as the README runs it, on a free port and the test database. Yields its URL."""
    port = free_port()
    command = readme_gunicorn_command()
    command[0] = str(Path(sys.executable).with_name("gunicorn"))
    command[command.index("--bind") + 1] = f"127.0.0.1:{port}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "false",
        "DATABASE_URL": database_url(),
        "DATA_DIR": str(settings.DATA_DIR),
        "ALLOWED_HOSTS": "127.0.0.1",
        "CLIENT_IDLE_TIMEOUT_SECONDS": str(IDLE_SECONDS),
        "API_KEY_CACHE_SECONDS": "0",
        # PostgreSQL: a pool far smaller than the stalled uploads (12 a worker): each must have given
        # its connection back while it waits for its body, or the list and the upload below would wait.
        "DATABASE_POOL_SIZE": "4",
    }
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


def stalled_upload(url: str, key: str) -> socket.socket:
    """An upload that sends its headers, its purpose and 64 KiB of a 10 MiB file, then nothing."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="stalled.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + os.urandom(64 * 1024)
    request = (
        f"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {10 * 1024 * 1024}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    sock.sendall(request + head)
    return sock


def half_headers(url: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    sock.sendall(b"GET /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthoriz")
    return sock


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def wait_until(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.2)


def test_stalled_clients_leave_the_service_answering_and_give_everything_back(gateway: str) -> None:
    tenant: Tenant = make_tenant("stall")
    headers = {"Authorization": f"Bearer {tenant.key}"}
    stalled = [stalled_upload(gateway, tenant.key) for _ in range(STALLED_UPLOADS)]
    stalled += [half_headers(gateway) for _ in range(STALLED_HEADERS)]
    try:
        # Every stalled upload got as far as reserving its quota: they are really in flight.
        wait_until(lambda: QuotaReservation.objects.filter(organization=tenant.org).count() == STALLED_UPLOADS, 10)

        health, health_seconds = timed(lambda: httpx.get(f"{gateway}/healthz", timeout=5))
        listed, list_seconds = timed(lambda: httpx.get(f"{gateway}/v1/files", headers=headers, timeout=5))
        uploaded, upload_seconds = timed(
            lambda: httpx.post(
                f"{gateway}/v1/files",
                headers=headers,
                data={"purpose": "assistants"},
                files={"file": ("ok.txt", b"still served")},
                timeout=5,
            )
        )
        assert (health.status_code, listed.status_code, uploaded.status_code) == (200, 200, 200), uploaded.text
        assert max(health_seconds, list_seconds, upload_seconds) < 2.0

        # After the idle time every stalled upload is answered 408 and gives its reservation back.
        wait_until(lambda: not QuotaReservation.objects.filter(organization=tenant.org).exists(), IDLE_SECONDS + 15)
        for sock in stalled[:STALLED_UPLOADS]:
            sock.settimeout(5)
            assert sock.recv(64).startswith(b"HTTP/1.1 408 ")
    finally:
        for sock in stalled:
            sock.close()

    org = Organization.objects.get(pk=tenant.org.pk)
    [kept] = File.objects.filter(organization=org)
    assert (org.reserved_bytes, org.used_bytes) == (0, kept.bytes)
    timeouts = AuditEvent.objects.filter(organization=org, action=AuditEvent.Action.CREATE, outcome="request_timeout")
    assert timeouts.count() == STALLED_UPLOADS
    stored = [path for path in (Path(settings.DATA_DIR) / "files").rglob("*") if path.is_file()]
    assert len(stored) == 1  # the one finished upload; nothing of the stalled ones
