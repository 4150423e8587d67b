"""Laplace noise on released statistics: the scale each query gets, what the
federation reports, and that the exact figures come back when epsilon is huge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medfl.data import prepare_site
from medfl.errors import DataError, SpecError
from medfl.spec import parse_experiment
from medfl.spec._policy import Disclosure, SitePolicy
from medfl.stats._describe import describe
from medfl.stats._federated import InProcessStats, describe_federation
from medfl.stats._noise import NOISE_SCOPE, clip, noise_plan, noised
from medfl.stats._site import DescribeRequest
from tests.helpers import deep_merge, make_sites

BOUNDS = {"age": [18.0, 100.0], "bp": [60.0, 240.0]}
OPEN = SitePolicy(disclosure=Disclosure(min_cell_count=1, min_rows=1, release_extremes=True))


def _spec(tmp_path: Path, epsilon: float, **statistics: Any) -> dict[str, Any]:
    noise = {"noise": {"epsilon": epsilon, "bounds": BOUNDS}}
    return deep_merge(make_sites(tmp_path), {"statistics": {**noise, **statistics}})


def test_queries_and_their_share_of_epsilon(tmp_path) -> None:
    plan = noise_plan(parse_experiment(_spec(tmp_path, 2.0, correlate=["age", "bp"])))

    assert plan is not None
    # rows 1 + 2 numeric columns x 5 + 2 categorical + 3 for the covariance
    assert (plan.queries, plan.epsilon_per_query) == (16, 2.0 / 16)
    assert plan.centre("age") == (59.0, 41.0)


def test_each_query_gets_laplace_noise_of_its_sensitivity_over_its_share(tmp_path) -> None:
    experiment = parse_experiment(_spec(tmp_path, 1.0))
    plan = noise_plan(experiment)
    assert plan is not None
    frame = prepare_site(experiment.sites[0], experiment.data_schema).features
    exact = describe(clip(frame, plan), ["age", "bp"], ["sex", "smoker"])
    rng = np.random.default_rng(0)

    draws = [noised(exact, plan, rng) for _ in range(3000)]

    rows = np.array([d.rows for d in draws], dtype=float)
    # Laplace(b) has standard deviation b * sqrt(2); b = 1 / (1 / 13) for a count
    assert rows.std() == pytest.approx(13 * np.sqrt(2), rel=0.08)
    assert rows.mean() == pytest.approx(exact.rows, abs=1.5)
    sums = np.array([d.numeric["age"].moments.n * (d.numeric["age"].moments.mean - 59.0)
                     for d in draws if d.numeric["age"].moments.n > 150])  # fmt: skip
    assert len(sums) > 2500
    moments = exact.numeric["age"].moments
    assert moments is not None
    exact_sum = moments.n * (moments.mean - 59.0)
    assert np.median(sums) == pytest.approx(exact_sum, abs=0.2 * 41 * 13)


def test_a_huge_epsilon_gives_back_the_exact_figures_of_the_clipped_rows(tmp_path) -> None:
    exact_spec = make_sites(tmp_path)
    noisy = parse_experiment(_spec(tmp_path, 1e9, correlate=["age", "bp"]))
    exact = parse_experiment(deep_merge(exact_spec, {"statistics": {"correlate": ["age", "bp"]}}))
    policies = {s.name: OPEN for s in exact.sites}

    got = describe_federation(noisy, InProcessStats(noisy, policies)).overall["all"]
    want = describe_federation(exact, InProcessStats(exact, policies)).overall["all"]

    assert got.rows == want.rows == 450
    for column in ("age", "bp"):  # no value of the synthetic sites lies outside BOUNDS
        a, b = got.numeric[column].moments, want.numeric[column].moments
        assert a is not None and b is not None
        assert (a.n, a.mean, a.m2) == (b.n, pytest.approx(b.mean, abs=1e-6), pytest.approx(
            b.m2, rel=1e-6))  # fmt: skip
    assert got.levels == want.levels
    assert got.comoments is not None and want.comoments is not None
    np.testing.assert_allclose(got.comoments.covariance, want.comoments.covariance, rtol=1e-6)


class _Counting(InProcessStats):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests: list[DescribeRequest] = []

    def describe(self, request: DescribeRequest):  # type: ignore[no-untyped-def]
        self.requests.append(request)
        return super().describe(request)


def test_the_federation_asks_once_with_edges_from_the_bounds_and_reports_the_plan(
    tmp_path,
) -> None:
    experiment = parse_experiment(_spec(tmp_path, 3.0, bins=4, byOutcome=True))
    transport = _Counting(experiment)

    report = describe_federation(experiment, transport)

    assert len(transport.requests) == 1  # no exact first pass for the edges
    assert report.edges["age"].tolist() == [18.0, 38.5, 59.0, 79.5, 100.0]
    assert report.privacy == {
        "mechanism": "laplace",
        "epsilon": 3.0,
        "queries": 13,
        "epsilonPerQuery": 3.0 / 13,
        "bounds": BOUNDS,
        "scope": NOISE_SCOPE,
    }
    for groups in report.sites.values():  # each patient noised once: all = the two groups
        assert groups["all"].rows == groups["positive"].rows + groups["negative"].rows
    assert report.to_dict()["privacy"]["epsilon"] == 3.0


def test_the_noise_comes_from_the_site_not_from_the_runs_seed(tmp_path) -> None:
    experiment = parse_experiment(_spec(tmp_path, 0.5))

    first = describe_federation(experiment, InProcessStats(experiment)).to_dict()
    second = describe_federation(experiment, InProcessStats(experiment)).to_dict()

    # dozens of noisy counts and sums: all equal twice would mean predictable noise
    assert first != second


def test_a_noisy_covariance_is_still_a_covariance(tmp_path) -> None:
    experiment = parse_experiment(_spec(tmp_path, 0.1, correlate=["age", "bp"]))
    plan = noise_plan(experiment)
    assert plan is not None
    frame = prepare_site(experiment.sites[0], experiment.data_schema).features
    exact = describe(clip(frame, plan), ["age", "bp"], ["sex", "smoker"], None, ["age", "bp"])
    rng = np.random.default_rng(1)

    for _ in range(200):
        co = noised(exact, plan, rng).comoments
        assert co is not None
        assert np.linalg.eigvalsh(co.c).min() >= -1e-9 * max(1.0, float(np.abs(co.c).max()))
        sd = np.sqrt(np.diag(co.c))
        if (sd > 0).all():
            assert np.all(np.abs(co.correlation.to_numpy()) <= 1 + 1e-9)


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        ({"age": [18, 100]}, "statistics.noise.bounds: no range for 'bp' (every numeric "
         "column needs its public [low, high])"),
        ({**BOUNDS, "chol": [0, 700]}, "statistics.noise.bounds: 'chol' is not one of the "
         "schema's numeric columns ['age', 'bp']"),
    ],
)  # fmt: skip
def test_bounds_must_cover_exactly_the_numeric_columns(
    tmp_path, bounds: dict[str, list[float]], message: str
) -> None:
    doc = deep_merge(make_sites(tmp_path), {"statistics": {"noise": {"epsilon": 1}}})
    doc["statistics"]["noise"]["bounds"] = bounds

    with pytest.raises(SpecError) as err:
        parse_experiment(doc)

    assert err.value.problems == [("", message)]


def test_a_range_the_wrong_way_round_is_named(tmp_path) -> None:
    doc = _spec(tmp_path, 1.0)
    doc["statistics"]["noise"]["bounds"]["age"] = [100, 18]

    with pytest.raises(SpecError) as err:
        parse_experiment(doc)

    assert err.value.problems == [
        ("statistics.noise.bounds", "age: expected [low, high] with low < high, got [100.0, 18.0]")
    ]


@pytest.mark.parametrize(
    ("epsilon", "asked"), [(None, "exact statistics"), (5.0, "epsilon 5")]
)  # fmt: skip
def test_a_site_whose_policy_demands_noise_refuses_less(
    tmp_path, epsilon: float | None, asked: str
) -> None:
    doc = make_sites(tmp_path) if epsilon is None else _spec(tmp_path, epsilon)
    experiment = parse_experiment(doc)
    strict = SitePolicy(disclosure=Disclosure(max_statistics_epsilon=1.0))

    with pytest.raises(DataError) as err:
        describe_federation(experiment, InProcessStats(experiment, {"site-b": strict}))

    assert str(err.value) == (
        "site 'site-b' refuses statistics: its policy releases statistics only with noise of "
        f"epsilon at most 1 (statistics.noise), and the experiment asks for {asked}"
    )
