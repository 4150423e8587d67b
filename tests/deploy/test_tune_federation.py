"""``medfl tune --backend local`` for real: one deployment (a SuperLink and a SuperNode
per site on 127.0.0.1, TLS on, sites authenticated) started once for the whole search,
every trial submitted to it as its own Flower run (``medfl-job: trial``), ASHA fed by
the rounds of each run's result.json, then the best configuration run once more on
the same deployment. One search for the whole file: starting the processes and Ray
costs most of its time.

Tolerance against the simulation: none — a trial's validation score on the deployment
is the in-process trial's, compared with ==.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medfl.runners import LocalBackend
from medfl.spec import Experiment, parse_experiment
from medfl.tuning import TRIAL_RUNS, TuneOutcome, tune
from medfl.tuning._remote import RUN_ID_SUFFIX
from medfl.tuning._space import with_params
from medfl.tuning._trial import score_rounds
from tests.deploy.flower_processes import deployment_processes
from tests.helpers import make_sites, read_result

pytestmark = pytest.mark.deploy

ROUNDS = 3


def _spec(tmp_path: Path) -> Experiment:
    """Sites large enough that none withholds its validation metrics; ASHA decides
    after rounds 1 and 2 of 3, so a lagging trial is stopped mid-run."""
    tuning = {
        "metric": "auc",
        "trials": 2,
        "scheduler": "asha",
        "gracePeriod": 1,
        "seed": 0,
        "space": {"training.learningRate": {"type": "categorical", "choices": [0.002, 0.3]}},
    }
    doc = make_sites(tmp_path, (200, 150, 100), training={"rounds": ROUNDS}, tuning=tuning)
    return parse_experiment(doc)


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[TuneOutcome, Experiment]:
    folder = tmp_path_factory.mktemp("federation-search")
    experiment = _spec(folder)
    return tune(experiment, out=folder / "tune", where=LocalBackend()), experiment


def _in_process_score(experiment: Experiment, params: dict[str, Any]) -> float:
    """What the simulation's trial scores for ``params`` at the last round."""
    assert experiment.tuning is not None
    seen: list[dict[str, Any]] = []
    score_rounds(with_params(experiment, params), experiment.tuning, seen.append)
    return float(seen[-1][experiment.tuning.metric])


def _trial_runs(outcome: TuneOutcome) -> list[Path]:
    return sorted(p for p in (outcome.folder / "ray" / TRIAL_RUNS).iterdir() if p.is_dir())


def test_trials_ran_on_the_deployment_and_score_as_in_the_simulation(searched) -> None:
    outcome, experiment = searched
    rows = outcome.search.rows
    completed = [r for r in rows if r.status == "completed"]

    assert len(rows) == 2 and completed
    assert {r.status for r in rows} <= {"completed", "pruned"}, [r.reason for r in rows]
    for row in completed:
        assert row.rounds == ROUNDS
        assert row.value == _in_process_score(experiment, row.params)  # bit for bit
    assert len(_trial_runs(outcome)) == 2  # each trial its own Flower run
    assert deployment_processes() == []


def test_no_trial_run_read_a_test_split_and_the_best_run_did_once(searched) -> None:
    outcome, _ = searched

    for run_dir in _trial_runs(outcome):
        result = read_result(run_dir)
        assert result.get("final") is None
        assert not (run_dir / "model.npz").exists() and not (run_dir / "checkpoint.npz").exists()
    assert [r.test_reads for r in outcome.search.rows] == [0, 0]
    best = read_result(outcome.folder / "best")
    assert best["status"] == "succeeded" and best["engine"] == "local"
    assert best["final"]["metrics"]["auc"] is not None
    assert len(best["rounds"]) == ROUNDS
    assert best["rounds"][-1]["metrics"]["auc"] == outcome.best.value


def test_a_trial_asha_stopped_had_its_flower_run_stopped(searched) -> None:
    outcome, _ = searched
    runs = outcome.folder / "ray" / TRIAL_RUNS

    pruned = [r for r in outcome.search.rows if r.status == "pruned"]

    assert pruned, "the lagging learning rate should be stopped at ASHA's first rung"
    stopped = [read_result(p) for p in _trial_runs(outcome)]
    stopped = [r for r in stopped if r["status"] != "succeeded"]
    assert len(stopped) == len(pruned)
    for result in stopped:  # ended by its ServerApp after a round, before the last
        assert "the search stopped this trial (ASHA)" in result["error"]
        assert len(result["rounds"]) < ROUNDS
    assert list(runs.glob(f"*{RUN_ID_SUFFIX}")) == []  # none left marked as going


def test_the_search_folder_holds_what_a_simulated_search_writes(searched) -> None:
    outcome, _ = searched
    folder = outcome.folder

    for name in ("trials.csv", "best.yaml", "tuning.json", "report.md", "trials.png"):
        assert (folder / name).is_file(), name
    summary = json.loads((folder / "tuning.json").read_text())
    assert summary["testReads"]["trials"] == 0
    assert summary["best"]["trial"] == outcome.best.number
    assert (folder / "best" / "report.md").is_file()
    assert (folder / "deployment" / "server.log").is_file()
