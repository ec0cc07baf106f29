"""Database connection hygiene around long transfers."""

from __future__ import annotations

from django.db import connection


def release_connection() -> None:
    """Give the request's database connection back to the pool before bytes start moving.

    With PostgreSQL's pool (production), a request holds its connection until it ends; an upload
    or download may take minutes, and under the gevent worker hundreds of them run at once. The
    next query takes a connection from the pool again. Without a pool (SQLite, or persistent
    connections) closing would only cost a reconnect, so nothing is done.
    """
    if connection.settings_dict.get("OPTIONS", {}).get("pool") and not connection.in_atomic_block:
        connection.close()
