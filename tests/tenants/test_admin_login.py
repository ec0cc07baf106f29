"""Admin logins are throttled per client address (django-axes): guessing passwords stops after a few tries."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import F
from django.test import Client

PASSWORD = "the-right-password"


@pytest.fixture
def admin_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser(username="root", email="", password=PASSWORD)


def log_in(client: Client, password: str) -> Any:
    return client.post("/admin/login/?next=/admin/", {"username": "root", "password": password})


def fail_until_the_limit(client: Client) -> None:
    """Fail as often as the limit allows: the last failure already answers 429."""
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert log_in(client, "a-guess").status_code == 200  # the form again, with its error
    assert log_in(client, "a-guess").status_code == 429


def test_a_client_that_guessed_too_often_is_refused_even_with_the_right_password(admin_user: Any) -> None:
    client = Client(REMOTE_ADDR="203.0.113.7")
    fail_until_the_limit(client)
    locked = log_in(client, PASSWORD)
    assert locked.status_code == 429
    assert "too many login attempts" in locked.content.decode()
    assert "_auth_user_id" not in client.session


def test_without_a_proxy_a_forged_forwarded_for_does_not_escape_the_lockout(admin_user: Any) -> None:
    fail_until_the_limit(Client(REMOTE_ADDR="203.0.113.7"))
    forged = Client(REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR="198.51.100.20")
    assert log_in(forged, PASSWORD).status_code == 429


def test_the_lockout_holds_one_client_address_not_everyone(admin_user: Any) -> None:
    fail_until_the_limit(Client(REMOTE_ADDR="203.0.113.7"))
    other = Client(REMOTE_ADDR="198.51.100.20")
    assert log_in(other, PASSWORD).status_code == 302
    assert other.session["_auth_user_id"] == str(admin_user.pk)


def test_fewer_failures_than_the_limit_do_not_lock_out(admin_user: Any) -> None:
    client = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert log_in(client, "a-guess").status_code == 200
    assert log_in(client, PASSWORD).status_code == 302


def test_a_successful_login_clears_the_failures_before_it(admin_user: Any) -> None:
    client = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(2):
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            assert log_in(client, "a-guess").status_code == 200
        assert log_in(client, PASSWORD).status_code == 302
        client.logout()


def test_the_lockout_ends_after_the_lockout_time(admin_user: Any) -> None:
    client = Client(REMOTE_ADDR="203.0.113.7")
    fail_until_the_limit(client)
    assert log_in(client, PASSWORD).status_code == 429
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    assert log_in(client, PASSWORD).status_code == 302


# Behind the TLS proxy every request comes from the proxy's address; the client's own is the
# right-most X-Forwarded-For entry, appended by the proxy (anything to its left, the client wrote).
BEHIND_PROXY = """
import json, sys
import django
django.setup()
from django.core.management import call_command
from django.contrib.auth import get_user_model
from django.conf import settings
from django.test import Client

from axes.models import AccessAttempt
# Tests check who may log in, not the hash: the fast hasher, as tests.conftest sets it.
settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
call_command("migrate", verbosity=0)
get_user_model().objects.create_superuser(username="root", email="", password="the-right-password")
proxy = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_PROTO": "https"}
def log_in(forwarded_for, password):
    client = Client(**proxy, HTTP_X_FORWARDED_FOR=forwarded_for)
    return client.post("/admin/login/", {"username": "root", "password": password}, secure=False).status_code
guesses = [log_in(f"198.51.100.{n}, 203.0.113.7", "a-guess") for n in range(settings.AXES_FAILURE_LIMIT - 1)]
guesses.append(log_in("192.0.2.1, 203.0.113.7", "a-guess"))
print(json.dumps({
    "guesses": guesses,
    "attacker": log_in("192.0.2.99, 203.0.113.7", "the-right-password"),
    "someone_else": log_in("198.51.100.20", "the-right-password"),
}))
"""


def test_behind_a_tls_proxy_the_lockout_holds_the_forwarded_client_address(tmp_path: Path) -> None:
    env = {
        "PATH": "",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": settings.SECRET_KEY,
        "CREDENTIAL_KEYS": ",".join(settings.CREDENTIAL_KEYS),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "BEHIND_TLS_PROXY": "true",
        "ALLOWED_HOSTS": "testserver",
    }
    result = subprocess.run(
        [sys.executable, "-c", BEHIND_PROXY],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.splitlines()[-1])
    # The attacker's guesses all came from 203.0.113.7, whatever it wrote before that address.
    assert outcome["guesses"] == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    assert outcome["attacker"] == 429
    assert outcome["someone_else"] == 302
