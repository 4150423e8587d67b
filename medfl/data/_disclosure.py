"""What a site lets out about its rows for training, under its policy's disclosure limits.

The same cell rule as the statistics' guards: a count of 1 to ``minCellCount - 1`` is
suppressed, with a second count where one alone could be recovered from a known total.
Applied at the site to its data report (published in result.json and by ``medfl
validate``), to the aggregates the shared encoding is built from (sent to the server),
and to its metrics: a split whose outcome classes are that small reports none.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from medfl.data._prepare import SiteReport
from medfl.data._preprocess import SiteSummary
from medfl.spec._policy import Disclosure


def suppress_cells(counts: list[int | None], least: int) -> tuple[list[int | None], int, int]:
    """Primary and secondary suppression of one table's cells; how many cells were
    small, and how many more were hidden so those cannot be recovered from the total."""
    out = [None if c is not None and 0 < c < least else c for c in counts]
    small = sum(1 for a, b in zip(counts, out, strict=True) if a is not None and b is None)
    rest = [(c, i) for i, c in enumerate(out) if c]
    if small == 1 and rest:
        out[min(rest)[1]] = None
        return out, small, 1
    return out, small, 0


def _small(count: int | None, least: int) -> bool:
    return count is not None and 0 < count < least


def released_report(report: SiteReport, limits: Disclosure) -> SiteReport:
    """The data report as the site publishes it; ``suppressed`` says what was hidden."""
    least, said = limits.min_cell_count, list[str]()
    out = replace(report, limits=limits.model_dump(mode="json", by_alias=True))
    if _small(report.positives, least) or _small(report.negatives, least):
        out.positives = None  # negatives = rows - positives goes with it
        said.append("outcome class counts (one is under the cell minimum)")
    lost = (report.rows_without_outcome, report.rows_dropped_missing)
    if any(_small(c, least) for c in lost):
        out.rows_without_outcome, out.rows_dropped_missing = (
            None if _small(c, least) else c for c in lost
        )
        out.rows_read = None  # with it, the hidden count is the difference
        said.append("rows without outcome / dropped for missing values, and rows read")
    small = sorted(c for c, n in report.missing.items() if _small(n, least))
    if small:
        out.missing = {c: None if c in small else n for c, n in report.missing.items()}
        said.append(f"missing-value counts of {', '.join(small)}")
    out.suppressed = [f"{what}: under its policy's cell minimum of {least}" for what in said]
    return out


def released_summary(summary: SiteSummary, least: int) -> SiteSummary:
    """The encoding's aggregates as the site sends them: a column's sums over fewer
    than ``least`` values, and small level counts, go as zeros (the level names stay:
    the shared vocabulary needs them)."""
    numeric = {c: (0, 0.0, 0.0) if _small(v[0], least) else v for c, v in summary.numeric.items()}
    levels = {}
    for column, counts in summary.levels.items():
        kept, _, _ = suppress_cells(list(counts.values()), least)
        levels[column] = {k: c or 0 for k, c in zip(counts, kept, strict=True)}
    return SiteSummary(summary.site, summary.n, numeric, levels)


def withheld_split(labels: np.ndarray, least: int) -> str | None:
    """Why a split's metrics may not leave the site, or None: an outcome class of 1 to
    ``least - 1`` rows in it (its sensitivity or specificity would describe them)."""
    positives = int((labels == 1).sum())
    if _small(positives, least) or _small(len(labels) - positives, least):
        return f"an outcome class under its policy's cell minimum of {least} in this split"
    return None
