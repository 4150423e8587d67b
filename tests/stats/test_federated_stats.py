"""``medfl stats``: the federation's figures from what each site's policy releases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from medfl.data import prepare_site
from medfl.data._disclosure import suppress_cells
from medfl.errors import DataError, SpecError
from medfl.spec import load_experiment, parse_experiment
from medfl.spec._policy import Disclosure, SitePolicy
from medfl.stats._describe import Description, Moments, NumericSummary
from medfl.stats._federated import InProcessStats, describe_federation
from medfl.stats._guard import guard
from medfl.stats._table1 import table1
from tests.helpers import deep_merge, make_sites

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "heart-disease" / "experiment.yaml"
OPEN = SitePolicy(disclosure=Disclosure(min_cell_count=1, min_rows=1, release_extremes=True))


@pytest.fixture(scope="module")
def heart() -> tuple[Any, pd.DataFrame]:
    experiment = load_experiment(EXAMPLE)
    experiment = experiment.model_copy(
        update={"statistics": experiment.statistics.model_copy(
            update={"correlate": ["age", "chol", "thalch"], "by_outcome": True})}
    )  # fmt: skip
    frames = []
    for site in experiment.sites:
        table = prepare_site(site, experiment.data_schema)
        frames.append(table.features.assign(outcome=table.y))
    return experiment, pd.concat(frames, ignore_index=True)


def test_without_suppression_the_figures_equal_the_pooled_rows(heart) -> None:
    experiment, pooled = heart
    open_policies = {s.name: OPEN for s in experiment.sites}

    report = describe_federation(experiment, InProcessStats(experiment, open_policies))

    overall = report.overall["all"]
    assert overall.rows == len(pooled) == 920 and overall.suppressed == []
    for column in experiment.data_schema.numeric:
        values, mine = pooled[column].astype(float), overall.numeric[column]
        assert mine.moments is not None
        assert mine.moments.mean == pytest.approx(values.mean(), abs=1e-10, rel=0)
        assert mine.moments.variance == pytest.approx(values.var(), abs=1e-10, rel=0)
        assert (mine.minimum, mine.maximum, mine.missing) == (
            values.min(),
            values.max(),
            values.isna().sum(),
        )
    sex = pooled["sex"].value_counts().to_dict()
    assert overall.levels["sex"] == {k: sex[k] for k in overall.levels["sex"]}
    assert overall.levels["ca"]["__missing__"] == pooled["ca"].isna().sum()
    positives = pooled[pooled["outcome"] == 1]
    assert report.overall["positive"].numeric["age"].moments.mean == pytest.approx(  # type: ignore[union-attr]
        positives["age"].mean(), abs=1e-10
    )
    cols = ["age", "chol", "thalch"]
    assert overall.comoments is not None
    np.testing.assert_allclose(
        overall.comoments.covariance, pooled[cols].astype(float).dropna().cov(), atol=1e-10, rtol=0
    )


@pytest.mark.parametrize(
    ("counts", "expected", "small", "second"),
    [
        ([50, 3, 40], [50, None, None], 1, 1),  # one small cell: the next smallest goes too
        ([50, 3, 2, 40], [50, None, None, 40], 2, 0),  # two small cells hide each other
        ([50, 0, 40], [50, 0, 40], 0, 0),  # an empty cell reveals nobody
        ([4], [None], 1, 0),
    ],
)
def test_cells_under_the_minimum_are_suppressed_with_a_second_where_needed(
    counts: list[int], expected: list[int | None], small: int, second: int
) -> None:
    assert suppress_cells(counts, 5) == (expected, small, second)  # type: ignore[arg-type]


def _description(rows: int, n: int) -> Description:
    numeric = {"age": NumericSummary(Moments(n, 50.0, 900.0), rows - n, 30.0, 80.0, [n, 0])}
    return Description(rows, numeric, {"sex": {"F": rows - 2, "M": 2}})


def test_guard_withholds_a_small_site_and_small_columns_and_the_extremes() -> None:
    limits = Disclosure()  # 5 per cell, 10 rows, no extremes

    small = guard(_description(8, 8), limits, "tiny")
    column = guard(_description(40, 3), limits, "sparse")

    assert small.rows == 0 and small.numeric["age"].moments is None
    assert small.suppressed == ["site 'tiny': fewer than 10 rows, nothing released"]
    assert column.numeric["age"].moments is None and column.levels["sex"] == {"F": None, "M": None}
    assert column.suppressed == [
        "site 'sparse', age: fewer than 5 values, nothing released",
        "site 'sparse', sex: 1 level(s) under the cell minimum suppressed, and 1 more so it "
        "cannot be recovered from the total",
        "site 'sparse': min and max withheld (its policy)",
    ]
    full = guard(_description(40, 40), limits, "big")
    assert (full.numeric["age"].minimum, full.numeric["age"].maximum) == (None, None)
    assert full.numeric["age"].moments == Moments(40, 50.0, 900.0)


def test_table1_marks_overall_counts_a_site_withheld(heart) -> None:
    experiment, _ = heart

    header, rows = table1(describe_federation(experiment, InProcessStats(experiment)))

    assert header[:2] == ["", "overall"] and header[-2:] == ["outcome positive", "outcome negative"]
    exang_true = next(
        r for r in rows if r[0] == "  TRUE" and rows[rows.index(r) - 2][0].startswith("exang")
    )
    assert exang_true[1].startswith("≥") and "suppressed" in exang_true


def test_site_whose_policy_needs_a_larger_federation_refuses(tmp_path: Path) -> None:
    experiment = parse_experiment(make_sites(tmp_path))
    strict = SitePolicy(disclosure=Disclosure(min_sites=4))

    with pytest.raises(DataError) as err:
        describe_federation(experiment, InProcessStats(experiment, {"site-b": strict}))

    assert str(err.value) == (
        "site 'site-b' refuses statistics: the federation has 3 site(s), its policy needs 4"
    )


def test_correlating_a_categorical_column_is_named(tmp_path: Path) -> None:
    experiment = parse_experiment(
        deep_merge(make_sites(tmp_path), {"statistics": {"correlate": ["age", "sex"]}})
    )

    with pytest.raises(SpecError) as err:
        describe_federation(experiment, InProcessStats(experiment))

    assert err.value.problems == [
        ("statistics.correlate[1]", "'sex' is not one of the schema's numeric columns")
    ]


def test_a_site_that_withholds_everything_is_said_and_totals_marked(heart) -> None:
    experiment, _ = heart
    strict = SitePolicy(disclosure=Disclosure(min_rows=400))

    report = describe_federation(experiment, InProcessStats(experiment, {"hungary": strict}))
    header, rows = table1(report)

    patients = dict(zip(header, rows[0], strict=True))
    assert patients["hungary"] == "withheld" and patients["overall"] == "≥626"
    assert report.overall["all"].withheld == ["hungary"]
    assert report.overall["all"].numeric["age"].minimum is None  # no site released extremes
