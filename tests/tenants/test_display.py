"""Sizes and times as the admin shows them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.utils import timezone

from tenants.display import format_size, format_size_exact, format_time, format_usage, parse_size

GiB = 1024**3


@pytest.mark.parametrize(
    ("nbytes", "shown"),
    [(0, "0 bytes"), (1023, "1023 bytes"), (1024, "1 KiB"), (int(12.34 * GiB), "12.3 GiB"), (100 * GiB, "100 GiB")],
)
def test_sizes_read_in_binary_units(nbytes: int, shown: str) -> None:
    assert format_size(nbytes) == shown


@pytest.mark.parametrize("nbytes", [1, 5000, 512 * 1024**2, 100 * GiB, 3 * 1024**4 // 2, 123_456_789, GiB + 1])
def test_an_exact_size_parses_back_to_the_same_bytes(nbytes: int) -> None:
    assert parse_size(format_size_exact(nbytes)) == nbytes


@pytest.mark.parametrize(
    ("text", "message"), [("ten GiB", "Enter a size"), ("1 parsec", "Unknown unit"), ("", "Enter a size")]
)
def test_what_is_not_a_size_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_size(text)


@pytest.mark.parametrize(
    ("used", "quota", "shown"),
    [
        (int(12.3 * GiB), 100 * GiB, "12.3 GiB of 100 GiB (12%)"),
        (1, 100 * GiB, "1 byte of 100 GiB (<1%)"),
        (0, 100 * GiB, "0 bytes of 100 GiB (0%)"),
        (150 * GiB, 100 * GiB, "150 GiB of 100 GiB (150%)"),
    ],
)
def test_usage_reads_used_of_quota(used: int, quota: int, shown: str) -> None:
    assert format_usage(used, quota) == shown


def test_times_carry_their_zone() -> None:
    moment = datetime(2026, 11, 26, 14, 3, 5, tzinfo=UTC)
    assert format_time(moment) == "2026-11-26 14:03:05 UTC"
    with timezone.override("Europe/Paris"):
        assert format_time(moment) == "2026-11-26 15:03:05 CET"
    assert format_time(None) == "-"
