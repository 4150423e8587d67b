"""Bringing one site's table to the schema: outcome, levels, missing values, reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from medfl.data import MISSING_LEVEL, OTHER_LEVEL, Preprocessor, SiteTable, prepare_site, summarize
from medfl.data._prepare import as_level
from medfl.errors import DataError
from medfl.spec import Experiment, parse_experiment
from medfl.training import SiteWorker
from tests.helpers import spec_dict, write_table

FRAME = pd.DataFrame(
    {
        "age": ["50", "60", "", "70", "40", "55"],
        "sex": ["male", "female", "male", "", "female", "male"],
        "smoker": ["yes", "no", "ex", "no", "yes", "no"],
        "outcome": ["1", "0", "1", "0", "", "1"],
    }
)


def one_site(
    tmp_path: Path, frame: pd.DataFrame, site: dict[str, Any] | None = None, **schema: Any
) -> Experiment:
    path = write_table(tmp_path / "ward.csv", frame)
    entry = {"name": "ward", "data": {"source": "csv", "path": str(path)}, **(site or {})}
    base = {"target": {"column": "outcome"}, "numeric": ["age"], "categorical": ["sex", "smoker"]}
    doc = spec_dict([entry])
    doc["schema"] = {**base, **schema}
    return parse_experiment(doc)


def prepare(experiment: Experiment) -> SiteTable:
    return prepare_site(experiment.sites[0], experiment.data_schema)


def test_rows_without_outcome_are_excluded_and_counted(tmp_path) -> None:
    table = prepare(one_site(tmp_path, FRAME))
    report = table.report.to_dict()
    assert (report["rowsRead"], report["rowsWithoutOutcome"], report["rows"]) == (6, 1, 5)
    assert (report["positives"], report["negatives"]) == (3, 2)
    assert table.y.tolist() == [1, 0, 1, 0, 1]
    assert table.features["age"].tolist()[:2] == [50.0, 60.0]


def test_missing_counts_are_reported_per_column(tmp_path) -> None:
    report = prepare(one_site(tmp_path, FRAME)).report
    # counted over the rows that have an outcome
    assert report.missing == {"age": 1, "sex": 1}


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ({"column": "grade", "positive": ["high", "mid"]}, [1, 1, 0, 0]),
        ({"column": "score", "positiveAbove": 2}, [1, 0, 0, 1]),
        ({"column": "flag"}, [1, 0, 1, 0]),
    ],
)
def test_outcome_rules(tmp_path, target, expected) -> None:
    frame = pd.DataFrame(
        {
            "age": [1, 2, 3, 4],
            "grade": ["high", "mid", "low", "low"],
            "score": [3, 2, 0.5, 7],
            "flag": ["TRUE", "FALSE", "TRUE", "FALSE"],
        }
    )
    experiment = one_site(tmp_path, frame, target=target, categorical=[])
    assert prepare(experiment).y.tolist() == expected


def test_outcome_with_levels_other_than_0_and_1_asks_for_a_rule(tmp_path) -> None:
    frame = pd.DataFrame({"age": [1, 2], "outcome": ["dead", "alive"]})
    with pytest.raises(DataError) as exc:
        prepare(one_site(tmp_path, frame, categorical=[]))
    assert (exc.value.site, exc.value.column) == ("ward", "outcome")
    assert "has 2 level(s) other than 0/1" in str(exc.value)


def test_non_numeric_value_in_numeric_column_is_named(tmp_path) -> None:
    frame = FRAME.assign(age=["50", "sixty", "1", "2", "3", "4"])
    with pytest.raises(DataError) as exc:
        prepare(one_site(tmp_path, frame))
    assert (exc.value.site, exc.value.column) == ("ward", "age")
    assert str(exc.value) == "site 'ward': numeric column 'age' has 1 value(s) that are not numbers"


def test_undeclared_level_is_an_error_naming_site_column_and_level(tmp_path) -> None:
    experiment = one_site(tmp_path, FRAME, levels={"smoker": ["no", "yes"]})
    with pytest.raises(DataError) as exc:
        prepare(experiment)
    assert (exc.value.site, exc.value.column) == ("ward", "smoker")
    assert str(exc.value) == (
        "site 'ward': column 'smoker' has level(s) the schema does not declare: 'ex' "
        "(schema.unknownLevels: error)"
    )


def test_undeclared_level_maps_to_other_under_policy_other(tmp_path) -> None:
    experiment = one_site(tmp_path, FRAME, levels={"smoker": ["no", "yes"]}, unknownLevels="other")
    table = prepare(experiment)
    assert table.report.unknown_levels == {"smoker": ["ex"]}
    assert table.features["smoker"].tolist() == ["yes", "no", OTHER_LEVEL, "no", "no"]
    summary = summarize("ward", table.features, table.features, experiment.data_schema)
    pre = Preprocessor.from_summaries(experiment.data_schema, [summary])
    assert pre.vocabulary["smoker"] == ["no", "yes", OTHER_LEVEL]


def test_undeclared_level_becomes_missing_under_policy_missing(tmp_path) -> None:
    experiment = one_site(
        tmp_path, FRAME, levels={"smoker": ["no", "yes"]}, unknownLevels="missing"
    )
    table = prepare(experiment)
    assert table.features["smoker"].isna().tolist() == [False, False, True, False, False]
    assert table.report.missing["smoker"] == 1


def test_site_level_codes_map_to_schema_levels(tmp_path) -> None:
    frame = FRAME.assign(smoker=["1", "0", "0", "0", "1", "1"])
    site = {"levels": {"smoker": {"1": "yes", "0": "no"}}}
    experiment = one_site(tmp_path, frame, site, levels={"smoker": ["no", "yes"]})
    assert prepare(experiment).features["smoker"].tolist() == ["yes", "no", "no", "no", "yes"]


def test_site_na_values_mean_missing(tmp_path) -> None:
    frame = FRAME.assign(age=["-9", "60", "61", "70", "40", "-9"])
    table = prepare(one_site(tmp_path, frame, {"naValues": [-9]}, missing={"numeric": "mean"}))
    assert table.report.missing["age"] == 2
    assert table.features["age"].isna().tolist() == [True, False, False, False, True]


# --- missing-value policies --------------------------------------------------


def fitted(tmp_path: Path, frame: pd.DataFrame, **missing: str) -> tuple[SiteTable, Preprocessor]:
    experiment = one_site(tmp_path, frame, missing=missing, standardize=False)
    table = prepare(experiment)
    summary = summarize("ward", table.features, table.features, experiment.data_schema)
    return table, Preprocessor.from_summaries(experiment.data_schema, [summary])


def test_numeric_mean_policy_fills_the_training_mean(tmp_path) -> None:
    table, pre = fitted(tmp_path, FRAME, numeric="mean")
    assert pre.means["age"] == pytest.approx((50 + 60 + 70 + 55) / 4)
    x = pre.transform(table.features)
    assert x[2, 0] == pytest.approx(58.75)  # the row whose age was missing


def test_numeric_drop_policy_drops_and_counts_the_rows(tmp_path) -> None:
    table, _ = fitted(tmp_path, FRAME, numeric="drop")
    assert table.report.rows_dropped_missing == 1
    assert table.report.rows == 4
    assert table.features["age"].tolist() == [50, 60, 70, 55]


@pytest.mark.parametrize(("policy", "column"), [("numeric", "age"), ("categorical", "sex")])
def test_error_policy_names_site_and_column(tmp_path, policy, column) -> None:
    with pytest.raises(DataError) as exc:
        fitted(tmp_path, FRAME, **{policy: "error"})
    assert (exc.value.site, exc.value.column) == ("ward", column)
    assert str(exc.value) == (
        f"site 'ward': column {column!r} has 1 missing value(s) "
        "and the schema's missing policy is 'error'"
    )


def test_categorical_level_policy_adds_a_missing_level(tmp_path) -> None:
    table, pre = fitted(tmp_path, FRAME, categorical="level")
    assert pre.vocabulary["sex"] == ["female", "male", MISSING_LEVEL]
    x = pre.transform(table.features)
    sex = x[:, 1:4]
    assert sex[3].tolist() == [0, 0, 1]  # the row without sex
    assert sex[0].tolist() == [0, 1, 0]


def test_categorical_mode_policy_fills_the_most_frequent_level(tmp_path) -> None:
    table, pre = fitted(tmp_path, FRAME, categorical="mode")
    assert pre.vocabulary["sex"] == ["female", "male"]
    assert pre.fill_levels["sex"] == "male"
    assert pre.transform(table.features)[3, 1:3].tolist() == [0, 1]  # the row without sex


def test_categorical_drop_policy_drops_the_row(tmp_path) -> None:
    table, pre = fitted(tmp_path, FRAME, categorical="drop")
    assert table.report.rows_dropped_missing == 1
    assert "" not in table.features["sex"].tolist()
    assert table.features["sex"].notna().all()
    assert pre.vocabulary["sex"] == ["female", "male"]


def test_federated_statistics_equal_pooled_training_rows(tmp_path) -> None:
    doc = spec_dict(
        [
            {"name": "cleveland", "data": {"source": "demo", "hospital": "Cleveland"}},
            {"name": "hungary", "data": {"source": "demo", "hospital": "Hungary"}},
            {"name": "va", "data": {"source": "demo", "hospital": "VA Long Beach"}},
        ],
        schema={
            "target": {"column": "num", "positiveAbove": 0},
            "numeric": ["age", "trestbps", "chol", "thalch", "oldpeak"],
            "categorical": ["sex", "cp", "fbs"],
        },
    )
    experiment = parse_experiment(doc)
    workers = [SiteWorker(experiment, s.name) for s in experiment.sites]
    summaries = [w.hello().summary for w in workers]
    pre = Preprocessor.from_summaries(experiment.data_schema, summaries)
    pooled = pd.concat([w.split_tables()["train"][0] for w in workers], ignore_index=True)
    assert len(pooled) == sum(s.n for s in summaries)
    assert pooled["chol"].isna().sum() > 0  # the statistics skip missing cells, as pandas does
    for column in experiment.data_schema.numeric:
        np.testing.assert_allclose(pre.means[column], pooled[column].mean(), rtol=1e-9)
        np.testing.assert_allclose(pre.stds[column], pooled[column].std(ddof=0), rtol=1e-9)
    counts = pooled["cp"].value_counts()
    assert pre.vocabulary["cp"] == sorted(counts.index)
    assert pre.vocabulary["fbs"] == ["FALSE", "TRUE", MISSING_LEVEL]


@pytest.mark.parametrize(
    ("value", "level"),
    [
        (1.0, "1"),
        ("1.0", "1"),  # what pandas writes to CSV for 1 in an integer column with gaps
        ("-2.00", "-2"),
        ("1.50", "1.50"),
        ("007", "007"),
        (np.int64(3), "3"),
        (True, "TRUE"),
        (np.bool_(False), "FALSE"),
        (" male ", "male"),
        (float("nan"), None),
        (np.float32("nan"), None),
        (None, None),
        (pd.NA, None),
    ],
)
def test_as_level_spells_a_value_the_same_from_csv_and_parquet(value, level) -> None:
    assert as_level(value) == level


def test_preprocessor_takes_columns_by_name_and_round_trips(tmp_path) -> None:
    table, pre = fitted(tmp_path, FRAME.assign(age=["50", "60", "61", "70", "40", "55"]))
    again = Preprocessor.from_dict(pre.to_dict())
    shuffled = table.features[["smoker", "age", "sex"]]
    assert np.array_equal(again.transform(shuffled), pre.transform(table.features))
    assert pre.feature_names == [
        "age",
        "sex=female",
        "sex=male",
        "sex=__missing__",
        "smoker=ex",
        "smoker=no",
        "smoker=yes",
    ]


def test_site_summary_carries_counts_sums_and_levels_only(tmp_path) -> None:
    experiment = one_site(tmp_path, FRAME)
    table = prepare(experiment)
    summary = summarize("ward", table.features.iloc[:3], table.features, experiment.data_schema)
    assert summary.n == 3
    assert summary.numeric["age"] == (2, 110.0, 50.0**2 + 60.0**2)  # one of the 3 is missing
    assert summary.levels["smoker"] == {"ex": 1, "no": 1, "yes": 1}
    assert summary.levels["sex"] == {MISSING_LEVEL: 0, "female": 1, "male": 2}
    assert type(summary).from_json(summary.to_json()) == summary
