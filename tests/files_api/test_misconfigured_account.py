"""An account the gateway cannot build is a clear, logged 500 naming the account, never its secrets."""

from __future__ import annotations

from typing import Any

from tenants.models import ProviderAccount
from tenants.services import provider_account_create
from tests.conftest import Tenant, upload


def broken_account(tenant: Tenant) -> ProviderAccount:
    account = provider_account_create(
        organization=tenant.org, name="oai", kind="openai", config={"api_key": "sk-secret-value-1234"}
    )
    # As after CREDENTIAL_KEYS lost the key these secrets were encrypted with.
    ProviderAccount.objects.filter(pk=account.pk).update(secrets_encrypted="gAAAAA-not-a-valid-token")
    return account


def test_an_account_whose_secrets_cannot_be_decrypted_is_a_clear_error(tenant_a: Tenant, caplog: Any) -> None:
    broken_account(tenant_a)
    response = upload(tenant_a.client, b"data", account="oai")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "server_error"
    assert error["code"] == "provider_account_misconfigured"
    assert "'oai'" in error["message"]
    assert "sk-secret" not in response.content.decode()
    assert "cannot be built" in caplog.text
    tenant_a.org.refresh_from_db()
    assert (tenant_a.org.used_bytes, tenant_a.org.reserved_bytes) == (0, 0)


def test_listing_through_a_broken_account_is_the_same_clear_error(tenant_a: Tenant) -> None:
    broken_account(tenant_a)
    response = tenant_a.client.get("/v1/files", HTTP_X_PROVIDER_ACCOUNT="oai")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "provider_account_misconfigured"
