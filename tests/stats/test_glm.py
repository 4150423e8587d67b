"""Federated GLMs equal statsmodels on the pooled rows: coefficients and standard
errors to 1e-8, the same iterations give or take one, for the three families."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from medfl.data import Preprocessor, prepare_site, summarize
from medfl.errors import SpecError
from medfl.spec import parse_experiment
from medfl.stats import (
    GlmTerms,
    SingularDesignError,
    design_matrix,
    design_names,
    fit,
    parse_formula,
    site_terms,
)
from medfl.stats._glm import Family
from tests.helpers import heart_spec

NUMERIC = ["age", "trestbps", "thalch", "oldpeak"]
CATEGORICAL = ["sex", "cp", "exang"]


@pytest.fixture(scope="module")
def heart() -> tuple[list[tuple[pd.DataFrame, np.ndarray]], dict[str, list[str]]]:
    """The four hospitals' rows (features, 0/1 outcome) and the federation's vocabulary."""
    spec = parse_experiment(heart_spec(NUMERIC, CATEGORICAL))
    tables = [prepare_site(site, spec.data_schema) for site in spec.sites]
    summaries = [summarize(t.site, t.features, t.features, spec.data_schema) for t in tables]
    vocabulary = Preprocessor.from_summaries(spec.data_schema, summaries).vocabulary
    return [(t.features, t.y.astype(float)) for t in tables], vocabulary


def _federated(
    sites: list[tuple[np.ndarray, np.ndarray, dict[str, Any]]], family: str, names: list[str]
):
    mean_y = sum(y.sum() for _, y, _ in sites) / sum(len(y) for _, y, _ in sites)
    calls: list[int] = []

    def ask(beta: np.ndarray | None) -> GlmTerms:
        calls.append(1)
        parts = [site_terms(Family(family), x, y, beta, mean_y, **kw) for x, y, kw in sites]
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total

    return fit(ask, names, family), len(calls)  # type: ignore[arg-type]


def _designs(heart, formula_text: str, outcome: Any):
    frames, vocabulary = heart
    formula = parse_formula(formula_text, NUMERIC, CATEGORICAL, "formula")
    sites = []
    for frame, y in frames:
        x, rows = design_matrix(frame, formula, vocabulary)
        sites.append((x, outcome(frame, y)[rows]))
    return sites, design_names(formula, vocabulary)


def _compare(ours, theirs) -> None:
    np.testing.assert_allclose(ours.params_, theirs.params, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours.bse_, theirs.bse, rtol=0, atol=1e-8)
    assert abs(ours.iterations_ - theirs.fit_history["iteration"]) <= 1
    assert ours.deviance_ == pytest.approx(theirs.deviance, abs=1e-8)
    assert ours.aic_ == pytest.approx(theirs.aic, abs=1e-6)
    assert ours.loglik_ == pytest.approx(theirs.llf, abs=1e-6)
    assert ours.converged_ and theirs.converged
    summary = ours.summary
    np.testing.assert_allclose(summary["p"], theirs.pvalues, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(summary[["ci_low", "ci_high"]], theirs.conf_int(), atol=1e-8)


def test_logistic_regression_equals_statsmodels_on_the_pooled_rows(heart) -> None:
    sites, names = _designs(heart, "num ~ age + sex + C(cp) + thalch + exang", lambda f, y: y)

    ours, _ = _federated([(x, y, {}) for x, y in sites], "binomial", names)

    x = np.vstack([s[0] for s in sites])
    y = np.concatenate([s[1] for s in sites])
    theirs = sm.GLM(y, x, family=sm.families.Binomial()).fit()
    _compare(ours, theirs)
    assert names == [
        "Intercept", "age", "sex[T.Male]", "cp[T.atypical angina]", "cp[T.non-anginal]",
        "cp[T.typical angina]", "thalch", "exang[T.TRUE]",
    ]  # fmt: skip
    assert ours.summary.loc["sex[T.Male]", "odds ratio"] == pytest.approx(np.exp(theirs.params[2]))


def test_poisson_regression_with_offset_and_weights_equals_statsmodels(heart) -> None:
    rng = np.random.default_rng(3)
    sites, names = _designs(heart, "num ~ age + C(sex) + oldpeak", lambda f, y: np.ones(len(f)))
    counted = []
    for x, _ in sites:
        exposure = rng.uniform(0.5, 3.0, len(x))
        rate = np.exp(-3 + 0.03 * x[:, 1] + 0.4 * x[:, 2] + 0.2 * x[:, 3])
        counted.append(
            (x, rng.poisson(rate * exposure).astype(float), exposure, rng.uniform(0.5, 2, len(x)))
        )

    ours, _ = _federated(
        [(x, y, {"offset": np.log(e), "weights": w}) for x, y, e, w in counted], "poisson", names
    )

    stack = [np.concatenate([c[i] for c in counted]) for i in (1, 2, 3)]
    x = np.vstack([c[0] for c in counted])
    theirs = sm.GLM(
        stack[0], x, family=sm.families.Poisson(), offset=np.log(stack[1]), var_weights=stack[2]
    ).fit()
    _compare(ours, theirs)
    assert "rate ratio" in ours.summary.columns


def test_linear_regression_equals_statsmodels_with_its_scale(heart) -> None:
    sites, names = _designs(
        heart, "thalch ~ age + sex + C(cp) + trestbps", lambda f, y: f["thalch"].to_numpy(float)
    )
    # rows missing the outcome are left out at each site, like a missing term
    sites = [(x[~np.isnan(y)], y[~np.isnan(y)]) for x, y in sites]

    ours, _ = _federated([(x, y, {}) for x, y in sites], "gaussian", names)

    x = np.vstack([s[0] for s in sites])
    y = np.concatenate([s[1] for s in sites])
    theirs = sm.GLM(y, x, family=sm.families.Gaussian()).fit()
    _compare(ours, theirs)
    assert ours.scale_ == pytest.approx(theirs.scale, rel=1e-12)
    assert "odds ratio" not in ours.summary.columns


def test_perfect_separation_is_explained(heart) -> None:
    rng = np.random.default_rng(0)
    x = np.column_stack([np.ones(60), rng.normal(size=60)])
    y = (x[:, 1] > 0).astype(float)  # the predictor separates the outcome completely
    halves = [(x[:30], y[:30], {}), (x[30:], y[30:], {})]

    ours, _ = _federated(halves, "binomial", ["Intercept", "marker"])

    assert len(ours.warnings_) == 1
    assert ours.warnings_[0].startswith(
        "perfect separation: 60 of 60 rows are predicted with probability 0 or 1, so some "
        "coefficients grow without bound"
    )


def test_singular_design_names_the_dependent_column() -> None:
    rng = np.random.default_rng(1)
    age = rng.normal(50, 10, 40)
    x = np.column_stack([np.ones(40), age, 2 * age + 1])  # the third copies the first two
    y = (rng.random(40) < 0.5).astype(float)

    with pytest.raises(SingularDesignError) as err:
        _federated([(x, y, {})], "binomial", ["Intercept", "age", "age_months"])

    assert err.value.columns == ["age_months"]
    assert str(err.value).startswith(
        "the design is singular: age_months is a linear combination of the other columns"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("num age", "'num age' is not 'outcome ~ term + term ...'"),
        ("num ~ weight",
         "'weight' is not a schema column (age, trestbps, thalch, oldpeak, sex, cp, exang)"),
        ("num ~ C(age)", "C(age): 'age' is numeric in the schema; list it under categorical"),
        ("num ~ age + age", "'age' appears twice"),
        ("num ~ log(age)", "cannot read the term 'log(age)' (use name, C(name), - 1)"),
        ("num ~ age +", "'num ~ age +' has a '+' or '-' with no term after it"),
        ("age ~ age + sex", "the outcome 'age' is also a term"),
    ],
)  # fmt: skip
def test_formula_mistakes_are_named(text: str, message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_formula(text, NUMERIC, CATEGORICAL, "glm.formula")

    assert err.value.problems == [("glm.formula", message)]


def test_formula_without_intercept() -> None:
    formula = parse_formula("num ~ age + C(sex) - 1", NUMERIC, CATEGORICAL, "f")

    assert (formula.intercept, formula.terms) == (False, ("age", "sex"))


def test_statsmodels_warns_where_we_explain() -> None:
    """Our separation rule matches statsmodels' own signal on the same data."""
    rng = np.random.default_rng(0)
    x = np.column_stack([np.ones(60), rng.normal(size=60)])
    y = (x[:, 1] > 0).astype(float)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sm.GLM(y, x, family=sm.families.Binomial()).fit()
    assert any("separation" in str(w.message).lower() for w in caught)
