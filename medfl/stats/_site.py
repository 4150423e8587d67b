"""What a site computes for statistics and GLMs, under the limits of its own policy.

Statistics: its description, guarded (``medfl.stats._guard``) before it leaves. GLM:
the site builds its design matrix from the formula and the federation's vocabulary,
checks its policy before it answers anything (enough rows, enough rows per parameter,
no small category cell, both outcome classes large enough, a federation large
enough), then returns only sums: X'WX, X'Wz, deviance, Pearson and log-likelihood sums
at the coefficients the server sends.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from medfl.data import SiteSummary, SiteTable, prepare_site, summarize
from medfl.errors import DataError, DisclosureRefusal, SpecError
from medfl.spec import Experiment
from medfl.spec._policy import SitePolicy
from medfl.stats._describe import Description, describe
from medfl.stats._formula import Formula, design_matrix, design_names, parse_formula
from medfl.stats._glm import Family, GlmTerms, site_terms
from medfl.stats._guard import guard
from medfl.stats._noise import NoisePlan, clip, noise_plan, noised

SITE_EFFECT = "site"


@dataclass(frozen=True)
class GlmPlan:
    """What the server sends before the first iteration."""

    vocabulary: dict[str, list[str]]
    sites: list[str]  # every site taking part, in order (site effect, minimum sites)


@dataclass(frozen=True)
class DescribeRequest:
    sites: int  # how many sites take part (the policy's minimum)
    edges: dict[str, np.ndarray] | None = None  # shared bin edges; None: the first pass
    by_outcome: bool = False

    def to_json(self) -> str:
        edges = None if self.edges is None else {c: e.tolist() for c, e in self.edges.items()}
        return json.dumps({"sites": self.sites, "edges": edges, "byOutcome": self.by_outcome})

    @classmethod
    def from_json(cls, text: str) -> DescribeRequest:
        d = json.loads(text)
        edges = d["edges"]
        if edges is not None:
            edges = {c: np.array(e, dtype=float) for c, e in edges.items()}
        return cls(d["sites"], edges, d["byOutcome"])


@dataclass
class GlmStart:
    rows: int
    outcome_sum: float | None  # only where the starting step needs the mean (not binomial)


def glm_formula(experiment: Experiment) -> Formula:
    """The formula, checked against the schema: the outcome is the target or a numeric
    column, and so are the offset and weights columns."""
    schema, spec = experiment.data_schema, experiment.glm
    text = spec.formula or (f"{schema.target.column} ~ " + " + ".join(schema.features))
    formula = parse_formula(text, schema.numeric, schema.categorical, "glm.formula")
    problems = []
    if formula.outcome != schema.target.column and formula.outcome not in schema.numeric:
        problems.append(
            ("glm.formula", f"the outcome {formula.outcome!r} is neither the schema's target "
             f"({schema.target.column!r}) nor one of its numeric columns")
        )  # fmt: skip
    for field, column in (("glm.offset", spec.offset), ("glm.weights", spec.weights)):
        if column is not None and column not in schema.numeric:
            problems.append((field, f"{column!r} is not one of the schema's numeric columns"))
    if problems:
        raise SpecError(problems)
    return formula


def _effect_sites(experiment: Experiment, plan: GlmPlan) -> list[str]:
    """Sites with a column of their own: all but the first, or, with no intercept and
    no categorical term to take that place, all of them."""
    formula = glm_formula(experiment)
    full = not formula.intercept and not formula.categorical
    return list(plan.sites) if full else list(plan.sites[1:])


def glm_names(experiment: Experiment, plan: GlmPlan) -> list[str]:
    formula = glm_formula(experiment)
    names = design_names(formula, plan.vocabulary)
    if experiment.glm.site_effect:
        full = not formula.intercept and not formula.categorical
        mark = "" if full else "T."
        names += [f"{SITE_EFFECT}[{mark}{s}]" for s in _effect_sites(experiment, plan)]
    return names


class StatsSite:
    """One site's rows and the GLM sums it may release."""

    def __init__(
        self,
        experiment: Experiment,
        name: str,
        policy: SitePolicy | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.experiment = experiment
        self.name = name
        self.policy = policy or SitePolicy()
        # The noise must be unknown to the server: fresh OS entropy, never the run's seed.
        self._rng = rng or np.random.default_rng()
        self._table: SiteTable | None = None
        self._data: tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None] | None = (
            None
        )

    def _load(self) -> SiteTable:
        if self._table is None:
            site = next(s for s in self.experiment.sites if s.name == self.name)
            self._table = prepare_site(site, self.experiment.data_schema)
        return self._table

    def hello(self) -> SiteSummary:
        """The names of its category levels (over all rows: a GLM uses every row), for
        the shared vocabulary; no counts and no sums, which pass its guards later."""
        table, schema = self._load(), self.experiment.data_schema
        found = summarize(self.name, table.features, table.features, schema)
        levels = {c: dict.fromkeys(found.levels[c], 0) for c in schema.categorical}
        return SiteSummary(self.name, 0, {c: (0, 0.0, 0.0) for c in schema.numeric}, levels)

    def prepare(self, plan: GlmPlan) -> GlmStart:
        """Build the design; refuse, naming the limit, what this site's policy forbids.
        Refusals say which limit, never the small count itself."""
        limits = self.policy.disclosure
        if len(plan.sites) < limits.min_sites:
            self._refuse(
                f"the federation has {len(plan.sites)} site(s), its policy needs {limits.min_sites}"
            )
        x, y, offset, weights, names, levels = self._design(plan)
        self._check_outcome(y)
        if len(y) < limits.min_rows:
            self._refuse(f"fewer usable rows than its policy's minimum of {limits.min_rows}")
        if len(names) > limits.max_parameters_per_row * len(y):
            need = math.ceil(len(names) / limits.max_parameters_per_row)
            self._refuse(
                f"{len(names)} parameters need at least {need} usable rows here (its policy: "
                f"at most {limits.max_parameters_per_row:g} parameters per row)"
            )
        self._check_cells(levels, y, limits.min_cell_count)
        self._data = (x, y, offset, weights)
        family = self.experiment.glm.family
        return GlmStart(len(y), None if family == "binomial" else float(y.sum()))

    def _check_outcome(self, y: np.ndarray) -> None:
        family, outcome = self.experiment.glm.family, glm_formula(self.experiment).outcome
        if family == "binomial" and not np.isin(y, (0.0, 1.0)).all():
            raise DataError(
                f"site {self.name!r}: the binomial family needs a 0/1 outcome, and "
                f"{outcome!r} has other values here (the schema's target is 0/1)",
                site=self.name,
                column=outcome,
            )
        if family == "poisson" and ((y < 0).any() or (y != np.round(y)).any()):
            raise DataError(
                f"site {self.name!r}: the Poisson family needs counts (whole numbers >= 0), "
                f"and {outcome!r} has other values here",
                site=self.name,
                column=outcome,
            )

    def describe(self, request: DescribeRequest) -> dict[str, Description]:
        """This site's description (per outcome stratum when asked), as its policy lets
        it out. Keys: "all", and "positive" / "negative" with ``by_outcome``."""
        limits = self.policy.disclosure
        if request.sites < limits.min_sites:
            self._refuse(
                f"the federation has {request.sites} site(s), its policy needs {limits.min_sites}",
                "statistics",
            )
        self._check_noise(limits.max_statistics_epsilon)
        table, schema = self._load(), self.experiment.data_schema
        spec, plan = self.experiment.statistics, noise_plan(self.experiment)
        frame = table.features if plan is None else clip(table.features, plan)
        groups = {"all": np.ones(len(table.y), dtype=bool)}
        if request.by_outcome:
            groups |= {"positive": table.y == 1, "negative": table.y == 0}
        found = {
            label: describe(
                frame[rows], schema.numeric, schema.categorical, request.edges,
                spec.correlate or None,
            )
            for label, rows in groups.items()
        }  # fmt: skip
        if plan is not None:
            found = self._noised(found, plan)
            # Noisy extremes are bin edges of the noisy histogram, no patient's value.
            limits = limits.model_copy(update={"release_extremes": True})
        return {label: guard(d, limits, self.name) for label, d in found.items()}

    def _check_noise(self, most: float | None) -> None:
        noise = self.experiment.statistics.noise
        if most is not None and (noise is None or noise.epsilon > most):
            asked = "exact statistics" if noise is None else f"epsilon {noise.epsilon:g}"
            self._refuse(
                f"its policy releases statistics only with noise of epsilon at most {most:g} "
                f"(statistics.noise), and the experiment asks for {asked}",
                "statistics",
            )

    def _noised(self, found: dict[str, Description], plan: NoisePlan) -> dict[str, Description]:
        """Each patient is in one noised group: "all" is the sum of the outcome groups
        when there are any (parallel composition: epsilon is spent once)."""
        if "positive" not in found:
            return {"all": noised(found["all"], plan, self._rng)}
        positive = noised(found["positive"], plan, self._rng)
        negative = noised(found["negative"], plan, self._rng)
        return {"all": positive + negative, "positive": positive, "negative": negative}

    @property
    def prepared(self) -> bool:
        return self._data is not None

    def terms(self, beta: np.ndarray | None, mean_y: float) -> GlmTerms:
        assert self._data is not None, "prepare() before terms()"
        x, y, offset, weights = self._data
        family = Family(self.experiment.glm.family)
        return site_terms(family, x, y, beta, mean_y, offset, weights)

    def _refuse(self, why: str, what: str = "the GLM") -> None:
        raise DisclosureRefusal(f"site {self.name!r} refuses {what}: {why}", site=self.name)

    def _design(self, plan: GlmPlan):  # type: ignore[no-untyped-def]
        """The complete rows' design, outcome, offset and weights; names in column order."""
        spec, table = self.experiment.glm, self._load()
        formula = glm_formula(self.experiment)
        frame = table.features
        x, rows = design_matrix(frame, formula, plan.vocabulary)
        y = self._outcome(formula, table)[rows]
        offset, weights = (
            frame[c].astype(float).to_numpy()[rows] if c else None
            for c in (spec.offset, spec.weights)
        )
        keep = ~np.isnan(y)
        for extra in (offset, weights):
            if extra is not None:
                keep &= ~np.isnan(extra)
        x, y = x[keep], y[keep]
        used = frame[rows][keep]
        levels = {t: used[t].astype(str).value_counts().to_dict() for t in formula.categorical}
        offset = offset[keep] if offset is not None else None
        weights = weights[keep] if weights is not None else None
        if spec.site_effect:
            own = [float(self.name == s) for s in _effect_sites(self.experiment, plan)]
            x = np.hstack([x, np.tile(own, (len(y), 1))])
        return x, y, offset, weights, glm_names(self.experiment, plan), levels

    def _outcome(self, formula: Formula, table: SiteTable) -> np.ndarray:
        if formula.outcome == self.experiment.data_schema.target.column:
            return table.y.astype(float)
        return table.features[formula.outcome].astype(float).to_numpy()

    def _check_cells(self, levels: dict[str, dict[str, int]], y: np.ndarray, least: int) -> None:
        """No category level of 1..least-1 rows among the rows used (an indicator's X'X
        entry is its count; the reference level's is the rest), and, for the binomial,
        no outcome class that small."""
        small = [
            f"{column}={level}"
            for column, counts in levels.items()
            for level, count in counts.items()
            if 0 < count < least
        ]
        if self.experiment.glm.family == "binomial":
            for label, count in (("positive", int(y.sum())), ("negative", int(len(y) - y.sum()))):
                if count < least:
                    small.append(f"the {label} outcome")
        if small:
            self._refuse(
                f"fewer than {least} rows (its policy's minimum cell) in: {', '.join(small)}"
            )
