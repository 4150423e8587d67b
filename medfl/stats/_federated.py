"""The server's side of a federated GLM, whatever carries the messages.

hello (level names, for the shared vocabulary) -> prepare (each site builds its design
and checks its policy) -> IRLS iterations, each one request per site for its sums.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial, reduce
from typing import Any, Protocol, TypeVar

import numpy as np

from medfl.data import Preprocessor, SiteSummary
from medfl.errors import DataError, MedflError, SpecError
from medfl.spec import Experiment
from medfl.spec._policy import SitePolicy
from medfl.stats._describe import Description, shared_edges
from medfl.stats._glm import GlmResult, GlmTerms, SingularDesignError, fit
from medfl.stats._noise import NOISE_SCOPE, bounds_edges, noise_plan
from medfl.stats._site import (
    DescribeRequest,
    GlmPlan,
    GlmStart,
    StatsSite,
    glm_formula,
    glm_names,
)

T = TypeVar("T")
GLM_FILE = "glm.json"  # a deployed job's output, in its run directory
STATS_FILE = "stats.json"


class StatsTransport(Protocol):
    """How the server reaches the sites for statistics: per site a value or the error."""

    def stats_hello(self, sites: list[str]) -> dict[str, SiteSummary | Exception]: ...

    def glm_prepare(self, plan: GlmPlan) -> dict[str, GlmStart | Exception]: ...

    def glm_terms(
        self, beta: np.ndarray | None, mean_y: float
    ) -> dict[str, GlmTerms | Exception]: ...

    def describe(
        self, request: DescribeRequest
    ) -> dict[str, dict[str, Description] | Exception]: ...


def _ask(call: Callable[[], T]) -> T | Exception:
    try:
        return call()
    except MedflError as exc:
        return exc
    except Exception as exc:  # a site's failure is reported by name, never a crash
        return DataError(f"{type(exc).__name__}: {exc}")


class InProcessStats:
    """Every site a StatsSite in this process (each with its own policy)."""

    def __init__(
        self, experiment: Experiment, policies: dict[str, SitePolicy] | None = None
    ) -> None:
        policies = policies or {}
        self.sites = {
            s.name: StatsSite(experiment, s.name, policies.get(s.name)) for s in experiment.sites
        }

    def stats_hello(self, sites: list[str]) -> dict[str, SiteSummary | Exception]:
        return {n: _ask(self.sites[n].hello) for n in sites}

    def glm_prepare(self, plan: GlmPlan) -> dict[str, GlmStart | Exception]:
        return {n: _ask(partial(self.sites[n].prepare, plan)) for n in plan.sites}

    def glm_terms(self, beta: np.ndarray | None, mean_y: float) -> dict[str, GlmTerms | Exception]:
        return {
            n: _ask(partial(site.terms, beta, mean_y))
            for n, site in self.sites.items()
            if site.prepared
        }

    def describe(self, request: DescribeRequest) -> dict[str, dict[str, Description] | Exception]:
        return {n: _ask(partial(site.describe, request)) for n, site in self.sites.items()}


def _values(answers: dict[str, T | Exception]) -> dict[str, T]:
    """Every site's value, or one error naming each site that failed."""
    failed = [a for a in answers.values() if isinstance(a, Exception)]
    if failed:
        raise DataError("\n".join(str(e) for e in failed))
    return answers  # type: ignore[return-value]


def fit_glm(experiment: Experiment, transport: StatsTransport) -> GlmResult:
    """The federated fit; equal to the pooled rows' fit. Raises DataError naming every
    site that refused or failed, and the columns of a singular design."""
    sites = [s.name for s in experiment.sites]
    glm_formula(experiment)  # a bad formula fails before any site is asked
    summaries = _values(transport.stats_hello(sites))
    vocabulary = Preprocessor.from_summaries(
        experiment.data_schema, list(summaries.values())
    ).vocabulary
    plan = GlmPlan(vocabulary, sites)
    starts = _values(transport.glm_prepare(plan))
    rows = sum(s.rows for s in starts.values())
    total = sum(s.outcome_sum or 0.0 for s in starts.values())

    def ask(beta: np.ndarray | None) -> GlmTerms:
        parts = _values(transport.glm_terms(beta, total / rows))
        return reduce(lambda a, b: a + b, (parts[s] for s in sites))

    spec = experiment.glm
    try:
        return fit(
            ask, glm_names(experiment, plan), spec.family, spec.max_iterations, spec.tolerance
        )
    except SingularDesignError as exc:
        raise DataError(str(exc)) from None


@dataclass
class StatsReport:
    """The federation's description: per site (as each released it) and overall, for
    every group ("all"; "positive" and "negative" by the outcome when asked)."""

    sites: dict[str, dict[str, Description]]
    overall: dict[str, Description]
    edges: dict[str, np.ndarray]
    privacy: dict[str, Any] | None = None  # the noise each site added; None: exact

    def to_dict(self) -> dict[str, object]:
        co = self.overall["all"].comoments
        matrices = None
        if co is not None and co.n > 1:
            matrices = {
                "rows": co.n,
                "covariance": co.covariance.to_numpy().tolist(),
                "correlation": co.correlation.to_numpy().tolist(),
            }
        return {
            "correlation": matrices,
            "edges": {c: e.tolist() for c, e in self.edges.items()},
            "privacy": self.privacy,
            "overall": {g: d.to_dict() for g, d in self.overall.items()},
            "sites": {
                s: {g: d.to_dict() for g, d in groups.items()} for s, groups in self.sites.items()
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StatsReport:
        return cls(
            {
                s: {g: Description.from_dict(v) for g, v in gs.items()}
                for s, gs in d["sites"].items()
            },
            {g: Description.from_dict(v) for g, v in d["overall"].items()},
            {c: np.array(e, dtype=float) for c, e in d["edges"].items()},
            d.get("privacy"),
        )


def _check_columns(experiment: Experiment) -> None:
    numeric = experiment.data_schema.numeric
    problems = [
        (f"statistics.correlate[{i}]", f"{c!r} is not one of the schema's numeric columns")
        for i, c in enumerate(experiment.statistics.correlate)
        if c not in numeric
    ]
    if problems:
        raise SpecError(problems)


def describe_federation(experiment: Experiment, transport: StatsTransport) -> StatsReport:
    """Two passes: moments (for shared bin edges), then the full description. Only what
    each site's policy releases is added up."""
    _check_columns(experiment)
    sites = [s.name for s in experiment.sites]
    _values(transport.stats_hello(sites))  # every site is there (and, over Flower, found)
    plan, bins = noise_plan(experiment), experiment.statistics.bins
    edges = _edges(experiment, transport, len(sites)) if plan is None else bounds_edges(plan, bins)
    request = DescribeRequest(len(sites), edges, experiment.statistics.by_outcome)
    second = _values(transport.describe(request))
    groups = list(second[sites[0]])
    totals = {g: reduce(lambda a, b: a + b, (second[s][g] for s in sites)) for g in groups}
    privacy = None if plan is None else {**plan.summary(), "scope": NOISE_SCOPE}
    return StatsReport(second, totals, edges, privacy)


def _edges(experiment: Experiment, transport: StatsTransport, count: int) -> dict[str, np.ndarray]:
    """A first pass (moments and, where released, ranges) for shared bin edges."""
    first = _values(transport.describe(DescribeRequest(count)))
    overall = reduce(lambda a, b: a + b, (first[s]["all"] for s in first))
    bins = experiment.statistics.bins
    return {c: shared_edges(overall.numeric[c], bins) for c in experiment.data_schema.numeric}
