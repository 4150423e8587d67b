"""Hyperparameter search (public): ``tune(experiment)`` runs the experiment's ``tuning``
section, each trial a federated run scored on validation, then trains the best
configuration once more and evaluates it on the test splits, once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from medfl.errors import UsageError
from medfl.results import RunResult, new_run_dir
from medfl.spec import Experiment
from medfl.spec._policy import PolicyFiles
from medfl.tuning._outputs import (
    BEST_FILE,
    REPORT_FILE,
    TRIALS_FILE,
    TUNING_FILE,
    best_spec_text,
    plot,
    report,
    summary,
    write_trials,
)
from medfl.tuning._search import SearchResult, TrialRow, run_trials
from medfl.tuning._space import check_space, with_params

__all__ = ["SearchResult", "TrialRow", "TuneOutcome", "check_space", "tune"]


@dataclass
class TuneOutcome:
    search: SearchResult
    best: TrialRow
    final: RunResult
    folder: Path


def tune(
    experiment: Experiment,
    *,
    out: Path | str | None = None,
    ray_address: str | None = None,
    source: str = "the experiment",
    site_policies: PolicyFiles = (),
) -> TuneOutcome:
    """Search, then train the best configuration into ``<out>/best`` (its own run).
    ``site_policies``: simulated sites' own policy files, for every trial and the run."""
    from medfl.runners import FastEngine, run

    folder = Path(out) if out else new_run_dir(f"{experiment.name}-tune")
    if (folder / TUNING_FILE).exists():
        raise UsageError(f"{folder} already holds a search: choose another --out folder")
    folder.mkdir(parents=True, exist_ok=True)
    search = run_trials(experiment, folder / "ray", ray_address, site_policies)
    write_trials(search, folder / TRIALS_FILE)
    best = search.best()
    tuned = with_params(experiment, best.params)
    (folder / BEST_FILE).write_text(best_spec_text(tuned, best, source), encoding="utf-8")
    engine = FastEngine(site_policies=site_policies)
    final = run(tuned, engine=engine, out=folder / "best").result
    plots = plot(search, folder)
    done = summary(search, best, final)
    (folder / TUNING_FILE).write_text(json.dumps(done, indent=2), encoding="utf-8")
    (folder / REPORT_FILE).write_text(report(search, best, final, plots), encoding="utf-8")
    return TuneOutcome(search, best, final, folder)
