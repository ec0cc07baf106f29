"""GET /v1/files: OpenAI's list shape, ordering, cursors, filters and their validation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from files_api.models import File
from tenants.services import provider_account_create
from tests.conftest import Tenant, batch_line, upload


def upload_many(client: Any, count: int, purpose: str = "assistants") -> list[str]:
    """Upload ``count`` files; return their ids oldest first."""
    ids = []
    for n in range(count):
        content = batch_line(f"r{n}") if purpose == "batch" else f"file {n}".encode()
        response = upload(client, content, filename=f"f{n}.jsonl", purpose=purpose)
        assert response.status_code == 200, response.json()
        ids.append(response.json()["id"])
    return ids


def ids_of(response: Any) -> list[str]:
    assert response.status_code == 200, response.json()
    return [file["id"] for file in response.json()["data"]]


def page_through(client: Any, query: str) -> list[str]:
    seen: list[str] = []
    after = ""
    while True:
        body = client.get(f"/v1/files?{query}{after}").json()
        seen += [file["id"] for file in body["data"]]
        if not body["has_more"]:
            return seen
        after = f"&after={body['last_id']}"


def test_it_lists_nothing_in_openais_shape(client_a: Any) -> None:
    assert client_a.get("/v1/files").json() == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


def test_it_lists_newest_first_by_default(client_a: Any) -> None:
    ids = upload_many(client_a, 3)
    assert ids_of(client_a.get("/v1/files")) == ids[::-1]


def test_it_lists_oldest_first_with_order_asc(client_a: Any) -> None:
    ids = upload_many(client_a, 3)
    assert ids_of(client_a.get("/v1/files?order=asc")) == ids


def test_it_lists_file_objects_as_uploaded(client_a: Any) -> None:
    created = upload(client_a, b"listed").json()
    assert client_a.get("/v1/files").json()["data"] == [created]


def test_it_cuts_a_page_at_limit_and_says_there_is_more(client_a: Any) -> None:
    ids = upload_many(client_a, 3)
    body = client_a.get("/v1/files?limit=2").json()
    assert [file["id"] for file in body["data"]] == [ids[2], ids[1]]
    assert (body["first_id"], body["last_id"], body["has_more"]) == (ids[2], ids[1], True)


def test_it_says_there_is_no_more_on_an_exactly_full_last_page(client_a: Any) -> None:
    upload_many(client_a, 2)
    assert client_a.get("/v1/files?limit=2").json()["has_more"] is False


def test_it_continues_after_the_cursor(client_a: Any) -> None:
    ids = upload_many(client_a, 4)
    assert ids_of(client_a.get(f"/v1/files?after={ids[2]}")) == [ids[1], ids[0]]
    assert ids_of(client_a.get(f"/v1/files?order=asc&after={ids[1]}")) == [ids[2], ids[3]]


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_paging_yields_every_file_once_in_order(client_a: Any, order: str) -> None:
    ids = upload_many(client_a, 5)
    expected = ids if order == "asc" else ids[::-1]
    assert page_through(client_a, f"order={order}&limit=2") == expected


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_paging_is_exact_when_files_share_a_created_at(client_a: Any, order: str) -> None:
    ids = upload_many(client_a, 5)
    File.objects.update(created_at=timezone.now())
    seen = page_through(client_a, f"order={order}&limit=2")
    assert sorted(seen) == sorted(ids)
    assert len(seen) == 5


def test_it_filters_by_purpose(client_a: Any) -> None:
    assistants = upload_many(client_a, 2)
    batch = upload_many(client_a, 2, purpose="batch")
    assert ids_of(client_a.get("/v1/files?purpose=batch")) == batch[::-1]
    assert ids_of(client_a.get("/v1/files?purpose=assistants&order=asc")) == assistants
    assert ids_of(client_a.get("/v1/files?purpose=vision")) == []


def test_it_leaves_deleted_files_out(client_a: Any) -> None:
    ids = upload_many(client_a, 3)
    client_a.delete(f"/v1/files/{ids[1]}")
    assert ids_of(client_a.get("/v1/files")) == [ids[2], ids[0]]


def test_it_refuses_a_deleted_file_as_cursor(client_a: Any) -> None:
    ids = upload_many(client_a, 2)
    client_a.delete(f"/v1/files/{ids[1]}")
    response = client_a.get(f"/v1/files?after={ids[1]}")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "after"


def test_it_refuses_an_unknown_cursor(client_a: Any) -> None:
    response = client_a.get("/v1/files?after=file-nope")
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "Invalid 'after': no file 'file-nope' in this list.",
            "type": "invalid_request_error",
            "param": "after",
            "code": None,
        }
    }


def test_it_lists_the_account_named_in_the_header_only(tenant_a: Tenant) -> None:
    provider_account_create(organization=tenant_a.org, name="archive", kind="local", config={})
    default_file = upload(tenant_a.client, b"default").json()["id"]
    archive_file = upload(tenant_a.client, b"archive", account="archive").json()["id"]
    assert ids_of(tenant_a.client.get("/v1/files")) == [default_file]
    assert ids_of(tenant_a.client.get("/v1/files", HTTP_X_PROVIDER_ACCOUNT="archive")) == [archive_file]


def test_it_refuses_a_cursor_from_another_account_of_the_same_org(tenant_a: Tenant) -> None:
    provider_account_create(organization=tenant_a.org, name="archive", kind="local", config={})
    archive_file = upload(tenant_a.client, b"archive", account="archive").json()["id"]
    assert tenant_a.client.get(f"/v1/files?after={archive_file}").status_code == 400


def test_it_leaves_expired_files_out(client_a: Any) -> None:
    ids = upload_many(client_a, 2)
    File.objects.filter(public_id=ids[0]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert ids_of(client_a.get("/v1/files")) == [ids[1]]


@pytest.mark.parametrize(
    ("query", "param", "message"),
    [
        ("limit=0", "limit", "Invalid value for 'limit': must be between 1 and 10000."),
        ("limit=10001", "limit", "Invalid value for 'limit': must be between 1 and 10000."),
        ("limit=many", "limit", "Invalid value for 'limit': expected an integer."),
        ("order=newest", "order", "Invalid value for 'order': expected 'asc' or 'desc'."),
        ("after=" + "x" * 129, "after", "Ensure this field has no more than 128 characters."),
        # Empty values are not "not given" (found by the fuzz test).
        ("purpose=", "purpose", "Invalid value for 'purpose': must not be empty."),
        ("purpose=%20", "purpose", "Invalid value for 'purpose': must not be empty."),
        ("after=", "after", "Invalid value for 'after': must not be empty."),
        ("limit=", "limit", "Invalid value for 'limit': expected an integer."),
        ("order=", "order", "Invalid value for 'order': expected 'asc' or 'desc'."),
    ],
)
def test_it_refuses_invalid_query_parameters(client_a: Any, query: str, param: str, message: str) -> None:
    response = client_a.get(f"/v1/files?{query}")
    assert response.status_code == 400
    assert response.json() == {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    }


def test_it_accepts_the_largest_limit(client_a: Any) -> None:
    upload_many(client_a, 1)
    assert len(ids_of(client_a.get("/v1/files?limit=10000"))) == 1
