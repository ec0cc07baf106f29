"""config.postgresql: a reused connection is health-checked only once it has sat idle."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.db import close_old_connections, connections

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch, settings: Any) -> list[bool]:
    """The health checks the default connection runs (each one a SELECT 1 round trip)."""
    settings.DATABASE_HEALTH_CHECK_IDLE_SECONDS = 1
    connection = connections["default"]
    assert connection.health_check_enabled or connection.connection is None
    made: list[bool] = []
    is_usable = connection.is_usable

    def counted() -> bool:
        made.append(usable := is_usable())
        return usable

    monkeypatch.setattr(connection, "is_usable", counted)
    return made


def query(sql: str = "SELECT 1") -> Any:
    with connections["default"].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def next_request() -> None:
    """What Django does between two requests on the same thread (request_finished, request_started)."""
    close_old_connections()
    close_old_connections()


def test_a_connection_that_just_answered_is_not_checked_again(checks: list[bool]) -> None:
    query()
    for _ in range(3):
        next_request()
        query()
    assert checks == []


def test_a_connection_idle_for_longer_is_checked_before_its_next_query(checks: list[bool]) -> None:
    query()
    next_request()
    connections["default"].answered_at -= 2
    query()
    assert checks == [True]


def test_a_connection_broken_while_idle_is_replaced_before_a_request_uses_it(checks: list[bool]) -> None:
    pid = query("SELECT pg_backend_pid()")
    params = connections["default"].get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    next_request()
    connections["default"].answered_at -= 2
    assert query("SELECT pg_backend_pid()") != pid  # no error: the check found it broken and reconnected
    assert checks == [False]


def test_zero_checks_before_every_request(checks: list[bool], settings: Any) -> None:
    settings.DATABASE_HEALTH_CHECK_IDLE_SECONDS = 0
    query()
    next_request()
    query()
    assert checks == [True]
