"""``create_org_admin SLUG USERNAME [--email EMAIL]``: how an org admin gets into the admin."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from tenants.models import Membership
from tests.conftest import Tenant

NEW_PASSWORD = "a-long-and-unusual-passphrase-42"


def run(*args: str) -> list[str]:
    out = StringIO()
    call_command("create_org_admin", *args, stdout=out)
    return out.getvalue().splitlines()


def set_password(client: Client, link: str) -> Any:
    """Follow the printed link as a browser would: it redirects once, then takes the new password twice."""
    path = link.removeprefix("https://files.example.com")
    form_page = client.get(path, follow=True)
    assert form_page.status_code == 200
    assert form_page.context["validlink"], "the link was refused"
    return client.post(form_page.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})


def test_it_creates_a_staff_user_and_prints_a_one_time_set_password_link(tenant_a: Tenant, tenant_b: Tenant) -> None:
    lines = run("org-a", "alice", "--email", "alice@example.com", "--base-url", "https://files.example.com/")
    assert lines[0] == "Created staff user alice, an admin of organisation org-a."
    assert lines[1] == "Send them this link to set their password (it works once, within 72 hours):"
    link = lines[2]
    assert link.startswith("https://files.example.com/admin/set-password/")
    alice = get_user_model().objects.get(username="alice")
    assert (alice.is_staff, alice.is_superuser, alice.email) == (True, False, "alice@example.com")
    assert not alice.has_usable_password()  # nobody knows a password until alice sets one
    assert list(Membership.objects.filter(user=alice).values_list("organization__slug", flat=True)) == ["org-a"]

    browser = Client()
    response = set_password(browser, link)
    assert response.status_code == 302
    assert response["Location"] == "/admin/"  # logged in straight away
    index = browser.get("/admin/").content.decode()
    assert 'data-slug="org-a"' in index
    assert 'data-slug="org-b"' not in index

    assert not Client().get(link.removeprefix("https://files.example.com"), follow=True).context["validlink"]
    fresh = Client()
    login = fresh.post("/admin/login/", {"username": "alice", "password": NEW_PASSWORD, "next": "/admin/"})
    assert (login.status_code, login["Location"]) == (302, "/admin/")
    assert fresh.get("/admin/tenants/apikey/").status_code == 200


def test_it_attaches_an_existing_user_and_keeps_their_password(tenant_a: Tenant, django_user_model: Any) -> None:
    django_user_model.objects.create_user(username="bob", password="bobs-own-password-1")
    lines = run("org-a", "bob")
    assert lines == [
        "Attached staff user bob, an admin of organisation org-a.",
        "They log in with their existing password at http://127.0.0.1:8000/admin/.",
    ]
    bob = django_user_model.objects.get(username="bob")
    assert bob.is_staff
    assert bob.check_password("bobs-own-password-1")
    assert Membership.objects.filter(user=bob, organization=tenant_a.org).exists()


def test_running_it_twice_changes_nothing_more(tenant_a: Tenant) -> None:
    run("org-a", "alice")
    run("org-a", "alice")
    assert Membership.objects.filter(user__username="alice").count() == 1
    assert get_user_model().objects.filter(username="alice").count() == 1


def test_an_admin_of_two_organisations(tenant_a: Tenant, tenant_b: Tenant) -> None:
    run("org-a", "alice")
    run("org-b", "alice")
    slugs = Membership.objects.filter(user__username="alice").values_list("organization__slug", flat=True)
    assert sorted(slugs) == ["org-a", "org-b"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope", "alice"), "No organization 'nope'"),
        (("org-a", "not a valid name!"), "username: Enter a valid username"),
        (("org-a", "alice", "--email", "not-an-email"), "email: Enter a valid email address"),
    ],
)
def test_bad_input_is_a_clear_error_and_creates_nothing(tenant_a: Tenant, args: tuple[str, ...], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert not get_user_model().objects.exists()
    assert not Membership.objects.exists()


def test_it_never_overwrites_an_existing_email(tenant_a: Tenant, django_user_model: Any) -> None:
    django_user_model.objects.create_user(username="bob", email="bob@example.com")
    with pytest.raises(CommandError, match=r"already has the email address bob@example\.com"):
        run("org-a", "bob", "--email", "mallory@example.com")
    assert not Membership.objects.exists()
    assert not django_user_model.objects.get(username="bob").is_staff
