"""Compare two benchmark runs figure by figure.

    .venv/bin/python bench/compare.py bench/results.md            # its "before" against its latest run
    .venv/bin/python bench/compare.py OLD.md NEW.md               # the latest run of each file

Rows are matched by measurement and kind. Each figure is judged on its gateway/direct ratio when
both runs have one (the direct baseline ran in the same run, so machine speed cancels out), else on
the gateway's own figure; "/s" figures are better higher, all others lower. A regression is a large
transfer whose ratio is more than 10% worse, or any row that missed a target the other run met (so a
memory growth of a few MiB is judged by its target, not by percent): the command then exits 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import LARGE, Row, Run, number, read_runs

REGRESSION = 0.10


def change(old: Row, new: Row) -> tuple[str, float | None]:
    """Which figure is compared ("ratio" or "gateway") and its relative change for the better (+) or worse (-)."""
    basis = "ratio" if number(old.ratio) is not None and number(new.ratio) is not None else "gateway"
    before, after = number(getattr(old, basis)), number(getattr(new, basis))
    if before is None or after is None or before == 0:
        return basis, None
    relative = (after - before) / abs(before)
    return basis, relative if "/s" in new.measurement else -relative


def verdict_of(better: float) -> str:
    if abs(better) < 0.005:
        return "same"
    return f"{better:+.0%} {'better' if better > 0 else 'worse'}"


def is_regression(old: Row, new: Row, basis: str, better: float | None) -> bool:
    """A large transfer whose ratio to direct is more than 10% worse, or any row that missed a target it met."""
    if old.met is True and new.met is False:
        return True
    return new.section == LARGE and basis == "ratio" and better is not None and better < -REGRESSION


def compare(old: Run, new: Run) -> tuple[list[list[str]], list[str]]:
    """The comparison rows, and the large transfers that regressed by more than 10%."""
    lines, regressions = [], []
    for key, row in new.rows.items():
        previous = old.rows.get(key)
        if previous is None:
            continue
        basis, better = change(previous, row)
        verdict = "" if better is None else verdict_of(better)
        if is_regression(previous, row, basis, better):
            verdict += " REGRESSION"
            regressions.append(
                f"{row.measurement} ({row.kind}): {basis} {getattr(previous, basis)} -> {getattr(row, basis)}"
            )
        lines.append(
            [row.measurement, row.kind, previous.gateway, row.gateway, previous.ratio, row.ratio, basis, verdict]
        )
    return lines, regressions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="one results file, or two")
    args = parser.parse_args()
    if len(args.files) == 1:
        runs = read_runs(args.files[0])
        if len(runs) < 2:
            parser.error(f"{args.files[0]} holds {len(runs)} run(s); give two files instead")
        old, new = runs[0], runs[-1]
    elif len(args.files) == 2:
        old, new = (read_runs(path)[-1] for path in args.files)
    else:
        parser.error("give one results file (before against after) or two (the latest run of each)")
    lines, regressions = compare(old, new)
    header = ["Measurement", "Kind", "Gateway (A)", "Gateway (B)", "Ratio (A)", "Ratio (B)", "Judged on", "B vs A"]
    widths = [max([len(header[i]), *(len(line[i]) for line in lines)]) for i in range(len(header))]
    print(f"A: {old.title}\nB: {new.title}\n")
    for line in [header, ["-" * width for width in widths], *lines]:
        print("| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)) + " |")
    if unmatched := len(new.rows.keys() - old.rows.keys()):
        print(f"\n{unmatched} rows of B have no counterpart in A (another measurement, size or kind).")
    if regressions:
        print("\nRegressions:", *regressions, sep="\n- ")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
