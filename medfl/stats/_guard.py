"""Disclosure control at the site, on its own description before it leaves.

- fewer rows than ``minRows``: nothing about them is released;
- a cell (a category level, a histogram bin) of 1 to ``minCellCount - 1`` rows is
  suppressed; where that leaves one suppressed cell in a column, whose total is known,
  the next smallest cell is suppressed too, so neither can be recovered by subtraction;
- a numeric column with 1 to ``minCellCount - 1`` values releases no mean, variance,
  range or histogram;
- min and max (each one patient's value) only where ``releaseExtremes`` allows;
- the covariance of 1 to ``minRows - 1`` complete rows is not released.
Each suppression is said in ``suppressed`` by site, column and rule, never by value.
"""

from __future__ import annotations

from dataclasses import replace

from medfl.data._disclosure import suppress_cells
from medfl.spec._policy import Disclosure
from medfl.stats._describe import Description, NumericSummary


def _said(site: str, column: str, what: str, small: int, second: int) -> str:
    said = f"site {site!r}, {column}: {small} {what} under the cell minimum suppressed"
    return said + (", and 1 more so it cannot be recovered from the total" if second else "")


def guard(desc: Description, limits: Disclosure, site: str) -> Description:
    """``desc`` as ``site`` may release it under ``limits``."""
    least = limits.min_cell_count
    if desc.rows < limits.min_rows:
        return _withheld(
            desc, site, f"site {site!r}: fewer than {limits.min_rows} rows, nothing released"
        )
    notes: list[str] = []
    numeric = {c: _numeric(c, n, limits, site, notes) for c, n in desc.numeric.items()}
    levels = {}
    for column, counts in desc.levels.items():
        names = list(counts)
        kept, small, second = suppress_cells([counts[n] for n in names], least)
        levels[column] = dict(zip(names, kept, strict=True))
        if small:
            notes.append(_said(site, column, "level(s)", small, second))
    comoments = desc.comoments
    if comoments is not None and 0 < comoments.n < limits.min_rows:
        comoments = None
        notes.append(f"site {site!r}: covariance of fewer than {limits.min_rows} complete rows")
    if not limits.release_extremes and desc.numeric:
        notes.append(f"site {site!r}: min and max withheld (its policy)")
    return Description(desc.rows, numeric, levels, comoments, desc.suppressed + notes)


def _numeric(
    column: str, summary: NumericSummary, limits: Disclosure, site: str, notes: list[str]
) -> NumericSummary:
    least = limits.min_cell_count
    if summary.moments is None or 0 < summary.moments.n < least:
        notes.append(f"site {site!r}, {column}: fewer than {least} values, nothing released")
        return NumericSummary(None, summary.missing, None, None, [None] * len(summary.histogram))
    histogram, small, second = suppress_cells(summary.histogram, least)
    if small:
        notes.append(_said(site, column, "histogram bin(s)", small, second))
    extremes = limits.release_extremes
    return replace(
        summary,
        minimum=summary.minimum if extremes else None,
        maximum=summary.maximum if extremes else None,
        histogram=histogram,
    )


def _withheld(desc: Description, site: str, why: str) -> Description:
    numeric = {
        c: NumericSummary(None, 0, None, None, [None] * len(n.histogram))
        for c, n in desc.numeric.items()
    }
    levels: dict[str, dict[str, int | None]] = {
        c: dict.fromkeys(counts) for c, counts in desc.levels.items()
    }
    return Description(0, numeric, levels, None, [*desc.suppressed, why], [site])
