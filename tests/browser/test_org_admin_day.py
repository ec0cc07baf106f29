"""A real browser (Debian's Chromium, driven by Playwright) walks an org admin's day, and the API docs.

The gateway runs in pytest-django's ``live_server``; the browser talks only to it: the docs are
opened with every request to another host blocked, and would fail if they needed one. A screenshot
of each step is kept under ``.artifacts/browser/`` (git-ignored). ``make test`` installs Chromium
(the Debian package) when it is missing; Playwright never downloads a browser here.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from django.core.management import call_command
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from files_api.models import File
from tenants.models import ApiKey, ProviderAccount
from tests.conftest import Tenant

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "browser"
WIDTH = 1366  # the narrowest screen the lists must fit
PASSWORD = "a-long-and-unusual-passphrase-42"
PROVIDER_KEY = "sk-browser-typed-secret-8412"
LOCAL_HOSTS = ("127.0.0.1", "localhost")

pytestmark = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="needs chromium: make test installs it")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Playwright's sync API keeps an event loop in this thread; the ORM calls the test makes between
    # browser steps are synchronous and safe, but Django refuses them next to a loop unless told.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh context (no cookies) at 1366 px, allowed to use the clipboard, that may reach only this machine."""
    context = browser.new_context(
        viewport={"width": WIDTH, "height": 800}, permissions=["clipboard-read", "clipboard-write"]
    )
    context.blocked = []  # type: ignore[attr-defined]

    def local_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            context.blocked.append(route.request.url)  # type: ignore[attr-defined]
            route.abort()

    context.route("**/*", local_only)
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Iterator[Any]:
    """``shots(page, "name")`` saves a full-page screenshot as ``.artifacts/browser/<test>/NN-name.png``."""
    folder = ARTIFACTS / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    taken = [0]

    def shot(page: Page, name: str) -> None:
        taken[0] += 1
        page.screenshot(path=str(folder / f"{taken[0]:02d}-{name}.png"), full_page=True)

    yield shot


def assert_fits(page: Page) -> None:
    """No horizontal scrolling, and the list's last column ends inside the window."""
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
    right = page.evaluate("document.querySelector('#result_list').getBoundingClientRect().right")
    assert right <= WIDTH


def test_an_org_admin_walks_through_their_day(
    live_server: Any, page: Page, shots: Any, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    base = live_server.url

    # The operator makes alice an admin of org-a; she sets her password from the printed link.
    out = StringIO()
    call_command("create_org_admin", "org-a", "alice", "--base-url", base, stdout=out)
    link = out.getvalue().splitlines()[-1]
    page.goto(link)
    page.fill("#id_new_password1", PASSWORD)
    page.fill("#id_new_password2", PASSWORD)
    shots(page, "set-password")
    page.click("input[type=submit]")
    expect(page).to_have_url(f"{base}/admin/")
    expect(page.locator("#organization-overview tr[data-slug]")).to_have_count(1)
    expect(page.locator("#organization-overview tr[data-slug='org-a']")).to_contain_text("of 100 GiB")
    shots(page, "index")

    # Log out, and in again with the password.
    page.click("#logout-form button")
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", PASSWORD)
    shots(page, "login")
    page.click("input[type=submit]")
    expect(page).to_have_url(f"{base}/admin/")

    # A provider account through the per-kind form: choosing the kind shows its own settings.
    page.goto(f"{base}/admin/tenants/provideraccount/add/")
    expect(page.locator("fieldset.provider-kind-openai")).to_be_hidden()
    page.select_option("#id_kind", "openai")
    expect(page.locator("fieldset.provider-kind-openai")).to_be_visible()
    expect(page.locator("fieldset.provider-kind-azure_openai")).to_be_hidden()
    expect(page.locator("fieldset.provider-kind-local")).to_be_hidden()
    page.fill("#id_name", "oai")
    page.fill("#id_openai__api_key", PROVIDER_KEY)
    page.fill("#id_openai__base_url", "https://10.0.0.5/v1")  # an internal host: refused
    page.fill("#id_openai__project", "proj_browser")
    shots(page, "account-form")
    page.click("input[name=_save]")
    expect(page.locator(".field-openai__base_url .errorlist")).to_contain_text("only platform operators")
    expect(page.locator(".field-openai__api_key .errorlist")).to_contain_text("type it again")
    expect(page.locator("#id_openai__api_key")).to_have_value("")
    expect(page.locator("#id_openai__project")).to_have_value("proj_browser")
    expect(page.locator("fieldset.provider-kind-openai")).to_be_visible()
    assert PROVIDER_KEY not in page.content()
    shots(page, "account-form-errors")
    page.fill("#id_openai__base_url", "https://api.openai.com/v1")
    page.fill("#id_openai__api_key", PROVIDER_KEY)
    page.click("input[name=_save]")
    expect(page.locator(".messagelist .success")).to_contain_text("oai")
    account = ProviderAccount.objects.get(organization=tenant_a.org, name="oai")
    assert account.get_secrets() == {"api_key": PROVIDER_KEY}
    page.goto(f"{base}/admin/tenants/provideraccount/{account.pk}/change/")
    expect(page.locator("#id_openai__api_key")).to_have_attribute("type", "password")
    expect(page.locator("#id_openai__api_key")).to_have_value("")
    expect(page.locator(".field-openai__api_key .help")).to_contain_text("Stored (hidden)")
    assert PROVIDER_KEY not in page.content()
    shots(page, "account-secret-masked")

    # A key, shown exactly once, copied with the button; a reload makes no second key.
    keys_before = ApiKey.objects.filter(organization=tenant_a.org).count()
    page.goto(f"{base}/admin/tenants/apikey/add/")
    page.fill("#id_name", "browser")
    page.click("input[name=_save]")
    expect(page).to_have_url(re.compile(r"/admin/tenants/apikey/\d+/created/$"))
    plaintext = page.locator("#new-api-key").input_value()
    assert plaintext.startswith("fg_")
    page.click("#copy-api-key")
    expect(page.locator("#copy-status")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == plaintext
    shots(page, "key-created")
    page.reload()
    expect(page.locator("#key-already-shown")).to_be_visible()
    expect(page.locator("#new-api-key")).to_have_count(0)
    assert plaintext not in page.content()
    assert ApiKey.objects.filter(organization=tenant_a.org).count() == keys_before + 1
    shots(page, "key-reloaded")

    # The key works: one upload, one refused upload (an empty file), for the records and audit below.
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {plaintext}"})
    assert (
        api.post("/v1/files", data={"purpose": "assistants"}, files={"file": ("notes.txt", b"hi")}).status_code == 200
    )
    assert api.post("/v1/files", data={"purpose": "assistants"}, files={"file": ("empty.txt", b"")}).status_code == 400

    # Revoke it from its own page, after a confirmation.
    page.click("text=Go to the key")
    page.click("#revoke-api-key")
    expect(page.locator("#content-main")).to_contain_text("Every client using it gets")
    shots(page, "revoke-confirmation")
    page.click("input[value='Yes, revoke it']")
    expect(page.locator(".messagelist .success")).to_contain_text("Revoked")
    expect(page.locator(".field-status")).to_contain_text("Revoked 20")
    shots(page, "key-revoked")
    assert api.get("/v1/files").status_code == 401

    # The file record and the audit trail, in lists that fit the screen.
    page.goto(f"{base}/admin/files_api/file/")
    row = page.locator("#result_list tbody tr").first
    for text in ("notes.txt", "processed", "UTC", "disk", plaintext[:12]):
        expect(row).to_contain_text(text)
    assert_fits(page)
    shots(page, "files")
    row.locator("th a").click()
    expect(page.locator(".field-sha256_hex")).to_contain_text("SHA-256")
    shots(page, "file")
    page.goto(f"{base}/admin/files_api/auditevent/")
    failure = page.locator("#result_list tbody tr", has_text="empty_file")
    expect(failure).to_contain_text("empty")  # the reason, in the list
    assert_fits(page)
    shots(page, "audit")

    # Another organisation's objects are unreachable by URL.
    other_file = File.objects.create(
        public_id="file-of-org-b",
        organization=tenant_b.org,
        provider_account=tenant_b.account,
        filename="secret-b.txt",
        purpose="assistants",
        bytes=1,
        created_at=tenant_b.org.created_at,
    )
    for url in (
        f"/admin/tenants/provideraccount/{tenant_b.account.pk}/change/",
        f"/admin/tenants/apikey/{tenant_b.api_key.pk}/revoke/",
        f"/admin/files_api/file/{other_file.pk}/change/",
        f"/admin/tenants/organization/{tenant_b.org.pk}/change/",
    ):
        page.goto(base + url)
        expect(page).to_have_url(f"{base}/admin/")
        expect(page.locator(".messagelist .warning")).to_contain_text("Perhaps it was deleted?")
        assert "org-b" not in page.content()
        assert "secret-b.txt" not in page.content()
    shots(page, "other-organisation")
    assert page.context.blocked == []  # type: ignore[attr-defined]


def test_the_account_form_works_without_javascript(
    live_server: Any, browser: Browser, shots: Any, org_admin: Any, tenant_a: Tenant
) -> None:
    context = browser.new_context(viewport={"width": WIDTH, "height": 800}, java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-pw-1234")
    page.click("input[type=submit]")
    page.goto(f"{live_server.url}/admin/tenants/provideraccount/add/")
    for kind in ("local", "openai", "azure_openai"):
        expect(page.locator(f"fieldset.provider-kind-{kind}")).to_be_visible()  # every kind's settings
    page.fill("#id_name", "az")
    page.select_option("#id_kind", "azure_openai")
    page.fill("#id_azure_openai__base_url", "https://my-resource.openai.azure.com")
    page.fill("#id_azure_openai__api_key", PROVIDER_KEY)
    page.fill("#id_openai__project", "ignored: another kind's input")
    shots(page, "account-form-without-javascript")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist .success")).to_contain_text("az")
    account = ProviderAccount.objects.get(organization=tenant_a.org, name="az")
    assert (account.kind, account.settings) == ("azure_openai", {"base_url": "https://my-resource.openai.azure.com"})
    assert account.get_secrets() == {"api_key": PROVIDER_KEY}
    context.close()


FILE_OPERATIONS = {
    ("GET", "/v1/files"),
    ("POST", "/v1/files"),
    ("GET", "/v1/files/{id}"),
    ("DELETE", "/v1/files/{id}"),
    ("GET", "/v1/files/{id}/content"),
}


def test_the_docs_render_offline(live_server: Any, page: Page, shots: Any) -> None:
    page.goto(live_server.url)
    expect(page).to_have_url(f"{live_server.url}/docs/")  # / leads to the docs
    operations = page.locator(".opblock")
    expect(operations).to_have_count(len(FILE_OPERATIONS))
    shown = {
        (block.locator(".opblock-summary-method").inner_text(), block.locator(".opblock-summary-path").inner_text())
        for block in operations.all()
    }
    assert {(method, path.replace("\u200b", "")) for method, path in shown} == FILE_OPERATIONS
    shots(page, "swagger-ui")

    page.goto(f"{live_server.url}/redoc/")
    expect(page.locator("[data-section-id^='operation/']")).to_have_count(len(FILE_OPERATIONS))
    for _method, path in FILE_OPERATIONS:
        expect(page.locator("body")).to_contain_text(path)
    shots(page, "redoc")
    assert page.context.blocked == []  # type: ignore[attr-defined]
