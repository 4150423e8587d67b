"""Columns and levels are matched by name: a site's spelling or order never changes a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from medfl.data import SiteTable, prepare_sites
from medfl.errors import DataError
from medfl.spec import parse_experiment
from tests.helpers import (
    assert_same_arrays,
    make_frames,
    make_sites,
    model_arrays,
    read_result,
    site_entry,
)


def parse_and_prepare(spec: dict) -> list[SiteTable]:
    return prepare_sites(parse_experiment(spec))


def final_of(run_dir: Path) -> dict:
    return read_result(run_dir)["final"]


def test_site_with_columns_in_another_order_gives_identical_weights(tmp_path, run_fast) -> None:
    frames = make_frames()
    plain = run_fast(make_sites(tmp_path / "plain", frames=frames), out="plain")
    frames["site-b"] = frames["site-b"][["smoker", "outcome", "bp", "sex", "age"]]
    shuffled = run_fast(make_sites(tmp_path / "shuffled", frames=frames), out="shuffled")
    assert_same_arrays(model_arrays(plain.run_dir), model_arrays(shuffled.run_dir))
    assert final_of(plain.run_dir) == final_of(shuffled.run_dir)


def test_extra_columns_are_dropped_and_reported(tmp_path, run_fast) -> None:
    frames = make_frames()
    plain = run_fast(make_sites(tmp_path / "plain", frames=frames), out="plain")
    frames["site-c"] = frames["site-c"].assign(zip="12345", note="x").iloc[:, [5, 0, 1, 2, 3, 4, 6]]
    extra = run_fast(make_sites(tmp_path / "extra", frames=frames), out="extra")
    result = read_result(extra.run_dir)
    assert result["sites"]["site-c"]["droppedColumns"] == ["zip", "note"]
    assert result["sites"]["site-a"]["droppedColumns"] == []
    assert result["features"] == ["age", "bp", "sex=female", "sex=male", "smoker=no", "smoker=yes"]
    assert_same_arrays(model_arrays(plain.run_dir), model_arrays(extra.run_dir))


@pytest.mark.parametrize("column", ["bp", "sex", "outcome"])
def test_site_with_missing_column_is_named_in_error_before_round_1(
    tmp_path, run_fast, column
) -> None:
    frames = make_frames()
    frames["site-b"] = frames["site-b"].drop(columns=[column])
    spec = make_sites(tmp_path, frames=frames)
    with pytest.raises(DataError) as exc:
        run_fast(spec)
    assert exc.value.site == "site-b"
    assert exc.value.column == column
    others = ", ".join(repr(c) for c in ["age", "bp", "sex", "smoker", "outcome"] if c != column)
    assert str(exc.value) == (
        f"site 'site-b': required column(s) missing: {column!r} (the site has {others})"
    )
    result = read_result(tmp_path / "run")
    assert (result["status"], result["rounds"]) == ("failed", [])
    assert "site 'site-b'" in result["error"]


def test_missing_mapped_column_names_both_spellings(tmp_path) -> None:
    spec = make_sites(tmp_path)
    site_entry(spec, "site-a")["columns"] = {"bp": "BloodPressure"}
    with pytest.raises(DataError) as exc:
        parse_and_prepare(spec)
    assert "required column(s) missing: 'bp' (the site's 'BloodPressure')" in str(exc.value)


def test_mapping_to_a_column_the_schema_lacks_is_named(tmp_path) -> None:
    spec = make_sites(tmp_path)
    site_entry(spec, "site-a")["columns"] = {"weight": "Weight"}
    with pytest.raises(DataError, match="site 'site-a': columns mapping names schema column"):
        parse_and_prepare(spec)


def test_level_mapping_for_a_column_the_schema_lacks_is_named(tmp_path) -> None:
    spec = make_sites(tmp_path)
    site_entry(spec, "site-a")["levels"] = {"gender": {"M": "male"}}
    with pytest.raises(DataError) as exc:
        parse_and_prepare(spec)
    assert str(exc.value) == (
        "site 'site-a': levels mapping names categorical or outcome column(s) the schema "
        "does not have: 'gender'"
    )


def test_site_level_mapping_applies_to_the_outcome(tmp_path, run_fast) -> None:
    frames = make_frames()
    plain = run_fast(make_sites(tmp_path / "plain", frames=frames), out="plain")
    frames["site-b"] = frames["site-b"].assign(
        outcome=frames["site-b"]["outcome"].map({0: "N", 1: "Y"})
    )
    spec = make_sites(tmp_path / "coded", frames=frames)
    site_entry(spec, "site-b")["levels"] = {"outcome": {"N": "0", "Y": "1"}}
    coded = run_fast(spec, out="coded")
    assert_same_arrays(model_arrays(plain.run_dir), model_arrays(coded.run_dir))


def test_outcome_level_outside_positive_and_negative_is_named(tmp_path) -> None:
    frames = make_frames()
    frames["site-c"] = frames["site-c"].assign(
        outcome=frames["site-c"]["outcome"].map({0: "no", 1: "Yes"})
    )
    for name in ("site-a", "site-b"):
        frames[name] = frames[name].assign(outcome=frames[name]["outcome"].map({0: "no", 1: "yes"}))
    spec = make_sites(tmp_path, frames=frames)
    spec["schema"]["target"] = {"column": "outcome", "positive": ["yes"], "negative": ["no"]}
    with pytest.raises(DataError) as exc:
        parse_and_prepare(spec)
    assert str(exc.value) == (
        "site 'site-c': outcome column 'outcome' has level(s) that are neither positive "
        "nor negative: 'Yes'"
    )


def test_a_federation_without_positives_fails_before_round_1(tmp_path, run_fast) -> None:
    spec = make_sites(tmp_path)
    spec["schema"]["target"] = {"column": "outcome", "positive": ["7"]}
    with pytest.raises(DataError) as exc:
        run_fast(spec)
    assert str(exc.value).startswith(
        "no site has a positive outcome in column 'outcome' (schema.target positive: ['7'])"
    )


def test_site_column_and_level_mapping_equals_schema_spelling(tmp_path, run_fast) -> None:
    frames = make_frames()
    plain = run_fast(make_sites(tmp_path / "plain", frames=frames), out="plain")
    # site-b spells its columns and codes its levels its own way
    b = frames["site-b"].rename(columns={"age": "AGE_YRS", "sex": "gender", "outcome": "event"})
    b["gender"] = b["gender"].map({"female": "F", "male": "M"})
    b["smoker"] = b["smoker"].map({"no": 0, "yes": 1})
    frames["site-b"] = b
    spec = make_sites(tmp_path / "mapped", frames=frames)
    site_entry(spec, "site-b").update(
        columns={"age": "AGE_YRS", "sex": "gender", "outcome": "event"},
        levels={"sex": {"F": "female", "M": "male"}, "smoker": {0: "no", 1: "yes"}},
    )
    mapped = run_fast(spec, out="mapped")
    assert_same_arrays(model_arrays(plain.run_dir), model_arrays(mapped.run_dir))
    assert final_of(plain.run_dir) == final_of(mapped.run_dir)


def test_mapped_column_wins_over_a_site_column_spelled_like_the_schema(tmp_path) -> None:
    frames = make_frames()
    a = frames["site-a"]
    frames["site-a"] = a.assign(BloodPressure=a["bp"], bp="not a number")
    spec = make_sites(tmp_path, frames=frames)
    site_entry(spec, "site-a")["columns"] = {"bp": "BloodPressure"}
    table = parse_and_prepare(spec)[0]
    assert table.features["bp"].tolist() == a["bp"].tolist()
    assert table.report.dropped_columns == ["bp"]
