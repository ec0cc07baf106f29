"""``/`` (the admin's "View site") leads to the API docs, not to a 404."""

from __future__ import annotations

from django.test import Client


def test_the_root_redirects_to_the_docs(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/docs/"
    assert client.get(response["Location"]).status_code == 200
