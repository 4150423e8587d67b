"""Reading sites: the demo hospitals (with the known fixes), CSV and Parquet files."""

from __future__ import annotations

import pandas as pd
import pytest

from medfl.data import HEART_DISEASE_HOSPITALS, prepare_site, read_heart_disease, read_site
from medfl.errors import DataError
from medfl.spec import Schema, Site
from tests.helpers import (
    assert_same_arrays,
    make_frames,
    make_sites,
    model_arrays,
    read_result,
    write_table,
)


def demo_site(hospital: str) -> Site:
    return Site.model_validate({"name": "demo", "data": {"source": "demo", "hospital": hospital}})


@pytest.mark.parametrize(
    ("hospital", "rows"),
    [("Cleveland", 303), ("Hungary", 294), ("Switzerland", 123), ("VA Long Beach", 200)],
)
def test_demo_hospital_has_its_true_patient_count(hospital: str, rows: int) -> None:
    frame = read_site(demo_site(hospital))
    assert len(frame) == rows
    assert "dataset" not in frame.columns


def test_demo_hospitals_cover_the_whole_study() -> None:
    assert sum(len(read_site(demo_site(h))) for h in HEART_DISEASE_HOSPITALS) == 920


def test_patient_304_is_in_hungary() -> None:
    assert read_heart_disease(fix_known_errors=False).set_index("id").at["304", "dataset"] == (
        "Cleveland"
    )
    assert read_heart_disease().set_index("id").at["304", "dataset"] == "Hungary"
    assert "304" in read_site(demo_site("Hungary"))["id"].tolist()


def test_zero_cholesterol_and_blood_pressure_are_missing() -> None:
    raw = read_heart_disease(fix_known_errors=False)
    assert (pd.to_numeric(raw["chol"]) == 0).groupby(raw["dataset"]).sum().to_dict() == {
        "Cleveland": 0,
        "Hungary": 0,
        "Switzerland": 123,
        "VA Long Beach": 49,
    }
    fixed = read_heart_disease()
    assert not (pd.to_numeric(fixed["chol"]) == 0).any()
    assert not (pd.to_numeric(fixed["trestbps"]) == 0).any()
    assert read_site(demo_site("Switzerland"))["chol"].isna().all()
    assert fixed["chol"].isna().sum() == raw["chol"].isna().sum() + 172


def test_parquet_site_gives_the_same_run_as_csv(tmp_path, run_fast) -> None:
    frames = make_frames()
    # Parquet keeps native types: ints, floats, text; CSV is all text
    frames["site-a"] = frames["site-a"].assign(outcome=frames["site-a"]["outcome"].astype(float))
    csv = run_fast(make_sites(tmp_path / "csv", frames=frames), out="csv")
    parquet = run_fast(make_sites(tmp_path / "pq", frames=frames, suffix=".parquet"), out="pq")
    assert_same_arrays(model_arrays(csv.run_dir), model_arrays(parquet.run_dir))
    assert read_result(csv.run_dir)["final"] == read_result(parquet.run_dir)["final"]


def test_parquet_integer_codes_match_csv_text_levels(tmp_path) -> None:
    frame = pd.DataFrame({"code": [1, 2, None, 1], "y": [1.0, 0.0, 1.0, None]})
    csv_site = file_site(write_table(tmp_path / "s.csv", frame))
    pq_site = file_site(write_table(tmp_path / "s.parquet", frame), "parquet")
    schema = schema_with(categorical=["code"], target={"column": "y"})
    from_csv = prepare_site(csv_site, schema)
    from_pq = prepare_site(pq_site, schema)
    assert from_pq.features["code"].tolist() == from_csv.features["code"].tolist()
    assert from_csv.features["code"].tolist()[:2] == ["1", "2"]
    assert from_pq.y.tolist() == from_csv.y.tolist() == [1, 0, 1]


def file_site(path, source: str = "csv", **extra) -> Site:
    return Site.model_validate(
        {"name": "ward", "data": {"source": source, "path": str(path)}, **extra}
    )


def schema_with(**fields) -> Schema:
    return Schema.model_validate(fields)


def test_csv_delimiter_is_honoured(tmp_path) -> None:
    path = tmp_path / "semi.csv"
    path.write_text("age;outcome\n50;1\n60;0\n")
    site = Site.model_validate(
        {"name": "ward", "data": {"source": "csv", "path": str(path), "delimiter": ";"}}
    )
    assert read_site(site).to_dict("list") == {"age": ["50", "60"], "outcome": ["1", "0"]}


BAD_FILES = {
    "missing": (None, "data file not found: "),
    "empty": (b"", "data file is empty: "),
    "not utf-8": (b"age,outcome\n\xff\xfe\x00\x81,1\n", "cannot read "),
    "ragged rows": (b'age,outcome\n1,2,3,4\n"unclosed\n', "cannot read "),
}


@pytest.mark.parametrize(("content", "fragment"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_unreadable_csv_is_named_with_site_and_path(tmp_path, content, fragment) -> None:
    path = tmp_path / "ward.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as exc:
        read_site(file_site(path))
    assert exc.value.site == "ward"
    assert str(exc.value).startswith(f"site 'ward': {fragment}")
    assert str(path) in str(exc.value)


def test_corrupt_parquet_is_named_with_site_and_path(tmp_path) -> None:
    path = tmp_path / "ward.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match=r"site 'ward': cannot read .*ward\.parquet \(\w+\)"):
        read_site(file_site(path, "parquet"))


def test_a_directory_is_not_a_data_file(tmp_path) -> None:
    with pytest.raises(DataError, match="site 'ward': data file not found"):
        read_site(file_site(tmp_path))
