"""The benchmark's tables: rows gathered during a run, rendered as Markdown, and read back to compare runs.

``bench/results.md`` holds two runs: the fixed "before" reference (issue 14's figures) above the
``AFTER_MARKER`` line, and the latest full run below it, which each full run rewrites. Other runs
(quick, partial, what-if) write a file of their own under ``bench/.work/`` in the same format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

HEADLINE = "Issue 14's figures"
LARGE = "Large transfers (may not regress by more than 10%)"
DETAIL = "Detail"
SECTIONS = (HEADLINE, LARGE, DETAIL)
COLUMNS = ("Measurement", "Kind", "Direct", "Gateway", "Gateway/direct", "Target", "Met")
# Issue 14's table reads in this order, whatever order the run measured in.
HEADLINE_ORDER = (
    "Retrieve p50",
    "Retrieves at",
    "Small uploads",
    "List of",
    "Gateway CPU per GET",
    "CPU seconds per GB uploaded",
    "CPU seconds per GB downloaded",
)
AFTER_MARKER = "<!-- Everything below this line is rewritten by bench/run.py on each full run. -->"


@dataclass(frozen=True)
class Row:
    section: str
    measurement: str
    kind: str
    direct: str
    gateway: str
    ratio: str = ""
    target: str = ""
    met: bool | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.measurement, self.kind)

    @property
    def cells(self) -> tuple[str, ...]:
        mark = "" if self.met is None else ("yes" if self.met else "**no**")
        return (self.measurement, self.kind, self.direct, self.gateway, self.ratio, self.target, mark)


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(
        self,
        section: str,
        measurement: str,
        kind: str,
        *,
        direct: str,
        gateway: str,
        ratio: str = "",
        target: str = "",
        met: bool | None = None,
    ) -> None:
        self.rows.append(Row(section, measurement, kind, direct, gateway, ratio, target, met))

    def versus(
        self,
        section: str,
        measurement: str,
        kind: str,
        *,
        direct: float,
        gateway: float,
        places: int,
        target: str = "",
        met: bool | None = None,
    ) -> None:
        """A row of two figures (``places`` decimals) and the gateway's as a multiple of the direct one."""
        self.add(
            section,
            measurement,
            kind,
            direct=f"{direct:.{places}f}",
            gateway=f"{gateway:.{places}f}",
            ratio=f"{gateway / direct:.2f}x" if direct else "",
            target=target,
            met=met,
        )

    @property
    def missed(self) -> list[str]:
        return [
            f"{row.measurement} ({row.kind}): gateway {row.gateway}"
            + (f", {row.ratio} against direct" if row.ratio else "")
            + f"; target {row.target}"
            for row in self.rows
            if row.met is False
        ]


def table(rows: list[Row]) -> list[str]:
    """A Markdown table of ``rows``, columns padded so that it also reads as plain text."""
    cells = [row.cells for row in rows]
    widths = [max([len(COLUMNS[i]), *(len(row[i]) for row in cells)]) for i in range(len(COLUMNS))]

    def line(values: tuple[str, ...]) -> str:
        return "| " + " | ".join(value.ljust(widths[i]) for i, value in enumerate(values)) + " |"

    return [line(COLUMNS), "|" + "|".join("-" * (width + 2) for width in widths) + "|", *map(line, cells)]


def headline_position(row: Row) -> int:
    return next(
        (i for i, prefix in enumerate(HEADLINE_ORDER) if row.measurement.startswith(prefix)), len(HEADLINE_ORDER)
    )


def render(results: Results, *, title: str, header: list[str], method: list[str]) -> str:
    """One run as Markdown: a ``## title``, the header lines, a table per section, then notes and misses."""
    text = [f"## {title}", "", *header]
    for section in SECTIONS:
        rows = [row for row in results.rows if row.section == section]
        if section == HEADLINE:
            rows.sort(key=headline_position)
        if rows:
            text += ["", f"### {section}", "", *table(rows)]
    text += ["", *method, ""]
    text += [f"- {note}" for note in results.notes]
    if results.missed:
        text += ["", "Missed targets:", *(f"- {miss}" for miss in results.missed)]
    return "\n".join(text) + "\n"


def write(path: Path, run: str, *, keep_before: bool) -> None:
    """Write one rendered run to ``path``; with ``keep_before``, below the file's fixed "before" part."""
    before = "# Benchmark results\n\n"
    if keep_before and path.exists():
        current = path.read_text()
        if AFTER_MARKER not in current:
            raise ValueError(f"{path} has no line {AFTER_MARKER!r}: its before part cannot be kept")
        before = current[: current.index(AFTER_MARKER) + len(AFTER_MARKER)] + "\n\n"
    path.write_text(before + run)


# --- reading results back ---------------------------------------------------------------------------

NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")


@dataclass
class Run:
    title: str
    rows: dict[tuple[str, str], Row] = field(default_factory=dict)


def number(cell: str) -> float | None:
    """The first number of a cell ("1,386", "4.38 (6.17)", "+0.87 ms", "0.62x"), or None."""
    match = NUMBER.search(cell)
    return float(match.group().replace(",", "")) if match else None


def read_runs(path: Path) -> list[Run]:
    """Every run (``## `` heading) of a results file, with its table rows by (measurement, kind)."""
    runs: list[Run] = []
    section = ""
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            runs.append(Run(title=line[3:].strip()))
            section = ""
        elif line.startswith("### "):
            section = line[4:].strip()
        elif line.startswith("|") and runs:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if len(cells) != len(COLUMNS) or cells[0] == COLUMNS[0] or set(cells[0]) <= {"-"}:
                continue
            met = {"yes": True, "**no**": False}.get(cells[6])
            row = Row(section, cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], met)
            runs[-1].rows[row.key] = row
    return [run for run in runs if run.rows]
