"""Settings come from the environment through small helpers that refuse malformed values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from config.settings import env_bool, env_int, env_list, env_secret, env_str

ENV_VARS = ("DEBUG", "SECRET_KEY", "SECRET_KEY_FILE", "DATABASE_URL", "DATABASE_URL_FILE", "DATABASE_CONN_MAX_AGE")

PRINT_SETTINGS = """
import json
import django
from django.conf import settings
django.setup()
database = settings.DATABASES["default"]
print(json.dumps({
    "DEBUG": settings.DEBUG,
    "ENGINE": database["ENGINE"],
    "NAME": str(database["NAME"]),
    "USER": database.get("USER", ""),
    "PASSWORD": database.get("PASSWORD", ""),
    "HOST": database.get("HOST", ""),
    "PORT": database.get("PORT", ""),
    "CONN_MAX_AGE": database["CONN_MAX_AGE"],
    "OPTIONS": database.get("OPTIONS", {}),
}))
"""


def start_django(**env: str) -> subprocess.CompletedProcess[str]:
    """Import the settings in a fresh interpreter with exactly these variables set."""
    clean = {name: value for name, value in os.environ.items() if name not in ENV_VARS}
    clean.update(env, DJANGO_SETTINGS_MODULE="config.settings")
    return subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS],
        cwd=settings.BASE_DIR,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_with_the_development_secret_key() -> None:
    result = start_django(DEBUG="false")
    assert result.returncode != 0
    assert "ImproperlyConfigured: Set SECRET_KEY (or SECRET_KEY_FILE)" in result.stderr


def test_production_starts_with_a_real_secret_key(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("a-real-production-secret-key-0123456789\n")
    result = start_django(DEBUG="false", SECRET_KEY_FILE=str(tmp_path / "secret"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["DEBUG"] is False


def test_a_malformed_debug_value_refuses_to_start() -> None:
    result = start_django(DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG must be true or false, not 'maybe'" in result.stderr


def test_database_url_switches_to_postgresql() -> None:
    result = start_django(DATABASE_URL="postgres://gate:pw@db.example:6543/filegate", DATABASE_POOL_SIZE="7")
    assert result.returncode == 0, result.stderr
    database = json.loads(result.stdout)
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["NAME"], database["USER"], database["PASSWORD"]) == ("filegate", "gate", "pw")
    # psycopg's pool keeps the connections: Django's persistent connections must be off with it.
    assert (database["HOST"], database["PORT"], database["CONN_MAX_AGE"]) == ("db.example", 6543, 0)
    assert database["OPTIONS"]["pool"]["max_size"] == 7


def test_without_database_url_it_runs_on_sqlite_in_the_project() -> None:
    result = start_django()
    assert result.returncode == 0, result.stderr
    database = json.loads(result.stdout)
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert database["NAME"] == str(Path(settings.BASE_DIR) / "db.sqlite3")


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    """Readers never wait for a writer: WAL, set on every new connection."""
    clean = {name: value for name, value in os.environ.items() if name not in ENV_VARS}
    clean.update(DJANGO_SETTINGS_MODULE="config.settings", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    script = (
        "import django; django.setup()\n"
        "from django.db import connection\n"
        "with connection.cursor() as cursor:\n"
        "    for pragma in ('journal_mode', 'synchronous'):\n"
        "        print(cursor.execute(f'PRAGMA {pragma}').fetchone()[0])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=settings.BASE_DIR, env=clean, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["wal", "1"]  # synchronous=NORMAL


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "on"])
def test_env_bool_reads_true(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("FILEGATE_TEST_FLAG", value)
    assert env_bool("FILEGATE_TEST_FLAG", False) is True


@pytest.mark.parametrize("value", ["0", "false", "False", "no", "off"])
def test_env_bool_reads_false(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("FILEGATE_TEST_FLAG", value)
    assert env_bool("FILEGATE_TEST_FLAG", True) is False


@pytest.mark.parametrize("value", ["maybe", "2", "tru", " yes"])
def test_env_bool_rejects_other_values(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("FILEGATE_TEST_FLAG", value)
    with pytest.raises(ImproperlyConfigured, match="FILEGATE_TEST_FLAG must be true or false"):
        env_bool("FILEGATE_TEST_FLAG", True)


@pytest.mark.parametrize("value", [None, ""])
def test_env_helpers_fall_back_to_the_default_when_unset_or_empty(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("FILEGATE_TEST_VALUE", raising=False)
    else:
        monkeypatch.setenv("FILEGATE_TEST_VALUE", value)
    assert env_bool("FILEGATE_TEST_VALUE", True) is True
    assert env_int("FILEGATE_TEST_VALUE", 7) == 7


def test_env_int_reads_an_integer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FILEGATE_TEST_SIZE", "1048576")
    assert env_int("FILEGATE_TEST_SIZE", 0) == 1048576


@pytest.mark.parametrize("value", ["10MB", "1.5", "ten"])
def test_env_int_rejects_a_non_integer(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("FILEGATE_TEST_SIZE", value)
    with pytest.raises(ImproperlyConfigured, match=f"FILEGATE_TEST_SIZE must be an integer, not '{value}'"):
        env_int("FILEGATE_TEST_SIZE", 0)


def test_env_secret_reads_the_file_named_by_name_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    monkeypatch.setenv("FILEGATE_TEST_TOKEN", "from-env")
    monkeypatch.setenv("FILEGATE_TEST_TOKEN_FILE", str(tmp_path / "token"))
    assert env_secret("FILEGATE_TEST_TOKEN", "default") == "s3cret"


def test_env_secret_reads_the_variable_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FILEGATE_TEST_TOKEN_FILE", raising=False)
    monkeypatch.setenv("FILEGATE_TEST_TOKEN", "from-env")
    assert env_secret("FILEGATE_TEST_TOKEN", "default") == "from-env"


def test_env_secret_refuses_an_unreadable_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FILEGATE_TEST_TOKEN_FILE", "/nonexistent/filegate/token")
    with pytest.raises(ImproperlyConfigured, match="FILEGATE_TEST_TOKEN_FILE: cannot read /nonexistent/filegate/token"):
        env_secret("FILEGATE_TEST_TOKEN", "default")


def test_env_list_splits_on_commas_and_drops_blanks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FILEGATE_TEST_HOSTS", " a.example, ,b.example,")
    assert env_list("FILEGATE_TEST_HOSTS", "") == ["a.example", "b.example"]


def test_env_str_reads_the_variable_or_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FILEGATE_TEST_NAME", raising=False)
    assert env_str("FILEGATE_TEST_NAME", "fallback") == "fallback"
    monkeypatch.setenv("FILEGATE_TEST_NAME", "set")
    assert env_str("FILEGATE_TEST_NAME", "fallback") == "set"
