"""Database connection hygiene around long transfers."""

from __future__ import annotations

from django.db import connection

# Transfers up to this size take moments: giving the connection back and taking one again would cost
# more than holding it.
LONG_TRANSFER_BYTES = 8 * 1024 * 1024


def release_connection(nbytes: int | None) -> None:
    """Give the request's database connection back to the pool before ``nbytes`` (``None``: an
    unknown number) start moving, unless that is a short transfer.

    With PostgreSQL's pool (production), a request holds its connection until it ends; an upload
    or download may take minutes, and under the gevent worker hundreds of them run at once. The
    next query takes a connection from the pool again. Without a pool (SQLite, or persistent
    connections) closing would only cost a reconnect, so nothing is done.
    """
    if nbytes is not None and nbytes <= LONG_TRANSFER_BYTES:
        return
    if connection.settings_dict.get("OPTIONS", {}).get("pool") and not connection.in_atomic_block:
        connection.close()
