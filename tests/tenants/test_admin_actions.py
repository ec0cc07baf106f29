"""Every admin action turns any failure into a message, never a traceback page (issue: the debug page
showed a provider key when "Test connection" raised an uncaught exception)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from tenants import admin as tenants_admin
from tenants.models import ProviderAccount
from tenants.services import provider_account_create
from tests.conftest import Tenant

SECRET = "sk-secret-that-must-not-show-9876"


def messages_of(response: Any) -> list[tuple[str, str]]:
    return [(message.level_tag, str(message)) for message in get_messages(response.wsgi_request)]


@pytest.fixture
def buggy_account(tenant_a: Tenant, fake_provider: Any) -> ProviderAccount:
    """An account whose provider raises a plain RuntimeError (not a GatewayError) from check()."""
    fake_provider.fail_on["check"] = "bug"
    return provider_account_create(
        organization=tenant_a.org, name="buggy", kind="fake", config={"api_key": SECRET}, is_default=False
    )


def test_an_unexpected_exception_in_test_connection_is_a_message(
    org_admin_client: Client, tenant_a: Tenant, buggy_account: ProviderAccount, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="filegate.admin"):
        response = org_admin_client.post(
            "/admin/tenants/provideraccount/",
            {"action": "test_connection", "_selected_action": [buggy_account.pk, tenant_a.account.pk]},
            follow=True,
        )
    assert response.status_code == 200
    assert messages_of(response) == [
        (
            "error",
            "org-a/buggy (fake): the test failed with an unexpected error (RuntimeError); "
            "the details are in the server log.",
        ),
        ("success", "org-a/disk (local): connection OK."),  # the next account is still tested
    ]
    assert "RuntimeError" in caplog.text
    assert "_maybe_fail" in caplog.text  # where it happened
    assert "a bug inside the provider" not in caplog.text  # the message (it could quote a secret) is not
    assert SECRET not in response.content.decode()


def test_an_exception_quoting_a_secret_shows_only_its_class(
    admin_client: Client, tenant_a: Tenant, cloudstore: Any
) -> None:
    account = provider_account_create(
        organization=tenant_a.org,
        name="store",
        kind="cloudstore",
        config={"bucket": "explode", "credentials_file": f'{{"private_key": "{SECRET}"}}'},
    )
    response = admin_client.post(
        "/admin/tenants/provideraccount/",
        {"action": "test_connection", "_selected_action": [account.pk]},
        follow=True,
    )
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert "LookupError" in text
    assert SECRET not in text
    assert SECRET not in response.content.decode()


def test_an_unexpected_exception_in_any_action_is_a_message(
    admin_client: Client, tenant_a: Tenant, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*, api_key: Any) -> None:
        raise OSError("the disk is gone")

    monkeypatch.setattr(tenants_admin, "api_key_delete", broken)
    with caplog.at_level(logging.ERROR, logger="filegate.admin"):
        response = admin_client.post(
            "/admin/tenants/apikey/",
            {"action": "delete_selected", "post": "yes", "_selected_action": [tenant_a.api_key.pk]},
        )
    assert response.status_code == 302
    assert response["Location"] == "/admin/tenants/apikey/"
    assert messages_of(response) == [
        ("error", "The action failed: an unexpected error (OSError); the details are in the server log.")
    ]
    assert "OSError" in caplog.text


def test_test_connection_of_an_account_stored_with_a_header_breaking_value_is_a_message(
    org_admin_client: Client, tenant_a: Tenant
) -> None:
    """Values like this are refused on save now; one stored before must still not crash the admin."""
    account = provider_account_create(
        organization=tenant_a.org,
        name="oai",
        kind="openai",
        config={"api_key": SECRET, "base_url": "http://127.0.0.1:9/v1"},
    )
    ProviderAccount.objects.filter(pk=account.pk).update(
        settings={"base_url": "http://127.0.0.1:9/v1", "organization": "org-1\r\nX-Injected: yes"}
    )
    response = org_admin_client.post(
        "/admin/tenants/provideraccount/",
        {"action": "test_connection", "_selected_action": [account.pk]},
        follow=True,
    )
    assert response.status_code == 200
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert text.startswith("org-a/oai (openai): ")
    assert SECRET not in response.content.decode()
