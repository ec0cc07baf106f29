"""Settings come from the environment through small helpers that refuse malformed values."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from config.settings import env_bool, env_int, env_list, env_secret, env_str

PRINT_SETTINGS = """
import json
import django
from django.conf import settings
django.setup()
database = settings.DATABASES["default"]
print(json.dumps({
    "DEBUG": settings.DEBUG,
    "CREDENTIAL_KEYS": settings.CREDENTIAL_KEYS,
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

# Requests made through Django's test client inside a process started with the given settings:
# argv[1] is a JSON list of [method, path, headers, form data, secure]; prints status, headers and
# body of each answer.
REQUESTS = """
import json, sys
import django
django.setup()
from django.test import Client
client = Client(raise_request_exception=False)
answers = []
for method, path, headers, data, secure in json.loads(sys.argv[1]):
    response = getattr(client, method)(path, data, headers=headers, secure=secure)
    answers.append({
        "status": response.status_code,
        "headers": dict(response.items()),
        "body": response.content.decode(errors="replace"),
    })
print(json.dumps(answers))
"""


def run_python(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run Python in a fresh interpreter whose environment holds these variables and nothing else
    (no setting leaks in from the test run)."""
    clean = {"PATH": os.environ.get("PATH", ""), "DJANGO_SETTINGS_MODULE": "config.settings", **env}
    return subprocess.run(
        [sys.executable, *args],
        cwd=settings.BASE_DIR,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def start_django(**env: str) -> subprocess.CompletedProcess[str]:
    """Import the settings in a fresh interpreter with exactly these variables set."""
    return run_python("-c", PRINT_SETTINGS, **env)


Request = tuple[str, str, dict[str, str], dict[str, str], bool]


def requests_in(env: dict[str, str], *requests: Request) -> list[Any]:
    """The answers to ``requests`` from a process started with ``env``."""
    result = run_python("-c", REQUESTS, json.dumps(requests), **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def production_keys(tmp_path: Path) -> dict[str, str]:
    """A real SECRET_KEY and CREDENTIAL_KEYS, in files as the README deploys them."""
    (tmp_path / "django").write_text(secrets.token_urlsafe(64) + "\n")
    (tmp_path / "fernet").write_text(Fernet.generate_key().decode() + "\n")
    return {"SECRET_KEY_FILE": str(tmp_path / "django"), "CREDENTIAL_KEYS_FILE": str(tmp_path / "fernet")}


def test_production_refuses_to_start_with_the_development_secret_key() -> None:
    result = start_django(DEBUG="false")
    assert result.returncode != 0
    assert "ImproperlyConfigured: Set SECRET_KEY (or SECRET_KEY_FILE)" in result.stderr


def test_production_starts_with_a_real_secret_key_and_credential_keys(tmp_path: Path) -> None:
    result = start_django(DEBUG="false", **production_keys(tmp_path))
    assert result.returncode == 0, result.stderr
    started = json.loads(result.stdout)
    assert started["DEBUG"] is False
    assert started["CREDENTIAL_KEYS"] == [(tmp_path / "fernet").read_text().strip()]


def test_a_malformed_debug_value_refuses_to_start() -> None:
    result = start_django(DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG must be true or false, not 'maybe'" in result.stderr


# --- DEBUG is off unless asked for --------------------------------------------------------------


def test_debug_is_off_by_default(tmp_path: Path) -> None:
    result = start_django(**production_keys(tmp_path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["DEBUG"] is False


def test_with_no_setting_at_all_it_refuses_to_start_and_says_what_to_set() -> None:
    """Off by default means production by default: the development keys are refused."""
    result = start_django()
    assert result.returncode != 0
    assert "ImproperlyConfigured: Set SECRET_KEY (or SECRET_KEY_FILE)" in result.stderr
    assert "DEBUG=true" in result.stderr  # how to develop without keys


def test_debug_on_starts_with_no_keys_at_all() -> None:
    result = start_django(DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["DEBUG"] is True


def make_commands(target: str) -> list[str]:
    """The commands ``make TARGET`` runs (``make -n``), with the venv's set-up left out."""
    made = subprocess.run(["make", "-n", target], cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    return [line for line in made.stdout.splitlines() if "manage.py" in line or "pytest" in line]


def test_make_run_is_the_only_place_that_turns_debug_on() -> None:
    served = make_commands("run")
    assert [command.split()[0] for command in served] == ["DEBUG=true"] * 3  # migrate, setup_demo, runserver
    assert "runserver" in served[-1]
    assert not any("DEBUG" in command for command in make_commands("test"))


# An address where no database answers: the admin login's query fails, an uncaught exception.
NO_DATABASE = "postgres://nobody@127.0.0.1:1/nothing"
LEAKED = "sk-upstream-secret-in-a-header"


@pytest.mark.parametrize("debug", [None, "true"], ids=["default", "debug_on"])
def test_a_debug_page_appears_only_when_debug_is_asked_for(tmp_path: Path, debug: str | None) -> None:
    env = {**production_keys(tmp_path), "DATABASE_URL": NO_DATABASE}
    if debug is not None:
        env["DEBUG"] = debug
    login = {"username": "admin", "password": "not-the-password"}
    not_found, failed = requests_in(
        env,
        ("get", "/no-such-page", {"X-Provider-Account": LEAKED}, {}, False),
        ("post", "/admin/login/", {"X-Provider-Account": LEAKED}, login, False),
    )
    assert (not_found["status"], failed["status"]) == (404, 500)
    if debug is None:
        assert not_found["headers"]["Content-Type"] == "application/json"
        assert json.loads(not_found["body"])["error"]["code"] == "unknown_url"
        assert json.loads(failed["body"])["error"]["code"] == "internal_error"
        assert LEAKED not in not_found["body"] + failed["body"]
    else:  # the control: the same requests do show Django's debug pages, request headers included
        assert "URLconf" in not_found["body"]
        assert "Traceback" in failed["body"]
        assert LEAKED in failed["body"]


# --- CREDENTIAL_KEYS ------------------------------------------------------------------------------


@pytest.mark.parametrize("debug", [None, "false"], ids=["default", "debug_off"])
def test_production_refuses_to_start_without_credential_keys(debug: str | None) -> None:
    env = {"SECRET_KEY": secrets.token_urlsafe(64)}
    if debug is not None:
        env["DEBUG"] = debug
    result = start_django(**env)
    assert result.returncode != 0
    assert "ImproperlyConfigured: Set CREDENTIAL_KEYS (or CREDENTIAL_KEYS_FILE)" in result.stderr


def test_an_empty_credential_keys_file_is_refused(tmp_path: Path) -> None:
    keys = production_keys(tmp_path)
    (tmp_path / "fernet").write_text(" , \n")
    result = start_django(**keys)
    assert result.returncode != 0
    assert "Set CREDENTIAL_KEYS (or CREDENTIAL_KEYS_FILE)" in result.stderr


def test_development_derives_the_credential_key_from_secret_key() -> None:
    result = start_django(DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["CREDENTIAL_KEYS"] == []  # tenants.crypto derives one


# --- TLS: HSTS and the https redirect -------------------------------------------------------------


def readme_production_env(tmp_path: Path) -> dict[str, str]:
    """The variables the README's deployment section exports, with its secret files made real."""
    readme = (Path(settings.BASE_DIR) / "README.md").read_text()
    deploy = readme.split("\n## Deploy", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    exported = deploy.replace("\\\n", " ").split("\nexport ", 1)[1].split("\n", 1)[0]
    env = dict(item.split("=", 1) for item in shlex.split(exported))
    keys = production_keys(tmp_path)
    assert set(keys) <= set(env), "the README deploys with both secrets in files"
    return env | keys | {"DATA_DIR": str(tmp_path / "data")}


def test_check_deploy_reports_nothing_with_the_readmes_production_settings(tmp_path: Path) -> None:
    env = readme_production_env(tmp_path)
    result = run_python("manage.py", "check", "--deploy", "--fail-level", "DEBUG", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_the_readmes_production_settings_send_hsts_and_redirect_plain_http(tmp_path: Path) -> None:
    env = readme_production_env(tmp_path)
    host = env["ALLOWED_HOSTS"].split(",")[0]
    over_tls = {"Host": host, "X-Forwarded-Proto": "https"}
    secure, plain, health = requests_in(
        env,
        ("get", "/healthz", over_tls, {}, False),
        ("get", "/v1/files", {"Host": host}, {}, False),
        ("get", "/healthz", {"Host": host}, {}, False),
    )
    assert secure["status"] == 200
    assert secure["headers"]["Strict-Transport-Security"].startswith("max-age=31536000")
    assert (plain["status"], plain["headers"]["Location"]) == (301, f"https://{host}/v1/files")
    # A load balancer's health check over plain HTTP is answered, not redirected.
    assert health["status"] == 200


@pytest.mark.parametrize(
    ("tls", "hsts"),
    [
        ({}, None),
        ({"BEHIND_TLS_PROXY": "true"}, "max-age=31536000"),
        ({"SECURE_SSL_REDIRECT": "true"}, "max-age=31536000"),
        (
            {"BEHIND_TLS_PROXY": "true", "SECURE_HSTS_SECONDS": "600", "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true"},
            "max-age=600; includeSubDomains",
        ),
        ({"BEHIND_TLS_PROXY": "true", "SECURE_HSTS_SECONDS": "0"}, None),
    ],
    ids=["no_tls", "tls_proxy", "ssl_redirect", "tuned", "hsts_off"],
)
def test_hsts_is_sent_when_tls_is_in_use(tmp_path: Path, tls: dict[str, str], hsts: str | None) -> None:
    # A request that arrived over TLS, whether or not the settings say TLS is in use.
    [answer] = requests_in(production_keys(tmp_path) | tls, ("get", "/healthz", {}, {}, True))
    assert answer["status"] == 200
    assert answer["headers"].get("Strict-Transport-Security") == hsts


def test_database_url_switches_to_postgresql() -> None:
    result = start_django(
        DEBUG="true", DATABASE_URL="postgres://gate:pw@db.example:6543/filegate", DATABASE_POOL_SIZE="7"
    )
    assert result.returncode == 0, result.stderr
    database = json.loads(result.stdout)
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["NAME"], database["USER"], database["PASSWORD"]) == ("filegate", "gate", "pw")
    # psycopg's pool keeps the connections: Django's persistent connections must be off with it.
    assert (database["HOST"], database["PORT"], database["CONN_MAX_AGE"]) == ("db.example", 6543, 0)
    assert database["OPTIONS"]["pool"]["max_size"] == 7


def test_without_database_url_it_runs_on_sqlite_in_the_project() -> None:
    result = start_django(DEBUG="true")
    assert result.returncode == 0, result.stderr
    database = json.loads(result.stdout)
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert database["NAME"] == str(Path(settings.BASE_DIR) / "db.sqlite3")


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    """Readers never wait for a writer: WAL, set on every new connection."""
    script = (
        "import django; django.setup()\n"
        "from django.db import connection\n"
        "with connection.cursor() as cursor:\n"
        "    for pragma in ('journal_mode', 'synchronous'):\n"
        "        print(cursor.execute(f'PRAGMA {pragma}').fetchone()[0])\n"
    )
    result = run_python("-c", script, DEBUG="true", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
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
