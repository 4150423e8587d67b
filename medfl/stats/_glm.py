"""Federated GLMs by IRLS: each site returns X'WX, X'Wz, its deviance and a few sums at
the server's coefficients; the server adds them and takes the Newton step. The sums
equal the pooled ones, so the fit is the pooled fit, step for step.

The iteration follows statsmodels' ``GLM.fit()`` (IRLS): the same starting means, the
same weights and working response, convergence when the deviance changes by at most
``tol`` (absolute), the covariance from the last weighted least-squares step, and the
Pearson chi-square scale for the Gaussian family.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import special, stats

FamilyName = Literal["binomial", "poisson", "gaussian"]
_EDGE = 1e-8  # a fitted probability this close to 0 or 1 counts as perfectly predicted
# (statsmodels' own test: every |mu - y| within 1e-8)


@dataclass(frozen=True)
class Family:
    """A family with its canonical link: logit, log or identity."""

    name: FamilyName

    def link(self, mu: np.ndarray) -> np.ndarray:
        if self.name == "binomial":
            return np.log(mu / (1 - mu))
        return np.log(mu) if self.name == "poisson" else mu

    def mean(self, eta: np.ndarray) -> np.ndarray:
        if self.name == "binomial":
            return np.clip(special.expit(eta), np.finfo(float).eps, 1 - np.finfo(float).eps)
        return np.exp(eta) if self.name == "poisson" else eta

    def link_deriv(self, mu: np.ndarray) -> np.ndarray:
        if self.name == "binomial":
            return 1 / (mu * (1 - mu))
        return 1 / mu if self.name == "poisson" else np.ones_like(mu)

    def variance(self, mu: np.ndarray) -> np.ndarray:
        if self.name == "binomial":
            return mu * (1 - mu)
        return mu.copy() if self.name == "poisson" else np.ones_like(mu)

    def starting_mu(self, y: np.ndarray, mean_y: float) -> np.ndarray:
        """statsmodels' start: (y + 1/2) / 2 for the binomial, else (y + mean(y)) / 2,
        with the federation's mean of y."""
        return (y + 0.5) / 2 if self.name == "binomial" else (y + mean_y) / 2

    def deviance(self, y: np.ndarray, mu: np.ndarray, w: np.ndarray) -> float:
        if self.name == "binomial":
            return float(-2 * np.sum(w * (special.xlogy(y, mu) + special.xlogy(1 - y, 1 - mu))))
        if self.name == "poisson":
            return float(2 * np.sum(w * (special.xlogy(y, y / mu) - (y - mu))))
        return float(np.sum(w * (y - mu) ** 2))

    def loglik(self, y: np.ndarray, mu: np.ndarray, w: np.ndarray) -> float:
        """The log-likelihood but for the Gaussian's, which needs the scale (see ``fit``)."""
        if self.name == "binomial":
            return float(np.sum(w * (special.xlogy(y, mu) + special.xlogy(1 - y, 1 - mu))))
        if self.name == "poisson":
            return float(np.sum(w * (special.xlogy(y, mu) - mu - special.gammaln(y + 1))))
        return float(np.sum(np.log(w)))

    @property
    def ratio(self) -> str | None:
        """What exp(coefficient) means, where the link makes it meaningful."""
        return {"binomial": "odds ratio", "poisson": "rate ratio"}.get(self.name)


@dataclass
class GlmTerms:
    """One site's (or the federation's) sums at one set of coefficients. Aggregates
    only: matrices of cross-products and scalar sums, never a row."""

    xtwx: np.ndarray
    xtwz: np.ndarray
    deviance: float
    pearson: float  # sum of w (y - mu)^2 / V(mu)
    loglik: float
    n: int
    edge: int = 0  # rows whose fitted probability is 0 or 1 to within 1e-8

    def __add__(self, other: GlmTerms) -> GlmTerms:
        return GlmTerms(
            self.xtwx + other.xtwx,
            self.xtwz + other.xtwz,
            self.deviance + other.deviance,
            self.pearson + other.pearson,
            self.loglik + other.loglik,
            self.n + other.n,
            self.edge + other.edge,
        )


def site_terms(
    family: Family,
    x: np.ndarray,
    y: np.ndarray,
    beta: np.ndarray | None,
    mean_y: float = 0.0,
    offset: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> GlmTerms:
    """What a site sends for ``beta`` (None: the starting step, from ``mean_y``)."""
    offset = np.zeros(len(y)) if offset is None else offset
    w = np.ones(len(y)) if weights is None else weights
    if beta is None:
        mu = family.starting_mu(y, mean_y)
        eta = family.link(mu)
    else:
        eta = x @ beta + offset
        with np.errstate(over="ignore"):  # a diverging fit (separation) saturates; said later
            mu = family.mean(eta)
    irls = w / (family.link_deriv(mu) ** 2 * family.variance(mu))
    z = eta + family.link_deriv(mu) * (y - mu) - offset
    edge = int(np.sum((mu < _EDGE) | (mu > 1 - _EDGE))) if family.name == "binomial" else 0
    return GlmTerms(
        xtwx=(x * irls[:, None]).T @ x,
        xtwz=x.T @ (irls * z),
        deviance=family.deviance(y, mu, w),
        pearson=float(np.sum(w * (y - mu) ** 2 / family.variance(mu))),
        loglik=family.loglik(y, mu, w),
        n=len(y),
        edge=edge,
    )


class SingularDesignError(ValueError):
    """The design's columns are linearly dependent; ``columns`` are the ones to drop."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns
        super().__init__(
            f"the design is singular: {', '.join(columns)} "
            f"{'is a linear combination' if len(columns) == 1 else 'are linear combinations'} "
            "of the other columns (a level no row has, a column that never varies, or "
            "one column copying others); drop or merge them"
        )


def dependent_columns(xtwx: np.ndarray, names: list[str]) -> list[str]:
    """Columns that add nothing to the rank of the ones before them."""
    scale = np.sqrt(np.clip(np.diag(xtwx), 1e-300, None))
    unit = xtwx / np.outer(scale, scale)  # rank from the correlation-like matrix
    kept: list[int] = []
    out = []
    for j in range(len(names)):
        trial = [*kept, j]
        block = unit[np.ix_(trial, trial)]
        if np.diag(xtwx)[j] <= 0 or np.linalg.matrix_rank(block, tol=1e-10) < len(trial):
            out.append(names[j])
        else:
            kept.append(j)
    return out


@dataclass
class GlmResult:
    """A fitted GLM, statsmodels-style: ``summary`` has coef, se, z, p, CI (and the
    odds or rate ratio with its CI where the link gives one)."""

    family: FamilyName
    names: list[str]
    params_: np.ndarray
    cov_: np.ndarray
    scale_: float
    deviance_: float
    loglik_: float
    aic_: float
    nobs_: int
    iterations_: int
    converged_: bool
    warnings_: list[str] = field(default_factory=list)

    @property
    def bse_(self) -> np.ndarray:
        return np.sqrt(np.diag(self.cov_))

    @property
    def summary(self) -> pd.DataFrame:
        se = self.bse_
        z = self.params_ / se
        # statsmodels: normal-based inference for every family (use_t=False)
        p = 2 * stats.norm.sf(np.abs(z))
        q = stats.norm.ppf(0.975)
        table = pd.DataFrame(
            {
                "coef": self.params_,
                "se": se,
                "z": z,
                "p": p,
                "ci_low": self.params_ - q * se,
                "ci_high": self.params_ + q * se,
            },
            index=self.names,
        )
        ratio = Family(self.family).ratio
        if ratio:
            table[ratio] = np.exp(table["coef"])
            table[f"{ratio} ci_low"] = np.exp(table["ci_low"])
            table[f"{ratio} ci_high"] = np.exp(table["ci_high"])
        return table


def _number(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else float(value)


def glm_dict(result: GlmResult) -> dict[str, object]:
    """The fit as JSON would hold it (camelCase; undefined numbers as null)."""
    table = result.summary
    rows = [
        {"term": name, **{c: _number(v) for c, v in zip(table.columns, row, strict=True)}}
        for name, row in zip(result.names, table.to_numpy(dtype=float), strict=True)
    ]
    return {
        "family": result.family,
        "coefficients": rows,
        "deviance": result.deviance_,
        "logLikelihood": result.loglik_,
        "aic": result.aic_,
        "scale": result.scale_,
        "observations": result.nobs_,
        "iterations": result.iterations_,
        "converged": result.converged_,
        "warnings": result.warnings_,
    }


Ask = Callable[[np.ndarray | None], GlmTerms]


def fit(
    ask: Ask,
    names: list[str],
    family: FamilyName,
    maxiter: int = 100,
    tol: float = 1e-8,
) -> GlmResult:
    """IRLS over ``ask(beta)``, the federation's summed terms at ``beta`` (None: the
    starting step). Raises SingularDesignError naming the dependent columns."""
    fam = Family(family)
    terms = ask(None)
    deviances = [math.inf, terms.deviance]
    beta = np.zeros(len(names))
    cov_base = terms.xtwx
    converged = False
    while not converged and len(deviances) - 1 <= maxiter:
        cov_base = terms.xtwx
        beta = _solve(terms.xtwx, terms.xtwz, names)
        terms = ask(beta)
        deviances.append(terms.deviance)
        converged = abs(deviances[-1] - deviances[-2]) <= tol
    iterations = len(deviances) - 2
    p = len(names)
    scale = 1.0 if fam.name != "gaussian" else terms.pearson / (terms.n - p)
    loglik = terms.loglik
    if fam.name == "gaussian":  # statsmodels' llf: at the ML scale, deviance / n
        ml = terms.deviance / terms.n
        loglik = -0.5 * (terms.n + terms.n * math.log(2 * math.pi * ml)) + 0.5 * terms.loglik
    result = GlmResult(
        family=family,
        names=names,
        params_=beta,
        cov_=scale * np.linalg.inv(cov_base),
        scale_=scale,
        deviance_=terms.deviance,
        loglik_=loglik,
        aic_=-2 * loglik + 2 * p,
        nobs_=terms.n,
        iterations_=iterations,
        converged_=converged,
    )
    result.warnings_ = _warnings(fam, terms, result, maxiter)
    return result


def _solve(xtwx: np.ndarray, xtwz: np.ndarray, names: list[str]) -> np.ndarray:
    dependent = dependent_columns(xtwx, names)
    if dependent:
        raise SingularDesignError(dependent)
    return np.linalg.solve(xtwx, xtwz)


def _warnings(fam: Family, terms: GlmTerms, result: GlmResult, maxiter: int) -> list[str]:
    out = []
    if fam.name == "binomial" and terms.edge:
        whole = terms.edge == terms.n
        out.append(
            f"{'perfect' if whole else 'quasi-complete'} separation: {terms.edge} of "
            f"{terms.n} rows are predicted with probability 0 or 1, so some coefficients "
            "grow without bound and their standard errors and p-values mean nothing"
            + _suspects(result)
            + "; drop or merge the predictor(s) that separate the outcome, or collect more data"
        )
    if not result.converged_:
        out.append(
            f"did not converge in {maxiter} iterations (the deviance still changed by more "
            "than the tolerance): the estimates are not final"
        )
    return out


def _suspects(result: GlmResult) -> str:
    huge = [n for n, se in zip(result.names, result.bse_, strict=True) if se > 1e3]
    return f" (largest standard errors: {', '.join(huge)})" if huge else ""
