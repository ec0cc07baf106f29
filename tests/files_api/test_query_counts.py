"""Query budgets of the small requests on the hot path (see bench/ for their latency).

A retrieve of a stored file is two queries (the key with its organisation, the file with its
account), a list three (key, account, page; four with ``after``). With the key in the API-key cache
(API_KEY_CACHE_SECONDS) and the account in the account cache (PROVIDER_ACCOUNT_CACHE_SECONDS), a
retrieve is one query: the file. The budget allows three for a
retrieve so that a future pass-through status refresh still fits.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from tenants.models import ApiKey
from tests.conftest import Tenant, upload

# The first request of a minute takes a rate-limit lease (one more query): no test may straddle two.
pytestmark = pytest.mark.usefixtures("fresh_minute")


def _uploaded(tenant: Tenant, count: int = 1) -> list[str]:
    ids = []
    for index in range(count):
        response = upload(tenant.client, f"file {index}".encode(), filename=f"f{index}.txt")
        assert response.status_code == 200, response.json()
        ids.append(response.json()["id"])
    # The key's first use writes last_used_at (once per API_KEY_LAST_USED_RESOLUTION_SECONDS); the
    # budgets below are for the steady state.
    tenant.client.get("/v1/files?limit=1")
    return ids


def test_retrieve_makes_at_most_3_queries(tenant_a: Tenant, django_assert_max_num_queries: Any) -> None:
    (file_id,) = _uploaded(tenant_a)
    with django_assert_max_num_queries(3):
        response = tenant_a.client.get(f"/v1/files/{file_id}")
    assert response.status_code == 200
    assert response.json()["id"] == file_id


def test_retrieve_of_an_unknown_id_makes_at_most_3_queries(
    tenant_a: Tenant, django_assert_max_num_queries: Any
) -> None:
    _uploaded(tenant_a)
    with django_assert_max_num_queries(3):
        response = tenant_a.client.get("/v1/files/file-doesnotexist000000000000")
    assert response.status_code == 404


def test_list_makes_at_most_3_queries_whatever_the_page_size(
    tenant_a: Tenant, django_assert_max_num_queries: Any
) -> None:
    ids = _uploaded(tenant_a, count=5)
    with django_assert_max_num_queries(3):
        response = tenant_a.client.get("/v1/files?limit=3")
    body = response.json()
    assert [item["id"] for item in body["data"]] == ids[::-1][:3]
    assert body["has_more"] is True
    with django_assert_max_num_queries(3):
        assert len(tenant_a.client.get("/v1/files?limit=100").json()["data"]) == 5


def test_list_after_a_cursor_makes_at_most_4_queries(tenant_a: Tenant, django_assert_max_num_queries: Any) -> None:
    ids = _uploaded(tenant_a, count=3)
    with django_assert_max_num_queries(4):
        response = tenant_a.client.get(f"/v1/files?limit=10&after={ids[2]}")
    assert [item["id"] for item in response.json()["data"]] == [ids[1], ids[0]]


def test_a_retrieve_with_a_cached_key_and_account_makes_1_query(
    tenant_a: Tenant, django_assert_num_queries: Any
) -> None:
    (file_id,) = _uploaded(tenant_a)
    tenant_a.client.get(f"/v1/files/{file_id}")
    with django_assert_num_queries(1):
        assert tenant_a.client.get(f"/v1/files/{file_id}").status_code == 200


def test_auth_looks_the_key_up_by_its_indexed_prefix(tenant_a: Tenant, settings: Any) -> None:
    (file_id,) = _uploaded(tenant_a)
    settings.API_KEY_CACHE_SECONDS = 0
    with CaptureQueriesContext(connection) as captured:
        assert tenant_a.client.get(f"/v1/files/{file_id}").status_code == 200
    key_queries = [query["sql"] for query in captured.captured_queries if '"tenants_apikey"' in query["sql"]]
    assert len(key_queries) == 1
    assert '"tenants_apikey"."prefix" =' in key_queries[0]
    assert ApiKey._meta.get_field("prefix").unique  # a unique constraint is an index on every backend

    lookup = ApiKey.objects.filter(prefix=tenant_a.key[:12])
    if connection.vendor == "postgresql":
        # A table of two rows is cheaper to scan, so ask the planner what it does when it must choose.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            plan = lookup.explain()
        assert "Index" in plan, plan
    else:
        plan = lookup.explain()
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan
