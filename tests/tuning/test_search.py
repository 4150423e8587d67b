"""A real search: Ray Tune with Optuna's sampler, each trial a federated run of the
heart-disease example (one Ray start for the whole file)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from medfl import load_experiment
from medfl.spec import Experiment, parse_experiment
from medfl.training import SiteWorker
from medfl.tuning import TuneOutcome, tune
from tests.helpers import deep_merge

pytestmark = pytest.mark.ray
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "heart-disease" / "experiment.yaml"


def _search_spec() -> Experiment:
    """The example with a poor learning rate as written (0.002): the search should do
    better. One choice of learning rate, 1e38, makes every update overflow."""
    base = load_experiment(EXAMPLE).to_wire()
    doc = deep_merge(
        base,
        {
            "training": {"learningRate": 0.002, "rounds": 6},
            "evaluation": {"baselines": []},
            "tuning": {
                "metric": "auc",
                "trials": 8,
                "concurrency": 2,
                "gracePeriod": 3,
                "seed": 0,  # samples the overflowing rate twice
                "space": {
                    "training.learningRate": {
                        "type": "categorical", "choices": [0.002, 0.03, 0.3, 1e38],
                    },
                    "training.localEpochs": {"type": "int", "low": 1, "high": 3},
                },
            },
        },
    )  # fmt: skip
    return parse_experiment(doc)


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[TuneOutcome, list[str]]:
    """The search, with every test-split evaluation in this process recorded."""
    tested: list[str] = []
    original = SiteWorker.evaluate

    def spy(self: SiteWorker, params: Any, split: Any) -> Any:
        if split == "test":
            tested.append(self.name)
        return original(self, params, split)

    folder = tmp_path_factory.mktemp("search")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SiteWorker, "evaluate", spy)
        outcome = tune(_search_spec(), out=folder / "tune")
    return outcome, tested


def test_eight_trials_run_and_the_best_beats_the_configuration_as_written(searched) -> None:
    outcome, _ = searched
    rows = outcome.search.rows

    assert len(rows) == 8
    default = rows[0]  # the spec's own values are tried first
    assert default.params == {"training.learningRate": 0.002, "training.localEpochs": 2}
    assert outcome.best.value is not None and default.value is not None
    assert outcome.best.value > default.value
    assert outcome.final.status == "succeeded"
    assert outcome.final.final is not None
    assert outcome.final.final.metrics["auc"] is not None


def test_trials_never_read_a_test_split_and_the_best_reads_it_once(searched) -> None:
    outcome, tested = searched

    assert [r.test_reads for r in outcome.search.rows] == [0] * 8
    # the driver's only test evaluation: the best configuration's run, once per site
    assert sorted(tested) == ["cleveland", "hungary", "switzerland", "va-long-beach"]


def test_an_overflowing_trial_fails_and_the_search_goes_on(searched) -> None:
    outcome, _ = searched
    failed = [r for r in outcome.search.rows if r.status == "failed"]

    assert failed, "the seed should sample the overflowing learning rate"
    assert all(r.params["training.learningRate"] == 1e38 for r in failed)
    assert all("returned a usable update" in r.reason for r in failed)
    assert sum(r.status != "failed" for r in outcome.search.rows) >= 4


def test_the_search_folder_holds_the_table_the_best_spec_and_the_report(searched) -> None:
    outcome, _ = searched
    folder = outcome.folder

    with (folder / "trials.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [int(r["trial"]) for r in table] == [r.number for r in outcome.search.rows]
    assert {r["status"] for r in table} <= {"completed", "pruned", "failed"}
    best = yaml.safe_load((folder / "best.yaml").read_text())
    assert "tuning" not in best
    assert best["training"]["learningRate"] == outcome.best.params["training.learningRate"]
    assert (
        load_experiment(folder / "best.yaml").training.local_epochs
        == (outcome.best.params["training.localEpochs"])
    )
    summary = json.loads((folder / "tuning.json").read_text())
    assert summary["best"]["trial"] == outcome.best.number
    assert summary["testReads"]["trials"] == 0
    report = (folder / "report.md").read_text()
    assert f"**Best:** trial {outcome.best.number}" in report
    assert (folder / "trials.png").is_file()
    assert (folder / "best" / "result.json").is_file()
