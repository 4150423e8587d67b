"""Federated descriptive statistics from per-site sums.

A site sends, per numeric column, its count, missing count, mean and sum of squared
deviations (M2), min and max, and counts on shared bin edges; per categorical column
the count of each level; for chosen numeric columns, the co-moment matrix of its
complete rows. The server combines them with Chan et al.'s parallel update, which
keeps the federation's mean, variance and covariance equal to the pooled ones to
rounding (no sum-of-squares cancellation). What a site's policy suppresses is None
here and left out of the sums (``medfl.stats._guard``); ``suppressed`` says what.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medfl.data._prepare import MISSING_LEVEL


@dataclass
class Moments:
    """Count, mean and M2 = sum((x - mean)^2) of one column (or the federation's)."""

    n: int
    mean: float
    m2: float

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        if len(values) == 0:
            return cls(0, 0.0, 0.0)
        mean = float(values.mean())
        return cls(len(values), mean, float(((values - mean) ** 2).sum()))

    def __add__(self, other: Moments) -> Moments:
        n = self.n + other.n
        if n == 0:
            return Moments(0, 0.0, 0.0)
        delta = other.mean - self.mean
        mean = self.mean + delta * other.n / n
        m2 = self.m2 + other.m2 + delta**2 * self.n * other.n / n
        return Moments(n, mean, m2)

    @property
    def variance(self) -> float | None:
        """The sample variance (n - 1), as pandas gives it."""
        return self.m2 / (self.n - 1) if self.n > 1 else None


@dataclass
class NumericSummary:
    moments: Moments | None  # None: suppressed
    missing: int
    minimum: float | None
    maximum: float | None
    histogram: list[int | None] = field(default_factory=list)  # counts between shared edges

    def __add__(self, other: NumericSummary) -> NumericSummary:
        mine, theirs = self.moments, other.moments
        moments = mine + theirs if mine and theirs else mine or theirs
        known = not (self._withheld_extremes or other._withheld_extremes)
        return NumericSummary(
            moments,
            self.missing + other.missing,
            _pick(min, self.minimum, other.minimum) if known else None,
            _pick(max, self.maximum, other.maximum) if known else None,
            [_plus(a, b) for a, b in zip(self.histogram, other.histogram, strict=True)],
        )

    @property
    def _withheld_extremes(self) -> bool:
        """Values but no min/max: a site withheld them, so no total range is known."""
        return self.minimum is None and (self.moments is None or self.moments.n > 0)

    @property
    def sd(self) -> float | None:
        var = self.moments.variance if self.moments else None
        return None if var is None else float(np.sqrt(var))


def _plus(a: int | None, b: int | None) -> int | None:
    """A sum of released cells; a cell suppressed everywhere stays suppressed."""
    return None if a is None and b is None else (a or 0) + (b or 0)


def _pick(choose, a: float | None, b: float | None) -> float | None:  # type: ignore[no-untyped-def]
    values = [v for v in (a, b) if v is not None]
    return choose(values) if values else None


@dataclass
class CoMoments:
    """Count, mean vector and co-moment matrix sum((x - mean)(x - mean)^T) of the
    complete rows of some numeric columns."""

    columns: list[str]
    n: int
    mean: np.ndarray
    c: np.ndarray

    def __add__(self, other: CoMoments) -> CoMoments:
        n = self.n + other.n
        if n == 0:
            return self
        delta = other.mean - self.mean
        mean = self.mean + delta * other.n / n
        c = self.c + other.c + np.outer(delta, delta) * self.n * other.n / n
        return CoMoments(self.columns, n, mean, c)

    @property
    def covariance(self) -> pd.DataFrame:
        return pd.DataFrame(self.c / (self.n - 1), index=self.columns, columns=self.columns)

    @property
    def correlation(self) -> pd.DataFrame:
        sd = np.sqrt(np.diag(self.c))
        return pd.DataFrame(self.c / np.outer(sd, sd), index=self.columns, columns=self.columns)


@dataclass
class Description:
    """One site's (or, added up, the federation's) description of its rows."""

    rows: int
    numeric: dict[str, NumericSummary]
    levels: dict[str, dict[str, int | None]]
    comoments: CoMoments | None = None
    suppressed: list[str] = field(default_factory=list)  # what the sites withheld, and why
    withheld: list[str] = field(default_factory=list)  # sites that released nothing here

    def __add__(self, other: Description) -> Description:
        levels = {
            column: {
                k: _plus(self.levels[column].get(k), other.levels[column].get(k))
                for k in sorted(set(self.levels[column]) | set(other.levels[column]))
            }
            for column in self.levels
        }
        mine, theirs = self.comoments, other.comoments
        return Description(
            self.rows + other.rows,
            {c: self.numeric[c] + other.numeric[c] for c in self.numeric},
            levels,
            mine + theirs if mine and theirs else mine or theirs,
            self.suppressed + other.suppressed,
            self.withheld + other.withheld,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, floats exact (JSON keeps a float's repr)."""
        return {
            "rows": self.rows,
            "numeric": {c: _numeric_dict(n) for c, n in self.numeric.items()},
            "levels": self.levels,
            "comoments": None if self.comoments is None else {
                "columns": self.comoments.columns, "n": self.comoments.n,
                "mean": self.comoments.mean.tolist(), "c": self.comoments.c.tolist(),
            },
            "suppressed": self.suppressed,
            "withheld": self.withheld,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Description:
        co = d["comoments"]
        comoments = None
        if co is not None:
            mean, c = np.array(co["mean"], dtype=float), np.array(co["c"], dtype=float)
            comoments = CoMoments(co["columns"], co["n"], mean, c)
        numeric = {c: _numeric_of(v) for c, v in d["numeric"].items()}
        return cls(
            d["rows"], numeric, d["levels"], comoments, list(d["suppressed"]), list(d["withheld"])
        )


def _numeric_dict(n: NumericSummary) -> dict[str, Any]:
    m = n.moments
    return {
        "moments": None if m is None else [m.n, m.mean, m.m2],
        "missing": n.missing, "minimum": n.minimum, "maximum": n.maximum,
        "histogram": n.histogram,
    }  # fmt: skip


def _numeric_of(d: dict[str, Any]) -> NumericSummary:
    m = d["moments"]
    moments = None if m is None else Moments(int(m[0]), float(m[1]), float(m[2]))
    return NumericSummary(moments, d["missing"], d["minimum"], d["maximum"], d["histogram"])


def describe(
    frame: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    edges: dict[str, np.ndarray] | None = None,
    cross: list[str] | None = None,
) -> Description:
    """What a site computes from its own rows. ``edges``: the shared bin edges per
    numeric column (values outside them count in the first or last bin)."""
    summaries = {}
    for column in numeric:
        values = frame[column].astype(float).to_numpy()
        present = values[~np.isnan(values)]
        bins = (edges or {}).get(column)
        histogram = _histogram(present, bins) if bins is not None else []
        summaries[column] = NumericSummary(
            Moments.of(present),
            int(np.isnan(values).sum()),
            float(present.min()) if len(present) else None,
            float(present.max()) if len(present) else None,
            histogram,
        )
    levels: dict[str, dict[str, int | None]] = {}
    for column in categorical:
        counts = frame[column].astype(object).fillna(MISSING_LEVEL).value_counts()
        levels[column] = {str(k): int(v) for k, v in counts.items()}
    return Description(len(frame), summaries, levels, _comoments(frame, cross) if cross else None)


def _histogram(values: np.ndarray, edges: np.ndarray) -> list[int | None]:
    clipped = np.clip(values, edges[0], edges[-1])
    return [int(c) for c in np.histogram(clipped, bins=edges)[0]]


def _comoments(frame: pd.DataFrame, columns: list[str]) -> CoMoments:
    rows = frame[columns].astype(float).dropna().to_numpy()
    if len(rows) == 0:
        return CoMoments(columns, 0, np.zeros(len(columns)), np.zeros((len(columns),) * 2))
    mean = rows.mean(axis=0)
    centred = rows - mean
    return CoMoments(columns, len(rows), mean, centred.T @ centred)


def shared_edges(summary: NumericSummary, bins: int = 20) -> np.ndarray:
    """Equal-width edges over the federation's range where min and max are released,
    else over its mean ± 4 standard deviations (values beyond count in the end bins)."""
    low, high = summary.minimum, summary.maximum
    if low is None or high is None:
        moments, sd = summary.moments, summary.sd
        if moments is None or not sd:
            return np.array([0.0, 1.0])
        low, high = moments.mean - 4 * sd, moments.mean + 4 * sd
    if low == high:
        return np.array([low - 0.5, high + 0.5])
    return np.linspace(low, high, bins + 1)


def quantile(histogram: list[int | None], edges: np.ndarray, q: float) -> float | None:
    """The q-quantile from binned counts, linear within the bin (an approximation whose
    error is at most one bin width). A suppressed bin (fewer rows than a site's cell
    minimum, or its secondary) counts as empty: the estimate is then rougher."""
    counts = np.asarray([c or 0 for c in histogram], dtype=float)
    total = counts.sum()
    if total == 0:
        return None
    target = q * total
    cumulative = np.concatenate([[0.0], np.cumsum(counts)])
    i = int(np.searchsorted(cumulative, target, side="left"))
    i = min(max(i, 1), len(counts))
    inside = counts[i - 1]
    fraction = 0.0 if inside == 0 else (target - cumulative[i - 1]) / inside
    return float(edges[i - 1] + fraction * (edges[i] - edges[i - 1]))
