"""Table 1: the cohort by site and overall (and by outcome), from released figures only.

An aggregated figure that lacks what some site withheld is marked "≥" (a count) or
left out (a range); a site that released nothing shows "withheld".
"""

from __future__ import annotations

import numpy as np

from medfl.data._prepare import MISSING_LEVEL
from medfl.stats._describe import Description, NumericSummary, quantile
from medfl.stats._federated import StatsReport

SUPPRESSED = "suppressed"
WITHHELD = "withheld"


def _mean_sd(n: NumericSummary) -> str:
    if n.moments is None:
        return SUPPRESSED
    if n.moments.n == 0:
        return "-"
    sd = n.sd
    return f"{n.moments.mean:.1f} ({sd:.1f})" if sd is not None else f"{n.moments.mean:.1f}"


def _median_iqr(n: NumericSummary, edges: np.ndarray) -> str:
    if n.moments is None:
        return SUPPRESSED
    q = [quantile(n.histogram, edges, p) for p in (0.5, 0.25, 0.75)]
    if any(v is None for v in q):
        return "-"
    return f"{q[0]:.1f} [{q[1]:.1f}, {q[2]:.1f}]"


def _range(n: NumericSummary) -> str:
    if n.minimum is None or n.maximum is None:
        return "-" if n.moments is not None and n.moments.n == 0 else WITHHELD
    return f"{n.minimum:g} to {n.maximum:g}"


def _level(counts: dict[str, int | None], level: str, rows: int) -> str:
    """n (% of the column's rows); % of all rows, so a suppressed cell skews nothing."""
    count = counts.get(level)
    if count is None:
        return SUPPRESSED if level in counts else "0"
    return f"{count} ({100 * count / rows:.1f}%)" if rows else str(count)


class _Column:
    """One column of the table: a site's description, or an aggregate with the site
    descriptions it was added up from (to know where it is partial)."""

    def __init__(self, name: str, desc: Description, parts: list[Description]) -> None:
        self.name, self.desc, self.parts = name, desc, parts

    def at_least(self, cell: str, lacking: bool) -> str:
        partial = lacking or bool(self.desc.withheld and self.parts)
        return f"≥{cell}" if partial and cell not in (SUPPRESSED, "0", "-") else cell

    def level(self, column: str, level: str) -> str:
        if self.desc.withheld and not self.parts:
            return WITHHELD
        cell = _level(self.desc.levels[column], level, self.desc.rows)
        lacking = any(p.levels[column].get(level, 0) is None for p in self.parts)
        return self.at_least(cell, lacking)

    def numeric(self, render, column: str) -> str:  # type: ignore[no-untyped-def]
        if self.desc.withheld and not self.parts:
            return WITHHELD
        return render(self.desc.numeric[column])


def _columns(report: StatsReport) -> list[_Column]:
    sites = report.sites
    out = [_Column("overall", report.overall["all"], [g["all"] for g in sites.values()])]
    out += [_Column(site, groups["all"], []) for site, groups in sites.items()]
    out += [
        _Column(f"outcome {g}", d, [groups[g] for groups in sites.values()])
        for g, d in report.overall.items()
        if g != "all"
    ]
    return out


def table1(report: StatsReport) -> tuple[list[str], list[list[str]]]:
    """Header and rows: the overall column, then each site, then the outcome groups."""
    columns = _columns(report)
    header = ["", *(c.name for c in columns)]
    patients = [c.at_least(str(c.desc.rows), False) if c.parts else
                (WITHHELD if c.desc.withheld else str(c.desc.rows)) for c in columns]  # fmt: skip
    rows = [["patients", *patients]]
    overall = report.overall["all"]
    for column, summary in overall.numeric.items():
        edges = report.edges[column]
        rows.append([f"{column}, mean (SD)", *(c.numeric(_mean_sd, column) for c in columns)])
        median = [c.numeric(lambda n, e=edges: _median_iqr(n, e), column) for c in columns]
        rows.append([f"{column}, median [IQR]", *median])
        if any(c.desc.numeric[column].minimum is not None for c in columns):
            rows.append([f"{column}, range", *(c.numeric(_range, column) for c in columns)])
        if summary.missing:
            missing = [c.numeric(lambda n: str(n.missing), column) for c in columns]
            rows.append([f"{column}, missing", *missing])
    for column, counts in overall.levels.items():
        rows.append([f"{column}, n (%)", *([""] * len(columns))])
        for level in counts:
            label = "missing" if level == MISSING_LEVEL else level
            rows.append([f"  {label}", *(c.level(column, level) for c in columns)])
    return header, rows
