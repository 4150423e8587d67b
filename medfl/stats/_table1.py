"""Table 1: the cohort by site and overall (and by outcome), from released figures only."""

from __future__ import annotations

import numpy as np

from medfl.data._prepare import MISSING_LEVEL
from medfl.stats._describe import Description, NumericSummary, quantile
from medfl.stats._federated import StatsReport

SUPPRESSED = "suppressed"


def _mean_sd(n: NumericSummary) -> str:
    if n.moments is None or n.moments.n == 0:
        return SUPPRESSED if n.moments is None else "-"
    sd = n.sd
    return f"{n.moments.mean:.1f} ({sd:.1f})" if sd is not None else f"{n.moments.mean:.1f}"


def _median_iqr(n: NumericSummary, edges: list[float]) -> str:
    cuts = np.asarray(edges)
    if n.moments is None:
        return SUPPRESSED
    q = [quantile(n.histogram, cuts, p) for p in (0.5, 0.25, 0.75)]
    if any(v is None for v in q):
        return "-"
    return f"{q[0]:.1f} [{q[1]:.1f}, {q[2]:.1f}]"


def _level(counts: dict[str, int | None], level: str, rows: int) -> str:
    """n (% of the column's rows); % of all rows, so a suppressed cell skews nothing."""
    count = counts.get(level)
    if count is None:
        return SUPPRESSED if level in counts else "0"
    return f"{count} ({100 * count / rows:.1f}%)" if rows else str(count)


def _partial(report: StatsReport, column: str, level: str) -> bool:
    return any(
        level in g["all"].levels[column] and g["all"].levels[column][level] is None
        for g in report.sites.values()
    )


def table1(report: StatsReport) -> tuple[list[str], list[list[str]]]:
    """Header and rows: the overall column, then each site, then the outcome groups."""
    columns: list[tuple[str, Description]] = [("overall", report.overall["all"])]
    columns += [(site, groups["all"]) for site, groups in report.sites.items()]
    columns += [(f"outcome {g}", d) for g, d in report.overall.items() if g != "all"]
    header = ["", *(name for name, _ in columns)]
    rows = [["patients", *(str(d.rows) for _, d in columns)]]
    overall = report.overall["all"]
    for column, summary in overall.numeric.items():
        edges = report.edges[column].tolist()
        rows.append([f"{column}, mean (SD)", *(_mean_sd(d.numeric[column]) for _, d in columns)])
        rows.append(
            [
                f"{column}, median [IQR]",
                *(_median_iqr(d.numeric[column], edges) for _, d in columns),
            ]
        )
        if summary.missing:
            rows.append(
                [f"{column}, missing", *(str(d.numeric[column].missing) for _, d in columns)]
            )
    for column, counts in overall.levels.items():
        rows.append([f"{column}, n (%)", *([""] * len(columns))])
        for level in counts:
            label = "missing" if level == MISSING_LEVEL else level
            cells = [_level(d.levels[column], level, d.rows) for _, d in columns]
            if _partial(report, column, level) and cells[0] != SUPPRESSED:
                cells[0] = f"≥{cells[0]}"  # some site withheld its count
            rows.append([f"  {label}", *cells])
    return header, rows


def table1_markdown(report: StatsReport) -> str:
    header, rows = table1(report)
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    notes = report.overall["all"].suppressed
    if notes:
        lines += ["", "Suppressed by the sites' policies:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines)
