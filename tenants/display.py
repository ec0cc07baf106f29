"""How byte counts and times read in Django admin: "12.3 GiB of 100 GiB (12%)", "2026-11-26 14:03 UTC".

Sizes use binary units (1 GiB = 1024 MiB), the units the default limits are set in.
``parse_size`` is the inverse of ``format_size_exact``: a limit shown in a form is saved unchanged.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

UNITS = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))
# Decimal units too, for people who type "GB": a gigabyte is 10**9 bytes, as the unit says.
_FACTORS = {
    "b": 1,
    "byte": 1,
    "bytes": 1,
    **{name.lower(): factor for name, factor in UNITS},
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
}
_SIZE = re.compile(r"\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[A-Za-z]*)\s*")
SIZE_HELP = "A number and a unit: 512 MiB, 100 GiB, 1.5 TiB (1 GiB = 1024 MiB; GB and MB are powers of 1000)."


def format_size(nbytes: int) -> str:
    """Rounded to one decimal in the largest unit that fits: "12.3 GiB", "100 GiB", "512 bytes"."""
    for name, factor in UNITS:
        if abs(nbytes) >= factor:
            value = f"{nbytes / factor:.1f}".removesuffix(".0")
            return f"{value} {name}"
    return _bytes(nbytes)


def format_size_exact(nbytes: int) -> str:
    """The size in the largest unit that states it exactly in three decimals, else in bytes."""
    for name, factor in UNITS:
        value = Decimal(nbytes) / factor
        if abs(value) >= 1 and value == value.quantize(Decimal("0.001")):
            return f"{value.normalize():f} {name}"
    return _bytes(nbytes)


def _bytes(nbytes: int) -> str:
    return "1 byte" if nbytes == 1 else f"{nbytes} bytes"


def parse_size(text: str) -> int:
    """Bytes for "100 GiB", "512MiB", "1.5 gib" or "5000" (bytes). Raises ``ValueError`` naming the problem."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"Enter a size such as 512 MiB or 100 GiB, not {text.strip()!r}.")
    unit = match["unit"].lower() or "bytes"
    if unit not in _FACTORS:
        raise ValueError(f"Unknown unit {match['unit']!r}: use MiB, GiB or TiB.")
    try:
        nbytes = Decimal(match["number"]) * _FACTORS[unit]
    except InvalidOperation:
        raise ValueError(f"{match['number']!r} is not a number.") from None
    return int(nbytes.to_integral_value())


def usage_percent(used: int, quota: int) -> float:
    return 100.0 if quota <= 0 else 100.0 * used / quota


def format_usage(used: int, quota: int) -> str:
    """ "12.3 GiB of 100 GiB (12%)"; a small non-zero use reads "(<1%)" rather than "(0%)"."""
    percent = usage_percent(used, quota)
    shown = "<1" if 0 < percent < 1 else f"{percent:.0f}"
    return f"{format_size(used)} of {format_size(quota)} ({shown}%)"


def usage_html(used: int, quota: int) -> SafeString:
    """A small bar (green, orange from 75%, red from 90%) followed by ``format_usage``."""
    percent = usage_percent(used, quota)
    colour = "#c62828" if percent >= 90 else "#ef6c00" if percent >= 75 else "#2e7d32"
    return format_html(
        '<span class="usage-bar" style="display:inline-block;vertical-align:middle;width:100px;height:10px;'
        'background:#e0e0e0;border-radius:3px;margin-right:6px">'
        '<span style="display:block;width:{}%;height:10px;background:{};border-radius:3px"></span></span>{}',
        f"{min(percent, 100.0):.1f}",
        colour,
        format_usage(used, quota),
    )


def format_time(moment: datetime | None) -> str:
    """In the current time zone, with its name: "2026-11-26 14:03:05 UTC"; "-" for none."""
    if moment is None:
        return "-"
    local = timezone.localtime(moment)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"
