"""The served sites: counts and aggregates under each site's disclosure limits, never
rows; a sites file maps names to data sources and policies."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from medfl.api import Settings, create_app
from medfl.errors import SpecError
from tests.api.conftest import AUTH, DEMO_SITES, TOKEN


def _column(site: dict, name: str) -> dict:
    return next(c for c in site["columns"] if c["name"] == name)


def test_the_demo_hospitals_are_served_by_default_with_guarded_counts(client):
    sites = client.get("/api/sites").json()
    assert [s["name"] for s in sites] == DEMO_SITES
    cleveland = sites[0]
    assert (cleveland["source"], cleveland["rows"]) == ("demo", 303)
    assert _column(cleveland, "sex")["levels"] == {"Male": 206, "Female": 97}
    # 2 patients have an ST-T abnormality: suppressed, and the next smallest level with it
    assert _column(cleveland, "restecg")["levels"] == {
        "normal": 151, "lv hypertrophy": None, "st-t abnormality": None,
    }  # fmt: skip
    age = _column(cleveland, "age")
    assert age["kind"] == "numeric"
    assert age["mean"] == pytest.approx(54.4389, abs=1e-4)
    assert "min" not in age and "max" not in age


def test_an_unknown_site_is_not_found(client):
    response = client.get("/api/sites/elsewhere")
    assert response.status_code == 404
    assert response.json()["detail"] == (
        "no site 'elsewhere'; this service serves: cleveland, hungary, switzerland, va-long-beach"
    )


def test_the_shared_schema_offers_columns_every_chosen_site_has(client):
    found = client.get("/api/schema", params={"site": ["cleveland", "switzerland"]}).json()
    columns = {c["name"]: (c["numeric"], c["categorical"]) for c in found["columns"]}
    assert columns["age"] == (True, False)
    assert columns["chol"] == (True, False)  # no value at Switzerland: fits any kind there
    assert columns["sex"] == (False, True)
    assert columns["num"] == (True, True)


def test_the_shared_schema_of_an_unknown_site_is_not_found(client):
    response = client.get("/api/schema", params={"site": ["cleveland", "atlantis"]})
    assert response.status_code == 404
    assert response.json()["detail"].startswith("no site 'atlantis'; this service serves:")


def _csv_site(tmp_path: Path, rows: int) -> Path:
    frame = pd.DataFrame(
        {
            "age": range(40, 40 + rows),
            "smoker": ["yes", "no"] * (rows // 2),
            "y": [0, 1] * (rows // 2),
        }
    )
    frame.to_csv(tmp_path / "small.csv", index=False)
    (tmp_path / "policy.yaml").write_text("disclosure: {minRows: 20, minCellCount: 5}\n")
    sites = tmp_path / "sites.yaml"
    sites.write_text(
        "sites:\n  small:\n    data: {source: csv, path: small.csv}\n    policy: policy.yaml\n"
    )
    return sites


def test_a_site_under_its_policys_minimum_rows_releases_no_counts(tmp_path: Path):
    settings = Settings(data_dir=tmp_path / "d", api_token=TOKEN, sites_file=_csv_site(tmp_path, 8))
    with TestClient(create_app(settings), headers=AUTH) as client:
        site = client.get("/api/sites/small").json()
    assert site["source"] == "csv"
    assert site["rows"] is None
    assert _column(site, "age") == {
        "name": "age", "kind": "both", "missing": None, "mean": None, "sd": None,
        "levels": None,
    }  # fmt: skip
    assert _column(site, "smoker")["levels"] is None
    assert site["suppressed"] == ["site 'small': fewer than 20 rows, nothing released"]
    assert "small.csv" not in str(site)


def test_a_sites_file_with_a_bad_entry_is_named(tmp_path: Path):
    sites = tmp_path / "sites.yaml"
    sites.write_text("sites:\n  north:\n    data: {source: csv}\n")
    with pytest.raises(SpecError, match=r"sites\.north\.data\.path: required field is missing"):
        create_app(Settings(data_dir=tmp_path, api_token=TOKEN, sites_file=sites))
