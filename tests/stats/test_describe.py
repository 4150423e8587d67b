"""Federated descriptive statistics equal pandas/numpy on the pooled rows to 1e-10."""

from __future__ import annotations

from functools import reduce

import numpy as np
import pandas as pd
import pytest

from medfl.data import prepare_site
from medfl.spec import parse_experiment
from medfl.stats._describe import Description, describe, quantile, shared_edges
from tests.helpers import heart_spec

NUMERIC = ["age", "trestbps", "chol", "thalch", "oldpeak"]
CATEGORICAL = ["sex", "cp", "slope"]


@pytest.fixture(scope="module")
def frames() -> list[pd.DataFrame]:
    spec = parse_experiment(heart_spec(NUMERIC, CATEGORICAL))
    return [prepare_site(site, spec.data_schema).features for site in spec.sites]


def _federation(parts: list[Description]) -> Description:
    return reduce(lambda a, b: a + b, parts)


def test_counts_means_variances_and_ranges_equal_the_pooled_rows(frames) -> None:
    pooled = pd.concat(frames, ignore_index=True)

    total = _federation([describe(f, NUMERIC, CATEGORICAL) for f in frames])

    assert total.rows == len(pooled) == 920
    for column in NUMERIC:
        mine, values = total.numeric[column], pooled[column].astype(float)
        assert mine.moments.n == values.count()
        assert mine.missing == values.isna().sum()
        assert mine.moments.mean == pytest.approx(values.mean(), abs=1e-10, rel=0)
        assert mine.moments.variance == pytest.approx(values.var(), abs=1e-10, rel=0)
        assert mine.sd == pytest.approx(values.std(), abs=1e-10, rel=0)
        assert (mine.minimum, mine.maximum) == (values.min(), values.max())
    for column in CATEGORICAL:
        expected = pooled[column].value_counts().to_dict()
        if pooled[column].isna().any():  # missing values count as a level of their own
            expected["__missing__"] = pooled[column].isna().sum()
        assert total.levels[column] == {str(k): v for k, v in sorted(expected.items())}


def test_covariance_and_correlation_equal_the_pooled_complete_rows(frames) -> None:
    columns = ["age", "chol", "thalch"]
    pooled = pd.concat(frames, ignore_index=True)[columns].astype(float).dropna()

    total = _federation([describe(f, NUMERIC, [], cross=columns) for f in frames])

    assert total.comoments is not None and total.comoments.n == len(pooled)
    np.testing.assert_allclose(total.comoments.covariance, pooled.cov(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(total.comoments.correlation, pooled.corr(), rtol=0, atol=1e-12)


def test_histograms_on_shared_edges_add_up_and_give_quantiles_within_a_bin(frames) -> None:
    first = _federation([describe(f, NUMERIC, []) for f in frames])
    edges = {c: shared_edges(first.numeric[c], bins=40) for c in NUMERIC}
    pooled = pd.concat(frames, ignore_index=True)

    total = _federation([describe(f, NUMERIC, [], edges=edges) for f in frames])

    for column in NUMERIC:
        values = pooled[column].astype(float).dropna().to_numpy()
        assert total.numeric[column].histogram == list(np.histogram(values, edges[column])[0])
        width = edges[column][1] - edges[column][0]
        for q in (0.25, 0.5, 0.75):
            estimate = quantile(total.numeric[column].histogram, edges[column], q)
            assert estimate is not None
            assert abs(estimate - np.quantile(values, q)) <= width, (column, q)
