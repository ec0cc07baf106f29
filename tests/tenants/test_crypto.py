"""Provider credentials at rest: Fernet encryption with key rotation."""

from __future__ import annotations

import io
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from tenants import crypto
from tenants.models import ProviderAccount
from tenants.services import provider_account_create
from tests.conftest import Tenant
from tests.fakes import FakeProvider

KEY1 = Fernet.generate_key().decode()
KEY2 = Fernet.generate_key().decode()


def test_it_round_trips_and_never_stores_the_plaintext(settings: Any) -> None:
    settings.CREDENTIAL_KEYS = [KEY1]
    token = crypto.encrypt("sk-secret")
    assert "sk-secret" not in token
    assert crypto.decrypt(token) == "sk-secret"


def test_it_derives_a_key_from_secret_key_when_no_credential_keys_are_set(settings: Any) -> None:
    settings.CREDENTIAL_KEYS = []
    token = crypto.encrypt("sk-secret")
    assert crypto.decrypt(token) == "sk-secret"
    settings.SECRET_KEY = "another-secret-key"
    with pytest.raises(ImproperlyConfigured, match="cannot be decrypted"):
        crypto.decrypt(token)


def test_a_new_key_listed_first_still_decrypts_what_the_old_key_encrypted(settings: Any) -> None:
    settings.CREDENTIAL_KEYS = [KEY1]
    token = crypto.encrypt("sk-secret")
    settings.CREDENTIAL_KEYS = [KEY2, KEY1]
    assert crypto.decrypt(token) == "sk-secret"


def test_rotate_re_encrypts_with_the_first_key(settings: Any) -> None:
    settings.CREDENTIAL_KEYS = [KEY1]
    old = crypto.encrypt("sk-secret")
    settings.CREDENTIAL_KEYS = [KEY2, KEY1]
    new = crypto.rotate(old)
    assert new != old
    settings.CREDENTIAL_KEYS = [KEY2]
    assert crypto.decrypt(new) == "sk-secret"
    assert Fernet(KEY2.encode()).decrypt(new.encode()) == b"sk-secret"


def test_dropping_the_old_key_before_rotating_makes_old_tokens_unreadable(settings: Any) -> None:
    settings.CREDENTIAL_KEYS = [KEY1]
    old = crypto.encrypt("sk-secret")
    assert crypto.decrypt(old) == "sk-secret"  # remembered for KEY1's key set only
    settings.CREDENTIAL_KEYS = [KEY2]
    with pytest.raises(ImproperlyConfigured, match="cannot be decrypted with any key in CREDENTIAL_KEYS"):
        crypto.decrypt(old)


def test_a_malformed_credential_key_is_a_configuration_error(settings: Any) -> None:
    settings.CREDENTIAL_KEYS = ["not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured, match="CREDENTIAL_KEYS must be url-safe base64 Fernet keys"):
        crypto.encrypt("sk-secret")


def test_an_account_secret_survives_rotation(
    tenant_a: Tenant, fake_provider: type[FakeProvider], settings: Any
) -> None:
    settings.CREDENTIAL_KEYS = [KEY1]
    account = provider_account_create(organization=tenant_a.org, name="up", kind="fake", config={"api_key": "sk-1"})
    settings.CREDENTIAL_KEYS = [KEY2, KEY1]
    ProviderAccount.objects.filter(pk=account.pk).update(secrets_encrypted=crypto.rotate(account.secrets_encrypted))
    settings.CREDENTIAL_KEYS = [KEY2]
    assert ProviderAccount.objects.get(pk=account.pk).provider_config() == {"api_key": "sk-1"}


def test_an_account_without_secrets_stores_no_ciphertext(tenant_a: Tenant) -> None:
    assert tenant_a.account.secrets_encrypted == ""
    assert tenant_a.account.get_secrets() == {}


def test_rotate_credentials_re_encrypts_every_account_with_the_newest_key(settings: Any, tenant_a: Tenant) -> None:
    settings.CREDENTIAL_KEYS = [KEY1]
    account = provider_account_create(
        organization=tenant_a.org, name="oai", kind="openai", config={"api_key": "sk-rotate-me"}
    )
    settings.CREDENTIAL_KEYS = [KEY2, KEY1]
    call_command("rotate_credentials", stdout=io.StringIO())
    settings.CREDENTIAL_KEYS = [KEY2]  # the old key is gone: only the rotation makes this work
    account.refresh_from_db()
    assert account.get_secrets() == {"api_key": "sk-rotate-me"}


def test_rotate_credentials_fails_loudly_for_an_account_no_key_decrypts(settings: Any, tenant_a: Tenant) -> None:
    settings.CREDENTIAL_KEYS = [KEY1]
    provider_account_create(organization=tenant_a.org, name="oai", kind="openai", config={"api_key": "sk-x"})
    settings.CREDENTIAL_KEYS = [KEY2]
    with pytest.raises(CommandError, match="could not be decrypted"):
        call_command("rotate_credentials", stdout=io.StringIO(), stderr=io.StringIO())
