"""The benchmark's database: a fresh SQLite file, or a PostgreSQL database it may create and drop.

With ``DATABASE_URL`` the run works in the PostgreSQL database the URL names. When that database does
not exist, the run creates it and drops it at the end (``make bench-pg`` works this way). When it
exists already (someone's database, or one a killed run left behind), the run uses it and, at the end,
deletes only the organisations it made (``bench/cleanup.py``), leaving everything else as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dj_database_url
import psycopg
from psycopg import sql


@dataclass(frozen=True)
class BenchDatabase:
    url: str
    is_postgres: bool
    created: bool  # this run created the database: it drops it at the end

    @property
    def name(self) -> str:
        return str(dj_database_url.parse(self.url)["NAME"])


def _server(url: str) -> psycopg.Connection:
    """A connection to the server's maintenance database, as the user the URL names."""
    parts = dj_database_url.parse(url)
    return psycopg.connect(
        dbname="postgres",
        user=parts.get("USER") or None,
        password=parts.get("PASSWORD") or None,
        host=parts.get("HOST") or None,
        port=parts.get("PORT") or None,
        autocommit=True,
        connect_timeout=10,
    )


def prepare(url: str | None, sqlite_path: Path) -> BenchDatabase:
    """The database for one run: a new SQLite file at ``sqlite_path`` without ``url``, else PostgreSQL.

    Raises ``psycopg.OperationalError`` when the PostgreSQL server cannot be reached.
    """
    if not url:
        sqlite_path.unlink(missing_ok=True)
        return BenchDatabase(url=f"sqlite:///{sqlite_path}", is_postgres=False, created=True)
    if not url.startswith(("postgres://", "postgresql://")):
        raise ValueError(f"DATABASE_URL must be a PostgreSQL URL for the benchmark, not {url.split(':', 1)[0]}")
    name = str(dj_database_url.parse(url)["NAME"])
    with _server(url) as server:
        exists = server.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
        if not exists:
            server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return BenchDatabase(url=url, is_postgres=True, created=not exists)


def drop(database: BenchDatabase) -> None:
    """Drop a PostgreSQL database the run created (its connections are closed first)."""
    with _server(database.url) as server:
        server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database.name)))
