"""Loading experiment YAML: bare specs, FederatedExperiment manifests, paths, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from medfl.errors import SpecError
from medfl.spec import API_VERSION, KIND, FedAvg, load_experiment, parse_experiment
from tests.helpers import spec_dict

SITES = [
    {"name": "north", "data": {"source": "csv", "path": "data/north.csv"}},
    {"name": "south", "data": {"source": "parquet", "path": "data/south.parquet"}},
    {"name": "demo", "data": {"source": "demo", "hospital": "Cleveland"}},
]


def write_yaml(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def manifest(bare: dict[str, Any], **top: Any) -> dict[str, Any]:
    body = {k: v for k, v in bare.items() if k != "name"}
    doc = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": bare["name"]}}
    return {**doc, "spec": body, **top}


def problems(exc: pytest.ExceptionInfo[SpecError]) -> list[tuple[str, str]]:
    return exc.value.problems


def test_bare_yaml_and_manifest_give_equal_experiments(tmp_path: Path) -> None:
    spec = spec_dict(SITES)
    bare = load_experiment(write_yaml(tmp_path / "bare.yaml", spec))
    cr = load_experiment(write_yaml(tmp_path / "cr.yaml", manifest(spec)))
    assert bare == cr
    assert cr.name == "toy"
    assert [s.name for s in cr.sites] == ["north", "south", "demo"]


def test_manifest_spec_name_wins_over_metadata_name(tmp_path: Path) -> None:
    doc = manifest(spec_dict(SITES))
    doc["spec"]["name"] = "from-spec"
    assert load_experiment(write_yaml(tmp_path / "cr.yaml", doc)).name == "from-spec"


def test_relative_data_paths_resolve_against_the_yaml_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    absolute = str(tmp_path / "elsewhere" / "x.csv")
    sites = [*SITES, {"name": "abs", "data": {"source": "csv", "path": absolute}}]
    experiment = load_experiment(write_yaml(tmp_path / "study" / "exp.yaml", spec_dict(sites)))
    paths = {s.name: getattr(s.data, "path", None) for s in experiment.sites}
    assert paths == {
        "north": str(tmp_path / "study" / "data" / "north.csv"),
        "south": str(tmp_path / "study" / "data" / "south.parquet"),
        "demo": None,
        "abs": absolute,
    }


def test_parse_without_base_dir_keeps_paths_as_written() -> None:
    experiment = parse_experiment(spec_dict(SITES))
    assert experiment.sites[0].data.path == "data/north.csv"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("mutate", "path", "message"),
    [
        (lambda d: d["sites"][0].update(colums={}), "sites[0].colums", "unknown field"),
        (
            lambda d: d["sites"][2].update(data={"source": "csv", "pth": "x.csv"}),
            "sites[2].data.pth",
            "unknown field",
        ),
        (
            lambda d: d["sites"][2].update(data={"source": "csv", "pth": "x.csv"}),
            "sites[2].data.path",
            "required field is missing",
        ),
        (lambda d: d["training"].update(epochs=3), "training.epochs", "unknown field"),
        (lambda d: d["schema"]["target"].update(col="y"), "schema.target.col", "unknown field"),
        (lambda d: d.update(strategy={"name": "fedadam", "mu": 1}), "strategy.mu", "unknown field"),
        (lambda d: d.update(colour="red"), "colour", "unknown field"),
    ],
)
def test_unknown_fields_are_errors_naming_field_and_path(mutate, path, message) -> None:
    doc = spec_dict(SITES)
    mutate(doc)
    with pytest.raises(SpecError) as exc:
        parse_experiment(doc)
    assert (path, message) in problems(exc)
    assert f"  {path}: {message}" in str(exc.value)


def test_manifest_errors_carry_the_spec_prefix(tmp_path: Path) -> None:
    doc = manifest(spec_dict(SITES))
    doc["spec"]["sites"][2]["data"] = {"source": "csv", "path": "x.csv", "pth": "y.csv"}
    file = write_yaml(tmp_path / "cr.yaml", doc)
    with pytest.raises(SpecError) as exc:
        load_experiment(file)
    assert problems(exc) == [("spec.sites[2].data.pth", "unknown field")]
    assert str(exc.value).startswith(f"invalid experiment spec in {file}:")


@pytest.mark.parametrize(
    ("top", "path", "fragment"),
    [
        (
            {"apiVersion": "medfl.io/v1"},
            "apiVersion",
            "must be 'medfl.io/v1alpha1', got 'medfl.io/v1'",
        ),
        ({"kind": "Experiment"}, "kind", "must be 'FederatedExperiment', got 'Experiment'"),
        ({"spec": None}, "spec", "required mapping is missing"),
    ],
)
def test_manifest_with_wrong_header_is_rejected(top, path, fragment) -> None:
    with pytest.raises(SpecError) as exc:
        parse_experiment(manifest(spec_dict(SITES), **top))
    assert (path, fragment) in problems(exc)


def test_manifest_without_kind_is_rejected() -> None:
    doc = manifest(spec_dict(SITES))
    del doc["kind"]
    with pytest.raises(SpecError) as exc:
        parse_experiment(doc)
    assert problems(exc) == [("kind", "must be 'FederatedExperiment', got None")]


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    file = tmp_path / "broken.yaml"
    file.write_text("name: x\nsites:\n  - name: a\n    data: {source: csv, path: [\n")
    with pytest.raises(SpecError) as exc:
        load_experiment(file)
    assert exc.value.source == str(file)
    [(path, message)] = problems(exc)
    assert path == ""
    assert message == "not valid YAML at line 5"


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", ""])
def test_yaml_that_is_not_a_mapping_is_rejected(tmp_path: Path, text: str) -> None:
    file = tmp_path / "list.yaml"
    file.write_text(text)
    with pytest.raises(SpecError, match="expected a mapping at the top level"):
        load_experiment(file)


def test_missing_yaml_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the file") as exc:
        load_experiment(tmp_path / "nope.yaml")
    assert exc.value.source == str(tmp_path / "nope.yaml")


def test_yes_and_no_in_yaml_stay_text(tmp_path: Path) -> None:
    # YAML 1.1 would read these as booleans: `positive: [yes]` would then match no row.
    doc = spec_dict(SITES, schema={"target": {"column": "y", "positive": ["yes"]}})
    doc["schema"]["levels"] = {"smoker": ["yes", "no"]}
    text = yaml.safe_dump(doc, sort_keys=False).replace("'yes'", "yes").replace("'no'", "no")
    assert "- yes" in text
    file = tmp_path / "exp.yaml"
    file.write_text(text)
    experiment = load_experiment(file)
    assert experiment.data_schema.target.positive == ["yes"]
    assert experiment.data_schema.levels == {"smoker": ["yes", "no"]}


def test_yaml_numbers_and_booleans_as_levels_become_their_text(tmp_path: Path) -> None:
    file = tmp_path / "exp.yaml"
    file.write_text(
        """
name: coded
sites:
  - name: a
    data: {source: csv, path: a.csv}
    levels: {cp: {1: typical, 2: atypical}}
    naValues: [-9, "?"]
schema:
  target: {column: y}
  categorical: [cp, fbs]
  levels: {cp: [typical, atypical], fbs: [TRUE, FALSE, 1.0]}
"""
    )
    experiment = load_experiment(file)
    site = experiment.sites[0]
    assert site.levels == {"cp": {"1": "typical", "2": "atypical"}}
    assert site.na_values == ["-9", "?"]
    assert experiment.data_schema.levels["fbs"] == ["TRUE", "FALSE", "1"]


def test_strategy_defaults_to_fedavg_over_all_sites() -> None:
    experiment = parse_experiment(spec_dict(SITES))
    assert experiment.strategy == FedAvg()
    assert experiment.min_sites == 3


def test_wire_form_round_trips() -> None:
    experiment = parse_experiment(spec_dict(SITES, strategy={"name": "fedyogi", "minSites": 2}))
    wire = experiment.to_wire()
    assert wire["strategy"]["minSites"] == 2
    assert wire["schema"]["target"]["column"] == "outcome"
    assert parse_experiment(wire) == experiment
