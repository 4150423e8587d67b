"""Laplace noise on a site's description: epsilon-differential privacy per patient.

Neighbouring data sets differ by one patient (added or removed). Values are clipped to
the spec's public bounds and centred at their midpoint, so one patient moves a count by
1, a centred sum by r = (high - low) / 2, a centred sum of squares by r², a histogram or
a table of levels by 1 in all (L1), a vector of centred sums by the sum of the r's, and
the cross-products by the sum of r_i r_j. The budget is split evenly over these queries
(sequential composition); each gets Laplace noise of scale sensitivity / its share.
Everything after that (rounding, clamping at zero, means and variances from the noisy
sums, extremes from the noisy histogram, the guards' cell suppression) is
post-processing and costs nothing more. Sites hold different patients, so the
federation's release is epsilon-DP for each patient too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from medfl.spec import Experiment
from medfl.spec._models import StatisticsNoise
from medfl.stats._describe import CoMoments, Description, Moments, NumericSummary

QUERIES_PER_NUMERIC = 5  # missing, count, centred sum, centred sum of squares, histogram
QUERIES_FOR_CROSS = 3  # complete rows, centred sums, cross-products
FALSE_BIN = 0.01  # the chance that noise alone puts an empty bin into the range
NOISE_SCOPE = (
    "epsilon covers every count, sum, histogram and cross-product each site releases in "
    "this description (each patient is at one site, in one outcome group). Not covered: "
    "the names of category levels where the schema does not declare them (a level only "
    "one patient has shows at that site), the number of sites, and other releases about "
    "the same patients (epsilons add up over releases; GLM sums are exact, not noised)."
)


@dataclass(frozen=True)
class NoisePlan:
    """How one site noises one group's description (its patients are in no other)."""

    spec: StatisticsNoise
    numeric: list[str]
    categorical: list[str]
    cross: list[str]
    declared: dict[str, list[str]]  # public level lists (schema.levels): released at 0 too

    @property
    def queries(self) -> int:
        cross = QUERIES_FOR_CROSS if self.cross else 0
        return 1 + QUERIES_PER_NUMERIC * len(self.numeric) + len(self.categorical) + cross

    @property
    def epsilon_per_query(self) -> float:
        return self.spec.epsilon / self.queries

    def centre(self, column: str) -> tuple[float, float]:
        """The midpoint of the column's bounds, and half their width."""
        low, high = self.spec.bounds[column]
        return (low + high) / 2, (high - low) / 2

    def summary(self) -> dict[str, object]:
        return {
            "mechanism": "laplace",
            "epsilon": self.spec.epsilon,
            "queries": self.queries,
            "epsilonPerQuery": self.epsilon_per_query,
            "bounds": self.spec.bounds,
        }


def noise_plan(experiment: Experiment) -> NoisePlan | None:
    spec, schema = experiment.statistics, experiment.data_schema
    if spec.noise is None:
        return None
    declared = {c: [str(v) for v in levels] for c, levels in schema.levels.items()}
    return NoisePlan(spec.noise, schema.numeric, schema.categorical, spec.correlate, declared)


def clip(frame: pd.DataFrame, plan: NoisePlan) -> pd.DataFrame:
    """The site's rows with each numeric column clipped to its public bounds."""
    out = frame.copy()
    for column in plan.numeric:
        low, high = plan.spec.bounds[column]
        out[column] = out[column].astype(float).clip(low, high)
    return out


def bounds_edges(plan: NoisePlan, bins: int) -> dict[str, np.ndarray]:
    """Bin edges from the public bounds: no first pass over the data is needed."""
    return {c: np.linspace(*_pair(plan.spec.bounds[c]), bins + 1) for c in plan.numeric}


def _pair(bounds: list[float]) -> tuple[float, float]:
    return bounds[0], bounds[1]


class _Laplace:
    def __init__(self, plan: NoisePlan, rng: np.random.Generator) -> None:
        self.plan, self.rng = plan, rng

    def add(self, value: np.ndarray | float, sensitivity: float) -> np.ndarray:
        scale = sensitivity / self.plan.epsilon_per_query
        return np.asarray(value, dtype=float) + self.rng.laplace(0.0, scale, np.shape(value))

    def count(self, value: int | None) -> int:
        return max(int(np.rint(self.add(value or 0, 1.0))), 0)

    def counts(self, values: list[int | None]) -> list[int | None]:
        noisy = self.add(np.array([v or 0 for v in values], dtype=float), 1.0)
        return [max(int(v), 0) for v in np.rint(noisy)]


def noised(desc: Description, plan: NoisePlan, rng: np.random.Generator) -> Description:
    """``desc`` (of clipped rows) with the plan's noise: what the site may release."""
    noise = _Laplace(plan, rng)
    numeric = {c: _numeric(c, desc.numeric[c], plan, noise) for c in plan.numeric}
    levels: dict[str, dict[str, int | None]] = {}
    for column, found in desc.levels.items():
        table = dict.fromkeys(plan.declared.get(column, []), 0) | found
        levels[column] = dict(zip(table, noise.counts(list(table.values())), strict=True))
    comoments = _comoments(desc.comoments, plan, noise) if desc.comoments else None
    return Description(noise.count(desc.rows), numeric, levels, comoments, list(desc.suppressed))


def _numeric(column: str, s: NumericSummary, plan: NoisePlan, noise: _Laplace) -> NumericSummary:
    c, r = plan.centre(column)
    low, high = plan.spec.bounds[column]
    m = s.moments or Moments(0, c, 0.0)
    n = noise.count(m.n)
    total = float(noise.add(m.n * (m.mean - c), r))
    squares = float(noise.add(m.m2 + m.n * (m.mean - c) ** 2, r * r))
    mean = float(np.clip(c + total / n, low, high)) if n else 0.0
    moments = Moments(n, mean, max(squares - total * total / n, 0.0) if n else 0.0)
    histogram = noise.counts(s.histogram)
    lowest, highest = _range(histogram, np.linspace(low, high, len(histogram) + 1), noise)
    return NumericSummary(moments, noise.count(s.missing), lowest, highest, histogram)


def _range(
    histogram: list[int | None], edges: np.ndarray, noise: _Laplace
) -> tuple[float | None, float | None]:
    """The range to a bin: the outermost bins whose noisy count the noise alone would
    reach with at most 1 % chance (an empty bin passes the threshold that rarely)."""
    threshold = np.log(1 / (2 * FALSE_BIN)) / noise.plan.epsilon_per_query
    filled = [i for i, h in enumerate(histogram) if (h or 0) > threshold]
    if not filled:
        return None, None
    return float(edges[filled[0]]), float(edges[filled[-1] + 1])


def _comoments(co: CoMoments, plan: NoisePlan, noise: _Laplace) -> CoMoments:
    centres, halves = zip(*(plan.centre(c) for c in co.columns), strict=True)
    c, r = np.array(centres), np.array(halves)
    shift = co.mean - c
    sums = noise.add(co.n * shift, float(r.sum()))
    products = co.c + co.n * np.outer(shift, shift)
    upper = np.triu_indices(len(r))
    noisy = np.zeros_like(products)
    noisy[upper] = noise.add(products[upper], float(np.outer(r, r)[upper].sum()))
    noisy = noisy + np.triu(noisy, 1).T
    n = noise.count(co.n)
    if n < 2:
        return CoMoments(co.columns, 0, np.zeros(len(r)), np.zeros((len(r), len(r))))
    matrix = noisy - np.outer(sums, sums) / n
    values, vectors = np.linalg.eigh(matrix)  # nearest positive semi-definite matrix
    matrix = (vectors * np.clip(values, 0.0, None)) @ vectors.T
    return CoMoments(co.columns, n, c + sums / n, matrix)
