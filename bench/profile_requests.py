"""Profile small requests in-process (no gunicorn, no sockets) with pyinstrument.

Builds a throw-away SQLite world under ``bench/.work/profile/`` with the production settings (DEBUG
off), uploads one small file through the WSGI application, then runs N retrieves (or lists) through
the same WSGI callable under the profiler and prints where the time goes.

    .venv/bin/python bench/profile_requests.py retrieve --requests 2000
    .venv/bin/python bench/profile_requests.py list --requests 200 --files 10000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work" / "profile"
sys.path.insert(0, str(ROOT))


def configure() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DEBUG": "false",
            "SECRET_KEY": "bench-profile-secret-key-not-for-production-use",
            "CREDENTIAL_KEYS": Fernet.generate_key().decode(),  # required with DEBUG off
            "DATA_DIR": str(WORK / "data"),
            "ALLOWED_HOSTS": "127.0.0.1",
            "DATABASE_URL": f"sqlite:///{WORK / 'db.sqlite3'}",
            "LOG_LEVEL": "WARNING",
            # Thousands of requests a minute from one key: limits it never reaches (the check still runs).
            **{f"RATE_LIMIT_{scope}_PER_MINUTE": "1000000000" for scope in ("REQUESTS", "UPLOADS", "DOWNLOADS")},
        }
    )


def call(app, method: str, path: str, *, headers: dict[str, str], body: bytes = b"", content_type: str = ""):
    path, _, query = path.partition("?")
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    status: list[str] = []
    response = app(environ, lambda s, h, exc_info=None: status.append(s))
    data = b"".join(response)
    if hasattr(response, "close"):
        response.close()
    return int(status[0][:3]), data


def upload_hello(app, *, headers: dict[str, str]) -> str:
    """Upload a five-byte file through the WSGI application; returns its id."""
    boundary = "profileboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nhello\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    status, data = call(
        app, "POST", "/v1/files", headers=headers, body=body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert status == 200, data
    return json.loads(data)["id"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["retrieve", "list"])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--files", type=int, default=10_000, help="records in the organisation (list)")
    parser.add_argument("--html", help="also write pyinstrument's HTML report here")
    args = parser.parse_args()
    configure()

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)

    from django.core.wsgi import get_wsgi_application
    from pyinstrument import Profiler

    from tenants.services import api_key_create, organization_create, provider_account_create

    org = organization_create(slug="profile")
    provider_account_create(organization=org, name="disk", kind="local", config={}, is_default=True)
    headers = {"Authorization": f"Bearer {api_key_create(organization=org).plaintext}"}
    app = get_wsgi_application()
    file_id = upload_hello(app, headers=headers)
    if args.what == "list":
        seed_records(org_slug="profile", count=args.files)
        path = "/v1/files?limit=100"
    else:
        path = f"/v1/files/{file_id}"

    for _ in range(50):  # warm caches and connections
        call(app, "GET", path, headers=headers)
    profiler = Profiler(interval=0.0002)
    started = time.perf_counter()
    with profiler:
        for _ in range(args.requests):
            status, data = call(app, "GET", path, headers=headers)
            assert status == 200, data
    elapsed = time.perf_counter() - started
    print(profiler.output_text(unicode=True, color=False, show_all=os.environ.get("PROFILE_SHOW_ALL") == "1"))
    if args.html:
        Path(args.html).write_text(profiler.output_html())
    plain = time.perf_counter()
    for _ in range(args.requests):
        call(app, "GET", path, headers=headers)
    plain = time.perf_counter() - plain
    print(
        f"{args.what}: {args.requests} requests, {elapsed / args.requests * 1e3:.3f} ms each under the profiler, "
        f"{plain / args.requests * 1e3:.3f} ms each without"
    )


def seed_records(*, org_slug: str, count: int) -> None:
    from bench.seed import seed

    seed(org_slug=org_slug, account_name="disk", count=count)


if __name__ == "__main__":
    main()
