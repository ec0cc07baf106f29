from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from providers import registry
from tenants import ratelimits
from tests.fakes import CloudStoreProvider


@pytest.fixture
def cloudstore(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[CloudStoreProvider]]:
    """Registers the test-only ``cloudstore`` kind (see ``tests.fakes.CloudStoreProvider``)."""
    monkeypatch.setitem(registry.PROVIDERS, "cloudstore", "tests.fakes.CloudStoreProvider")
    yield CloudStoreProvider
    registry._classes.pop("cloudstore", None)
    registry.clear_cache()


def wait_for_a_fresh_minute(needed: float) -> None:
    """Sleep into the next minute unless this one has ``needed`` seconds left: a test counting requests
    in real time must not straddle two minutes, each of which starts a new count."""
    left = ratelimits.seconds_left(time.time())
    if left < needed:
        time.sleep(left + 0.05)


@pytest.fixture
def fresh_minute() -> None:
    wait_for_a_fresh_minute(5)
