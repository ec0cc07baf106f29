"""The provider-account form is built from each kind's ``Field`` declarations, whatever the kind.

``cloudstore`` (``tests.fakes.CloudStoreProvider``) is a kind that exists only in the tests, shaped
like the storage kinds still to come (a bucket, a region, an encryption choice, a service-account
JSON uploaded as a file): it gets its form with no change to the admin.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils.html import escape

from providers import registry
from providers.fields import MAX_JSON_LENGTH
from tenants.models import ProviderAccount
from tenants.services import provider_account_create
from tests.conftest import Tenant
from tests.fakes import CloudStoreProvider

ADD_URL = "/admin/tenants/provideraccount/add/"
SERVICE_ACCOUNT = {"type": "service_account", "project_id": "p-1", "private_key": "-----BEGIN PRIVATE KEY-----\nabc\n"}


def json_upload(document: Any, name: str = "sa.json") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, json.dumps(document).encode(), content_type="application/json")


def cloudstore_form(org_id: int, **values: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"organization": org_id, "name": "store", "kind": "cloudstore"}
    data.update({f"cloudstore__{name}": value for name, value in values.items()})
    return data


def form_errors(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 200, "expected the form again, with errors"
    return {name: list(errors) for name, errors in response.context["adminform"].form.errors.items()}


# Every kind gets its own inputs


@pytest.mark.parametrize("kind", registry.kinds())
def test_every_kind_has_a_fieldset_with_an_input_per_setting(admin_client: Client, kind: str) -> None:
    page = admin_client.get(ADD_URL)
    html = page.content.decode()
    assert f"provider-kind-{kind}" in html
    form = page.context["adminform"].form
    for field in registry.provider_class(kind).fields:
        form_field = form.fields[f"{kind}__{field.name}"]
        assert form_field.label == field.label
        assert escape(field.help) in form_field.help_text
        if field.secret and field.type != "json":
            assert f'type="password" name="{kind}__{field.name}"' in html
        if field.secret:
            assert form_field.help_text.endswith("<strong>Not set.</strong>")


def test_a_kind_that_lands_later_gets_its_form(
    org_admin_client: Client, tenant_a: Tenant, cloudstore: type[CloudStoreProvider]
) -> None:
    page = org_admin_client.get(ADD_URL)
    html = page.content.decode()
    assert "Cloud store (cloudstore) settings" in html
    assert 'type="file" name="cloudstore__credentials_file"' in html
    assert 'accept=".json,application/json"' in html
    assert '<option value="aws:kms">aws:kms</option>' in html
    assert 'placeholder="eu-west-1"' in html
    assert 'type="url" name="cloudstore__endpoint_url"' in html
    assert 'enctype="multipart/form-data"' in html

    response = org_admin_client.post(
        ADD_URL,
        cloudstore_form(
            tenant_a.org.pk,
            bucket="my-bucket",
            encryption="aws:kms",
            credentials_file=json_upload(SERVICE_ACCOUNT),
            timeout="30",
        ),
    )
    assert response.status_code == 302, form_errors(response)
    account = ProviderAccount.objects.get(name="store")
    assert account.settings == {"bucket": "my-bucket", "encryption": "aws:kms", "timeout": "30"}
    assert json.loads(account.get_secrets()["credentials_file"]) == SERVICE_ACCOUNT
    assert "private_key" not in account.secrets_encrypted

    page = org_admin_client.get(f"/admin/tenants/provideraccount/{account.pk}/change/")
    html = page.content.decode()
    assert "PRIVATE KEY" not in html
    assert "project_id" not in html
    assert re.search(r"<strong>Stored</strong> \(hidden\)\. Leave blank to keep it, or choose a new file", html)
    assert page.context["adminform"].form["cloudstore__bucket"].value() == "my-bucket"


def test_an_uploaded_document_is_kept_when_no_new_file_is_chosen(
    admin_client: Client, tenant_a: Tenant, cloudstore: type[CloudStoreProvider]
) -> None:
    account = provider_account_create(
        organization=tenant_a.org,
        name="store",
        kind="cloudstore",
        config={"bucket": "b", "credentials_file": json.dumps(SERVICE_ACCOUNT)},
    )
    url = f"/admin/tenants/provideraccount/{account.pk}/change/"
    assert admin_client.post(url, cloudstore_form(tenant_a.org.pk, bucket="b2")).status_code == 302
    account.refresh_from_db()
    assert (account.settings, json.loads(account.get_secrets()["credentials_file"])) == (
        {"bucket": "b2"},
        SERVICE_ACCOUNT,
    )

    response = admin_client.post(url, cloudstore_form(tenant_a.org.pk, bucket="b2", credentials_file__forget="on"))
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.get_secrets() == {}


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        (SimpleUploadedFile("sa.json", b"[1, 2]"), "expected a JSON object"),
        (SimpleUploadedFile("sa.json", b"{not json"), "expected a JSON document"),
        (SimpleUploadedFile("sa.json", b"\xff\xfe{}"), "not UTF-8"),
        (SimpleUploadedFile("sa.json", b" " * (MAX_JSON_LENGTH + 1)), "larger than 64 KiB"),
    ],
)
def test_a_bad_document_is_refused_on_its_input(
    admin_client: Client, tenant_a: Tenant, cloudstore: type[CloudStoreProvider], upload: Any, message: str
) -> None:
    response = admin_client.post(ADD_URL, cloudstore_form(tenant_a.org.pk, bucket="b", credentials_file=upload))
    errors = form_errors(response)
    assert message in " ".join(errors["cloudstore__credentials_file"])
    assert not ProviderAccount.objects.filter(name="store").exists()


def test_a_choice_outside_the_declared_ones_is_refused(
    admin_client: Client, tenant_a: Tenant, cloudstore: type[CloudStoreProvider]
) -> None:
    response = admin_client.post(ADD_URL, cloudstore_form(tenant_a.org.pk, bucket="b", encryption="rot13"))
    assert "Select a valid choice" in " ".join(form_errors(response)["cloudstore__encryption"])


def test_a_missing_required_setting_is_named_on_its_input(
    admin_client: Client, tenant_a: Tenant, cloudstore: type[CloudStoreProvider]
) -> None:
    response = admin_client.post(ADD_URL, cloudstore_form(tenant_a.org.pk, region="us-east-1"))
    assert form_errors(response) == {
        "cloudstore__bucket": ["Provider kind 'cloudstore': The setting 'bucket' is required."]
    }


# What the registry refuses is said on the right input


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("organization", "org-1\r\nX-Injected: yes", "no control characters"),
        ("project", "proj\t1", "no control characters"),
        ("organization", "org-é", "only ASCII"),
        ("api_key", "sk-clé", "only ASCII"),
        ("timeout", "soon", "expected a number of seconds"),
    ],
)
def test_values_that_would_break_a_header_are_refused_on_their_input(
    admin_client: Client, tenant_a: Tenant, name: str, value: str, message: str
) -> None:
    data = {"organization": tenant_a.org.pk, "name": "oai", "kind": "openai", "openai__api_key": "sk-1"}
    response = admin_client.post(ADD_URL, {**data, f"openai__{name}": value})
    errors = form_errors(response)
    assert message in " ".join(errors[f"openai__{name}"])
    assert not ProviderAccount.objects.filter(name="oai").exists()


def test_a_typed_secret_is_never_sent_back_and_the_page_says_to_type_it_again(
    admin_client: Client, tenant_a: Tenant, cloudstore: type[CloudStoreProvider]
) -> None:
    response = admin_client.post(
        ADD_URL,
        {
            "organization": tenant_a.org.pk,
            "name": "oai",
            "kind": "openai",
            "openai__api_key": "sk-typed-just-now",
            "openai__organization": "org-1\nX: y",
            "openai__project": "proj_kept",
        },
    )
    errors = form_errors(response)
    html = response.content.decode()
    assert "sk-typed-just-now" not in html
    assert errors["openai__api_key"] == ["Not saved because of the errors on this page: type it again."]
    assert 'value="proj_kept"' in html  # what is not secret comes back as typed

    response = admin_client.post(
        ADD_URL,
        cloudstore_form(tenant_a.org.pk, region="eu", credentials_file=json_upload(SERVICE_ACCOUNT)),
    )
    errors = form_errors(response)
    assert errors["cloudstore__credentials_file"] == [
        "Not saved because of the errors on this page: choose the file again."
    ]
    assert "bucket" in " ".join(errors["cloudstore__bucket"])


def test_a_secret_left_blank_after_an_error_is_not_reported(admin_client: Client, tenant_a: Tenant) -> None:
    response = admin_client.post(
        ADD_URL, {"organization": tenant_a.org.pk, "name": "oai", "kind": "openai", "openai__project": "a\nb"}
    )
    assert "type it again" not in " ".join(form_errors(response).get("openai__api_key", []))


def test_changing_the_kind_does_not_carry_the_old_secrets_over(
    admin_client: Client, tenant_a: Tenant, fake_provider: Any
) -> None:
    account = provider_account_create(
        organization=tenant_a.org, name="fk", kind="fake", config={"api_key": "sk-for-fake"}
    )
    url = f"/admin/tenants/provideraccount/{account.pk}/change/"
    page = admin_client.get(url).content.decode()
    # The openai fieldset says its key is not set: the stored one belongs to the fake kind.
    assert re.search(r'name="openai__api_key"[^>]*>.*?<strong>Not set\.</strong>', page, re.S)
    response = admin_client.post(url, {"organization": tenant_a.org.pk, "name": "fk", "kind": "openai"})
    assert "openai__api_key" in form_errors(response)
    account.refresh_from_db()
    assert (account.kind, account.get_secrets()) == ("fake", {"api_key": "sk-for-fake"})


def test_secrets_that_cannot_be_decrypted_say_so(admin_client: Client, tenant_a: Tenant, fake_provider: Any) -> None:
    account = provider_account_create(organization=tenant_a.org, name="fk", kind="fake", config={"api_key": "sk"})
    ProviderAccount.objects.filter(pk=account.pk).update(secrets_encrypted="not-a-fernet-token")
    page = admin_client.get(f"/admin/tenants/provideraccount/{account.pk}/change/")
    assert page.status_code == 200
    assert "cannot be decrypted with CREDENTIAL_KEYS" in page.content.decode()
    assert "api_key: cannot be decrypted" not in page.content.decode()
    listing = admin_client.get("/admin/tenants/provideraccount/").content.decode()
    assert "cannot be decrypted" in listing


# The raw JSON, the script, the picker


def test_the_stored_settings_json_is_for_operators_only(
    admin_client: Client, org_admin_client: Client, tenant_a: Tenant
) -> None:
    ProviderAccount.objects.filter(pk=tenant_a.account.pk).update(settings={"path": "/srv/filegate-ops"})
    url = f"/admin/tenants/provideraccount/{tenant_a.account.pk}/change/"
    operator_page = admin_client.get(url).content.decode()
    assert "Stored settings (operators only)" in operator_page
    assert "&quot;path&quot;: &quot;/srv/filegate-ops&quot;" in operator_page
    member_page = org_admin_client.get(url)
    assert "Stored settings" not in member_page.content.decode()
    assert "stored_settings" not in member_page.context["adminform"].form.fields


def test_the_kind_switcher_script_is_served(admin_client: Client) -> None:
    html = admin_client.get(ADD_URL).content.decode()
    assert "tenants/provider_account_form.js" in html
    path = finders.find("tenants/provider_account_form.js")
    assert path is not None
    with open(path) as script:
        assert "provider-kind-" in script.read()


def test_an_org_admin_of_one_organisation_finds_it_chosen(org_admin_client: Client, tenant_a: Tenant) -> None:
    form = org_admin_client.get(ADD_URL).context["adminform"].form
    assert form["organization"].value() == str(tenant_a.org.pk)
    assert list(form.fields["organization"].queryset) == [tenant_a.org]
