"""The spec models: defaults, and every rule that rejects an experiment."""

from __future__ import annotations

from typing import Any

import pytest

from medfl.errors import SpecError
from medfl.spec import FedAdagrad, FedAdam, FedProx, FedYogi, parse_experiment
from tests.helpers import deep_merge, spec_dict

SITES = [{"name": f"s{i}", "data": {"source": "csv", "path": f"/data/s{i}.csv"}} for i in range(3)]


def parse(**overrides: Any):
    return parse_experiment(spec_dict(SITES, **overrides))


def rejection(doc: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as exc:
        parse_experiment(doc)
    return exc.value.problems


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ({"name": "fedprox"}, FedProx(proximal_mu=0.01)),
        (
            {"name": "fedadam"},
            FedAdam(server_learning_rate=0.1, beta1=0.9, beta2=0.99, tau=1e-9),
        ),
        (
            {"name": "fedyogi"},
            FedYogi(server_learning_rate=0.01, beta1=0.9, beta2=0.99, tau=1e-3),
        ),
        (
            {"name": "fedadagrad"},
            FedAdagrad(server_learning_rate=0.1, beta1=0.9, beta2=0.99, tau=1e-9),
        ),
    ],
)
def test_strategy_defaults(strategy: dict[str, Any], expected: Any) -> None:
    experiment = parse(strategy=strategy)
    assert experiment.strategy == expected
    assert experiment.strategy.min_sites is None
    assert experiment.min_sites == 3


def test_min_sites_given_is_used() -> None:
    assert parse(strategy={"name": "fedavg", "minSites": 2}).min_sites == 2


def test_training_and_evaluation_defaults() -> None:
    doc = spec_dict(SITES)
    del doc["training"], doc["evaluation"], doc["model"]
    experiment = parse_experiment(doc)
    t = experiment.training
    assert (t.rounds, t.batch_size, t.optimizer, t.learning_rate, t.seed) == (
        15,
        32,
        "sgd",
        0.01,
        0,
    )
    assert t.epochs_or_default == 1.0
    assert experiment.model.type == "logistic"
    split = experiment.evaluation.split
    assert (split.validation, split.test, split.column) == (0.15, 0.2, None)
    assert experiment.evaluation.baselines == ["local", "pooled"]
    assert experiment.data_schema.missing.numeric == "mean"
    assert experiment.data_schema.missing.categorical == "level"
    assert experiment.data_schema.unknown_levels == "error"


def test_min_sites_above_the_number_of_sites_is_rejected() -> None:
    doc = spec_dict(SITES, strategy={"name": "fedprox", "minSites": 4})
    assert rejection(doc) == [("", "strategy.minSites is 4 but only 3 site(s) are listed")]


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_task_other_than_binary_is_rejected_clearly(task: str) -> None:
    assert rejection(spec_dict(SITES, task=task)) == [
        ("", f"task {task!r} is not supported yet (only 'binary')")
    ]


def test_unknown_task_lists_the_tasks() -> None:
    [(path, message)] = rejection(spec_dict(SITES, task="survival"))
    assert path == "task"
    assert "'binary'" in message


BAD = {
    "duplicate site names": (
        {"sites": [SITES[0], SITES[0]]},
        "",
        "site name(s) used twice: s0",
    ),
    "site name not a DNS label": (
        {"sites": [{"name": "Site_A", "data": {"source": "demo", "hospital": "Hungary"}}]},
        "sites[0].name",
        "use lower-case letters, digits and '-', starting and ending with a letter or digit",
    ),
    "unknown demo hospital": (
        {"sites": [{"name": "a", "data": {"source": "demo", "hospital": "Boston"}}]},
        "sites[0].data.hospital",
        "Input should be 'Cleveland', 'Hungary', 'Switzerland' or 'VA Long Beach'",
    ),
    "unknown data source": (
        {"sites": [{"name": "a", "data": {"source": "excel", "path": "a.xlsx"}}]},
        "sites[0].data",
        "'excel'",
    ),
    "data without source": (
        {"sites": [{"name": "a", "data": {"path": "a.csv"}}]},
        "sites[0].data.source",
        "required field is missing",
    ),
    "strategy without name": (
        {"strategy": {"minSites": 2}},
        "strategy.name",
        "required field is missing",
    ),
    "empty site list": ({"sites": []}, "sites", "at least 1 item"),
    "no features": (
        {"schema": {"numeric": [], "categorical": []}},
        "schema",
        "the schema needs at least one feature",
    ),
    "column listed twice": (
        {"schema": {"categorical": ["sex", "age"]}},
        "schema",
        "column(s) listed twice: age",
    ),
    "target is a feature": (
        {"schema": {"numeric": ["age", "outcome"]}},
        "schema",
        "target column 'outcome' is also a feature",
    ),
    "levels for a numeric column": (
        {"schema": {"levels": {"age": ["1"]}}},
        "schema",
        "levels given for non-categorical column(s): age",
    ),
    "positive and positiveAbove": (
        {"schema": {"target": {"positive": [1], "positiveAbove": 0}}},
        "schema.target",
        "give either 'positive' or 'positiveAbove', not both",
    ),
    "epochs and steps": (
        {"training": {"localSteps": 5}},
        "training",
        "give either 'localEpochs' or 'localSteps', not both",
    ),
    "zero rounds": ({"training": {"rounds": 0}}, "training.rounds", "greater than or equal to 1"),
    "split leaves too little training": (
        {"evaluation": {"split": {"validation": 0.5, "test": 0.4}}},
        "evaluation.split",
        "validation + test must leave at least 10% for training",
    ),
    "unknown optimizer": ({"training": {"optimizer": "lbfgs"}}, "training.optimizer", "'sgd'"),
    "unknown strategy": ({"strategy": {"name": "scaffold"}}, "strategy", "'scaffold'"),
    "fedprox mu zero": (
        {"strategy": {"name": "fedprox", "proximalMu": 0}},
        "strategy.proximalMu",
        "greater than 0",
    ),
    "custom model without module": (
        {"model": {"type": "custom", "importPath": "NoColon"}},
        "model.importPath",
        "expected 'package.module:ClassName'",
    ),
    "unknown baseline": (
        {"evaluation": {"baselines": ["central"]}},
        "evaluation.baselines[0]",
        "'local', 'pooled', 'scratch' or 'pretrained'",
    ),
}


@pytest.mark.parametrize(("overrides", "path", "fragment"), BAD.values(), ids=BAD.keys())
def test_invalid_spec_is_rejected_naming_the_path(overrides, path, fragment) -> None:
    doc = deep_merge(spec_dict(SITES), overrides)
    found = rejection(doc)
    assert any(p == path and fragment in m for p, m in found), found


def test_model_without_type_names_the_missing_field() -> None:
    doc = spec_dict(SITES)
    doc["model"] = {"hidden": [8]}
    assert rejection(doc) == [("model.type", "required field is missing")]
