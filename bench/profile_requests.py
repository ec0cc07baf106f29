"""Per-request profile of the small requests: the SQL each one runs, its database round trips, and where
the time goes (pyinstrument). In-process: the WSGI application is called directly (no gunicorn, no
sockets to the gateway), with production's settings (DEBUG off).

For each operation (a retrieve, a small upload, a list of an organisation's files) it reports:

- the statements one request runs through Django, each with its time, and on PostgreSQL the round
  trips on the wire (libpq's trace: also BEGIN, COMMIT, savepoints and connection health checks);
- the averages over many requests (periodic work such as cache refreshes shows up there);
- pyinstrument's call tree over many requests.

PostgreSQL when ``DATABASE_URL`` is set (a database of its own, as ``bench/run.py`` uses it), else a
throw-away SQLite file under ``bench/.work/profile/``. The ``openai`` kind talks to the bench's fake
upstream, started on a free port.

    .venv/bin/python bench/profile_requests.py                        # all three, openai kind, printed
    .venv/bin/python bench/profile_requests.py retrieve --kind local --requests 2000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/filegate_bench \\
        .venv/bin/python bench/profile_requests.py --save             # -> bench/profiles/postgresql-openai-*.txt
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
WORK = BENCH_DIR / ".work" / "profile"
PROFILES = BENCH_DIR / "profiles"
sys.path[:0] = [str(ROOT), str(BENCH_DIR)]

import database  # noqa: E402
from kinds import KINDS, Kind  # noqa: E402
from processes import HOST, Service, free_port  # noqa: E402

OPERATIONS = ("retrieve", "upload", "list")
SMALL_FILE_BYTES = 4096


def configure(database_url: str) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DEBUG": "false",
            "SECRET_KEY": "bench-profile-secret-key-not-for-production-use",
            "CREDENTIAL_KEYS": Fernet.generate_key().decode(),  # required with DEBUG off
            "DATA_DIR": str(WORK / "data"),
            "ALLOWED_HOSTS": HOST,
            "DATABASE_URL": database_url,
            "LOG_LEVEL": "WARNING",
            # Per-key limits no profile reaches: the check runs (and is profiled) but refuses nothing.
            **{f"RATE_LIMIT_{scope}_PER_MINUTE": "1000000000" for scope in ("REQUESTS", "UPLOADS", "DOWNLOADS")},
        }
    )


# --- calling the WSGI application ---------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""
    content_type: str = ""


def call(app: Callable, request: Call) -> tuple[int, bytes]:
    path, _, query = request.path.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": HOST,
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": f"{HOST}:8000",
        "REMOTE_ADDR": HOST,
        "CONTENT_TYPE": request.content_type,
        "CONTENT_LENGTH": str(len(request.body)),
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in request.headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    status: list[str] = []
    response = app(environ, lambda s, h, exc_info=None: status.append(s))
    data = b"".join(response)  # small JSON answers only
    if hasattr(response, "close"):
        response.close()
    return int(status[0][:3]), data


def upload_call(headers: dict[str, str], index: int) -> Call:
    boundary = "profileboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="small-{index}.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    body += os.urandom(SMALL_FILE_BYTES) + f"\r\n--{boundary}--\r\n".encode()
    return Call("POST", "/v1/files", headers, body, f"multipart/form-data; boundary={boundary}")


# --- database work ------------------------------------------------------------------------------------


@dataclass
class DatabaseWork:
    """What requests asked of the database: Django's statements (with their time) and, on PostgreSQL,
    the messages on the wire (every statement libpq sent, and one ReadyForQuery per round trip)."""

    statements: list[tuple[str, float]] = field(default_factory=list)
    wire: list[str] = field(default_factory=list)
    round_trips: int = 0


def wire_statements(trace: str) -> tuple[list[str], int]:
    """The SQL texts a libpq trace shows the client sending, and its number of round trips."""
    statements, round_trips = [], 0
    for line in trace.splitlines():
        parts = line.split("\t", 3)
        if len(parts) < 3:
            continue
        direction, message, rest = parts[0], parts[2], parts[3].strip() if len(parts) > 3 else ""
        if direction == "B" and message == "ReadyForQuery":
            round_trips += 1
        elif direction == "F" and message == "Query":
            statements.append(rest[1:-1])
        elif direction == "F" and message == "Parse":
            text = rest.removeprefix('"" "')
            statements.append(text[: text.rfind('"')])
    return statements, round_trips


@contextmanager
def recorded() -> Iterator[DatabaseWork]:
    """Record the database work of the requests made inside the block."""
    from django.db import connection
    from django.db.backends.signals import connection_created
    from psycopg import pq

    work = DatabaseWork()

    def timed(execute: Callable, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            work.statements.append((sql, (time.perf_counter() - started) * 1e3))

    traced: list[Any] = []
    with tempfile.TemporaryFile("a+") as trace_file, ExitStack() as stack:

        def trace(dbapi_connection: Any) -> None:
            dbapi_connection.pgconn.trace(trace_file.fileno())
            dbapi_connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
            traced.append(dbapi_connection)

        def on_connect(sender: Any, connection: Any, **kwargs: Any) -> None:
            trace(connection.connection)

        if connection.vendor == "postgresql":
            # A connection opened during the block (first use, or a pool checkout) is traced too.
            connection_created.connect(on_connect)
            stack.callback(connection_created.disconnect, on_connect)
            if connection.connection is not None:
                trace(connection.connection)
        stack.enter_context(connection.execute_wrapper(timed))
        try:
            yield work
        finally:
            stack.close()
            for dbapi_connection in traced:
                if not dbapi_connection.closed:
                    dbapi_connection.pgconn.untrace()  # flushes what libpq buffered
            trace_file.seek(0)
            work.wire, work.round_trips = wire_statements(trace_file.read())


def shorten(sql: str, limit: int = 400) -> str:
    """A statement as printed: long ones (IN lists of a whole page of ids) cut, with their length."""
    return sql if len(sql) <= limit else f"{sql[:limit]} ... ({len(sql):,} characters)"


def describe_work(one: DatabaseWork, many: list[DatabaseWork], vendor: str) -> list[str]:
    lines = ["## Database work of one request", ""]
    count = len(one.statements)
    summary = f"{count} statement{'' if count == 1 else 's'} through Django"
    if vendor == "postgresql":
        summary += f", {one.round_trips} round trips on the wire"
    lines += [summary + ":", ""]
    lines += [f"{index}. [{ms:.3f} ms] {shorten(sql)}" for index, (sql, ms) in enumerate(one.statements, 1)]
    if vendor == "postgresql":
        lines += ["", "On the wire (libpq trace, values bound):", ""]
        lines += [f"{index}. {shorten(sql)}" for index, sql in enumerate(one.wire, 1)]
    else:
        lines += ["", "SQLite runs in-process: no round trips, each statement is a library call."]
    statements = statistics.mean(len(work.statements) for work in many)
    lines += ["", f"Over {len(many)} requests: {statements:.2f} statements per request on average"]
    if vendor == "postgresql":
        lines[-1] += f", {statistics.mean(work.round_trips for work in many):.2f} round trips"
    seen = {sql for sql, _ in one.statements}
    extra = sorted({sql for work in many for sql, _ in work.statements} - seen)
    if extra:
        lines += ["Statements some requests ran and the one above did not:", *(f"- {shorten(sql)}" for sql in extra)]
    return lines


# --- the world: an organisation per operation ----------------------------------------------------------


def make_org(slug: str, kind: Kind, fake: Service | None) -> dict[str, str]:
    """An organisation with a key and one account of ``kind`` (its default); the request headers."""
    from django.core.management import call_command

    call_command("create_org", slug, stdout=io.StringIO())
    out = io.StringIO()
    call_command("create_api_key", slug, "--name", "profile", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    settings = kind.account_settings(url=fake.url if fake else "", key=f"sk-profile-{slug}")
    call_command(
        "add_provider_account", slug, kind.name, "--kind", kind.name, "--default", *settings, stdout=io.StringIO()
    )
    return {"Authorization": f"Bearer {key}"}


def uploaded_ids(app: Callable, headers: dict[str, str], count: int) -> list[str]:
    ids = []
    for index in range(count):
        status, data = call(app, upload_call(headers, index))
        if status != 200:
            raise SystemExit(f"upload {index} failed: {status} {data[:300]!r}")
        ids.append(json.loads(data)["id"])
    return ids


@dataclass(frozen=True)
class Operation:
    name: str
    describe: str
    calls: Callable[[int], Call]  # the i-th request


def prepare(name: str, app: Callable, kind: Kind, fake: Service | None, files: int) -> Operation:
    headers = make_org(f"profile-{name}-{int(time.time())}", kind, fake)
    if name == "retrieve":
        (file_id,) = uploaded_ids(app, headers, 1)
        return Operation(name, f"GET /v1/files/{file_id}", lambda i: Call("GET", f"/v1/files/{file_id}", headers))
    if name == "upload":
        return Operation(
            name, f"POST /v1/files, a {SMALL_FILE_BYTES // 1024} KiB file each time", lambda i: upload_call(headers, i)
        )
    uploaded_ids(app, headers, files)
    return Operation(
        name, f"GET /v1/files, the organisation's {files:,} files", lambda i: Call("GET", "/v1/files", headers)
    )


def profile(app: Callable, operation: Operation, requests: int, vendor: str) -> str:
    from pyinstrument import Profiler

    def run(index: int) -> None:
        status, data = call(app, operation.calls(index))
        if status != 200:
            raise SystemExit(f"{operation.name} failed: {status} {data[:300]!r}")

    for index in range(30):  # warm caches, connections and the provider's HTTP pool
        run(index)
    with recorded() as one:
        run(30)
    many = []
    for index in range(50):
        with recorded() as work:
            run(31 + index)
        many.append(work)
    started = time.perf_counter()
    for index in range(requests):
        run(100 + index)
    plain = (time.perf_counter() - started) / requests * 1e3
    profiler = Profiler(interval=0.0002)
    with profiler:
        for index in range(requests):
            run(100 + requests + index)
    profiled = profiler.last_session.duration / requests * 1e3 if profiler.last_session else float("nan")
    lines = [
        f"{operation.describe}: {plain:.3f} ms per request without the profiler, {profiled:.3f} ms under it "
        f"({requests} requests each, in-process)",
        "",
        *describe_work(one, many, vendor),
        "",
        f"## Where the time goes (pyinstrument, {requests} requests)",
        "",
        profiler.output_text(unicode=True, color=False, show_all=os.environ.get("PROFILE_SHOW_ALL") == "1"),
    ]
    # Reports are kept in the repository: paths relative to it, never this machine's.
    return "\n".join(lines).replace(f"{ROOT}{os.sep}", "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("operations", nargs="*", metavar="OPERATION", help=f"{', '.join(OPERATIONS)} (default: all)")
    parser.add_argument("--kind", choices=sorted(KINDS), default="openai")
    parser.add_argument("--requests", type=int, default=500, help="requests profiled per operation")
    parser.add_argument("--files", type=int, default=1000, help="files in the listed organisation")
    parser.add_argument("--save", action="store_true", help="write each report to bench/profiles/ as well")
    args = parser.parse_args()
    if unknown := set(args.operations) - set(OPERATIONS):
        parser.error(f"unknown operation {', '.join(sorted(unknown))}; expected {', '.join(OPERATIONS)}")
    kind = KINDS[args.kind]
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    db = database.prepare(os.environ.get("DATABASE_URL"), WORK / "db.sqlite3")
    configure(db.url)
    fake = None
    try:
        if not kind.stores_bytes:
            port = free_port()
            fake = Service(
                "profile-upstream",
                [sys.executable, str(BENCH_DIR / kind.fake), "--port", str(port)],
                env=dict(os.environ),
                port=port,
                cwd=ROOT,
                logs=WORK,
            )
            fake.wait_ready("/healthz")
        report(args, kind, fake)
    finally:
        if fake is not None:
            fake.stop()
        if db.is_postgres:
            from django.db import connections

            connections.close_all()
            if db.created:
                database.drop(db)
    return 0


def report(args: argparse.Namespace, kind: Kind, fake: Service | None) -> None:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.core.wsgi import get_wsgi_application
    from django.db import connection

    app = get_wsgi_application()
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version" if connection.vendor == "postgresql" else "SELECT sqlite_version()")
        version = cursor.fetchone()[0]
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    pool = connection.settings_dict["OPTIONS"].get("pool", False)
    setup = f"{connection.display_name} {version}, kind `{kind.name}`, psycopg pool: {pool!r}; {when}"
    for name in args.operations or OPERATIONS:
        text = f"# Profile: {name} ({setup})\n\n" + profile(
            app, prepare(name, app, kind, fake, args.files), args.requests, connection.vendor
        )
        print(text)
        if args.save:
            PROFILES.mkdir(exist_ok=True)
            path = PROFILES / f"{connection.vendor}-{kind.name}-{name}.txt"
            path.write_text(text)
            print(f"written to {path.relative_to(ROOT)}\n")


if __name__ == "__main__":
    sys.exit(main())
