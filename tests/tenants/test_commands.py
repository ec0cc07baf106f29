"""The operator CLI: create_org, create_api_key and add_provider_account."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from tenants.models import ApiKey, Organization, ProviderAccount
from tests.fakes import FakeProvider

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def error_of(*args: str) -> str:
    with pytest.raises(CommandError) as raised:
        run(*args)
    return str(raised.value)


@pytest.fixture
def acme() -> Organization:
    run("create_org", "acme")
    return Organization.objects.get(slug="acme")


def test_create_org_applies_every_flag() -> None:
    output = run(
        "create_org",
        "acme",
        "--name",
        "Acme Corp",
        "--storage-quota",
        "5000",
        "--max-file-size",
        "400",
        "--batch-max-size",
        "300",
    )
    org = Organization.objects.get(slug="acme")
    assert org.name == "Acme Corp"
    assert (org.storage_quota_bytes, org.max_file_size_bytes, org.batch_max_size_bytes) == (5000, 400, 300)
    assert output.strip() == "Created organization acme (quota 5000 bytes, max file 400 bytes, batch max 300 bytes)"


def test_create_org_takes_limits_it_is_not_given_from_settings(settings: Any) -> None:
    settings.DEFAULT_STORAGE_QUOTA_BYTES = 123_456
    settings.DEFAULT_MAX_FILE_SIZE_BYTES = 2_000
    settings.DEFAULT_BATCH_MAX_SIZE_BYTES = 1_000
    run("create_org", "acme")
    org = Organization.objects.get(slug="acme")
    assert (org.name, org.storage_quota_bytes, org.max_file_size_bytes, org.batch_max_size_bytes) == (
        "acme",
        123_456,
        2_000,
        1_000,
    )


def test_create_org_refuses_a_duplicate_slug(acme: Organization) -> None:
    assert error_of("create_org", "acme", "--name", "Again") == "Organization 'acme' already exists."
    assert Organization.objects.get(slug="acme").name == "acme"


def test_create_org_refuses_a_non_positive_limit() -> None:
    assert (
        error_of("create_org", "acme", "--storage-quota", "0")
        == "storage_quota_bytes must be a positive number of bytes."
    )
    assert not Organization.objects.exists()


def test_create_api_key_prints_the_key_alone_on_the_last_line(acme: Organization) -> None:
    key = run("create_api_key", "acme", "--name", "ci").splitlines()[-1]
    assert key.startswith("fg_")
    assert key.strip() == key
    api_key = ApiKey.objects.get(organization=acme)
    assert (api_key.name, api_key.prefix) == ("ci", key[:12])


def test_a_key_from_create_api_key_works_for_the_api(acme: Organization) -> None:
    run("add_provider_account", "acme", "disk", "--kind", "local", "--default")
    key = run("create_api_key", "acme").splitlines()[-1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = client.get("/v1/files")
    assert response.status_code == 200
    assert response.json()["data"] == []


def test_create_api_key_refuses_an_unknown_org(db: Any) -> None:
    assert error_of("create_api_key", "nope") == "No organization 'nope'. Create it with create_org first."
    assert not ApiKey.objects.exists()


def test_add_provider_account_adds_a_default_local_account(acme: Organization) -> None:
    output = run("add_provider_account", "acme", "disk", "--kind", "local", "--default")
    account = ProviderAccount.objects.get(organization=acme)
    assert (account.name, account.kind, account.is_default, account.settings) == ("disk", "local", True, {})
    assert output.strip() == "Added local account disk to acme (default)"


def test_add_provider_account_stores_set_values(acme: Organization, tmp_path: Path) -> None:
    run("add_provider_account", "acme", "disk", "--kind", "local", "--set", f"path={tmp_path}")
    assert ProviderAccount.objects.get(organization=acme).settings == {"path": str(tmp_path)}


def test_add_provider_account_reads_an_at_file_value(acme: Organization, tmp_path: Path) -> None:
    (tmp_path / "path.txt").write_text(f"{tmp_path / 'store'}\n")
    run("add_provider_account", "acme", "disk", "--kind", "local", "--set", f"path=@{tmp_path / 'path.txt'}")
    assert ProviderAccount.objects.get(organization=acme).settings == {"path": str(tmp_path / "store")}


def test_add_provider_account_makes_the_first_account_the_default(acme: Organization) -> None:
    run("add_provider_account", "acme", "first", "--kind", "local")
    run("add_provider_account", "acme", "second", "--kind", "local")
    defaults = ProviderAccount.objects.filter(organization=acme, is_default=True)
    assert [account.name for account in defaults] == ["first"]


def test_add_provider_account_default_flag_moves_the_default(acme: Organization) -> None:
    run("add_provider_account", "acme", "first", "--kind", "local")
    run("add_provider_account", "acme", "second", "--kind", "local", "--default")
    defaults = ProviderAccount.objects.filter(organization=acme, is_default=True)
    assert [account.name for account in defaults] == ["second"]


def test_a_secret_given_with_set_is_stored_encrypted(acme: Organization, fake_provider: type[FakeProvider]) -> None:
    run(
        "add_provider_account",
        "acme",
        "upstream",
        "--kind",
        "fake",
        "--set",
        "api_key=sk-very-secret",
        "--set",
        "base_url=http://fake.invalid",
    )
    account = ProviderAccount.objects.get(organization=acme)
    assert account.settings == {"base_url": "http://fake.invalid"}
    assert "sk-very-secret" not in account.secrets_encrypted
    assert account.secrets_encrypted
    assert account.get_secrets() == {"api_key": "sk-very-secret"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "nope"], "Unknown provider kind 'nope'; expected one of: "),
        (
            ["--kind", "local", "--set", "bucket=b"],
            "Provider kind 'local': Unknown setting 'bucket'; allowed: path.",
        ),
        (["--kind", "local", "--set", "path"], "--set needs KEY=VALUE, got 'path'."),
        (["--kind", "local", "--set", "=x"], "--set needs KEY=VALUE, got '=x'."),
        (["--kind", "local", "--set", "path=a", "--set", "path=b"], "--set path given twice."),
        (["--kind", "local", "--set", "path=@/nonexistent/filegate/path"], "--set path=@FILE: cannot read"),
    ],
    ids=["unknown_kind", "unknown_set_key", "set_without_equals", "set_without_key", "set_twice", "unreadable_file"],
)
def test_add_provider_account_refuses_bad_input_clearly(acme: Organization, args: list[str], message: str) -> None:
    with pytest.raises(CommandError) as raised:
        run("add_provider_account", "acme", "disk", *args)
    assert message in str(raised.value)
    assert not ProviderAccount.objects.exists()


def test_add_provider_account_refuses_an_unknown_org(db: Any) -> None:
    assert (
        error_of("add_provider_account", "nope", "disk", "--kind", "local")
        == "No organization 'nope'. Create it with create_org first."
    )


def test_add_provider_account_refuses_a_taken_name(acme: Organization) -> None:
    run("add_provider_account", "acme", "disk", "--kind", "local")
    assert (
        error_of("add_provider_account", "acme", "disk", "--kind", "local")
        == "Provider account 'disk' already exists in acme."
    )


def test_add_provider_account_refuses_a_kind_disabled_in_settings(acme: Organization, settings: Any) -> None:
    settings.ENABLED_PROVIDER_KINDS = ["fake-only"]
    message = error_of("add_provider_account", "acme", "disk", "--kind", "local")
    assert message.startswith("Unknown provider kind 'local'")


def test_setup_demo_refuses_to_run_with_debug_off(settings: Any) -> None:
    """It keeps the demo key in plain text in DATA_DIR: never on a production box."""
    assert settings.DEBUG is False
    assert "DEBUG=true" in error_of("setup_demo")
    assert not Organization.objects.exists()
    assert not (Path(settings.DATA_DIR) / "demo-api-key").exists()


def test_setup_demo_prints_a_working_key_and_reuses_it(settings: Any) -> None:
    settings.DEBUG = True  # as make run sets it
    first, again = run("setup_demo").splitlines(), run("setup_demo").splitlines()
    [key] = {line.split()[-1] for line in first if line.strip().startswith("API key:")}
    assert [line for line in again if "API key:" in line] == [line for line in first if "API key:" in line]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/v1/files").status_code == 200
    assert Organization.objects.get().slug == "demo"
    assert ApiKey.objects.count() == 1


@pytest.mark.parametrize(("kind", "base_url"), [("anthropic", "https://api.anthropic.com"), ("groq", None)])
def test_add_provider_account_takes_the_translated_kinds(acme: Organization, kind: str, base_url: str | None) -> None:
    extra = ["--set", f"base_url={base_url}"] if base_url else []
    run("add_provider_account", "acme", kind, "--kind", kind, "--set", "api_key=k-secret", *extra)
    account = ProviderAccount.objects.get(organization=acme, name=kind)
    assert (account.kind, account.settings, account.get_secrets()) == (
        kind,
        {"base_url": base_url} if base_url else {},
        {"api_key": "k-secret"},
    )
