from __future__ import annotations

from collections.abc import Iterator

import pytest

from providers import registry
from tests.fakes import CloudStoreProvider


@pytest.fixture
def cloudstore(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[CloudStoreProvider]]:
    """Registers the test-only ``cloudstore`` kind (see ``tests.fakes.CloudStoreProvider``)."""
    monkeypatch.setitem(registry.PROVIDERS, "cloudstore", "tests.fakes.CloudStoreProvider")
    yield CloudStoreProvider
    registry._classes.pop("cloudstore", None)
    registry.clear_cache()
