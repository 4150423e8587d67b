"""A site's disclosure limits on what it lets out for training: its data report, the
encoding's aggregates and which splits may report metrics."""

from __future__ import annotations

import numpy as np
import pytest

from medfl.data import SiteReport, SiteSummary
from medfl.data._disclosure import released_report, released_summary, withheld_split
from medfl.spec._policy import Disclosure


def _report(**counts: object) -> SiteReport:
    base: dict[str, object] = {
        "site": "a", "rows_read": 100, "rows_without_outcome": 0, "rows_dropped_missing": 0,
        "rows": 100, "positives": 40, "missing": {"age": 0, "bp": 12},
    }  # fmt: skip
    return SiteReport(**(base | counts))  # type: ignore[arg-type]


def test_report_within_the_limits_is_released_whole_with_the_limits_it_was_checked_under() -> None:
    out = released_report(_report(), Disclosure())

    assert (out.rows_read, out.positives, out.negatives, out.missing) == (
        100, 40, 60, {"age": 0, "bp": 12},
    )  # fmt: skip
    assert out.suppressed == []
    assert out.limits["minCellCount"] == 5 and out.limits["minRows"] == 10


@pytest.mark.parametrize("positives", [3, 97])  # a small positive or a small negative class
def test_a_small_outcome_class_hides_both_class_counts(positives: int) -> None:
    out = released_report(_report(positives=positives), Disclosure())

    assert (out.positives, out.negatives, out.rows) == (None, None, 100)
    assert out.suppressed == [
        "outcome class counts (one is under the cell minimum): under its policy's cell minimum of 5"
    ]


def test_a_few_rows_without_outcome_hide_that_count_and_the_rows_read() -> None:
    out = released_report(
        _report(rows_read=123, rows_without_outcome=3, rows_dropped_missing=20), Disclosure()
    )

    assert (out.rows_read, out.rows_without_outcome, out.rows_dropped_missing) == (None, None, 20)


def test_small_missing_counts_are_hidden_by_column() -> None:
    out = released_report(_report(missing={"age": 2, "bp": 12, "chol": 0}), Disclosure())

    assert out.missing == {"age": None, "bp": 12, "chol": 0}
    assert out.suppressed == ["missing-value counts of age: under its policy's cell minimum of 5"]


def test_cell_minimum_one_suppresses_nothing() -> None:
    out = released_report(_report(positives=1, missing={"age": 1}), Disclosure(min_cell_count=1))

    assert (out.positives, out.missing, out.suppressed) == (1, {"age": 1}, [])


def test_encoding_aggregates_go_as_zeros_where_small_and_level_names_stay() -> None:
    summary = SiteSummary(
        "a",
        60,
        numeric={"age": (60, 3300.0, 183000.0), "bp": (3, 390.0, 50700.0)},
        levels={"sex": {"female": 2, "male": 58}, "cp": {"a": 20, "b": 20, "c": 20}},
    )

    out = released_summary(summary, 5)

    assert out.numeric == {"age": (60, 3300.0, 183000.0), "bp": (0, 0.0, 0.0)}
    # male is hidden too: 60 - 58 would give female's 2 away
    assert out.levels == {"sex": {"female": 0, "male": 0}, "cp": {"a": 20, "b": 20, "c": 20}}


@pytest.mark.parametrize(
    ("labels", "withheld"),
    [
        ([1] * 10 + [0] * 5, False),
        ([1] * 10 + [0] * 4, True),  # 4 negatives
        ([1] * 2 + [0] * 30, True),  # 2 positives
        ([1] * 12, False),  # one class only: nothing small to describe
        ([], False),
    ],
)
def test_a_split_reports_no_metrics_when_an_outcome_class_is_small(
    labels: list[int], withheld: bool
) -> None:
    why = withheld_split(np.array(labels), 5)

    assert (why is not None) == withheld
    if withheld:
        assert why == "an outcome class under its policy's cell minimum of 5 in this split"
