"""Fixtures shared by the provider tests."""

from __future__ import annotations

import pytest

from tests.conftest import Tenant
from tests.upstreams import FakeFilesServer, add_upstream_account


@pytest.fixture(params=["openai", "azure_openai"])
def upstream(request: pytest.FixtureRequest, tenant_a: Tenant) -> FakeFilesServer:
    """A fake upstream of each pass-through kind, with an account of tenant_a named ``up`` on it."""
    server = request.getfixturevalue("fake_openai" if request.param == "openai" else "fake_azure")
    add_upstream_account(tenant_a, server, name="up")
    return server
