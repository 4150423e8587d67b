"""Hyperparameter search (public): ``tune(experiment)`` runs the experiment's ``tuning``
section, each trial a federated run scored on validation, then trains the best
configuration once more and evaluates it on the test splits, once."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medfl.deploy import DEPLOYMENT_DIR
from medfl.errors import UsageError
from medfl.results import RunResult, new_run_dir
from medfl.spec import Experiment
from medfl.spec._load import resolve_paths
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
from medfl.tuning._search import TRIAL_RUNS, SearchResult, TrialRow, run_trials
from medfl.tuning._space import check_space, with_params
from medfl.tuning._where import FederationTrials, InProcessTrials, Where

if TYPE_CHECKING:  # medfl.runners imports torch: only when a search runs
    from medfl.runners import LocalBackend

__all__ = [
    "TRIAL_RUNS",
    "FederationTrials",
    "InProcessTrials",
    "SearchResult",
    "TrialRow",
    "TuneOutcome",
    "Where",
    "check_space",
    "tune",
]


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
    where: Where | LocalBackend | None = None,
    ray_address: str | None = None,
    source: str = "the experiment",
    site_policies: PolicyFiles = (),
) -> TuneOutcome:
    """Search, then train the best configuration into ``<out>/best`` (its own run).

    ``where`` the trials run: ``InProcessTrials`` (the default, built from
    ``ray_address`` and ``site_policies``: the simulated sites' own policy files),
    ``FederationTrials`` (each trial a run submitted to that federation's server, the
    best run too), or a ``LocalBackend``: its deployment started once on this
    machine, every trial and the best run submitted to it, every process stopped after.
    """
    from medfl.runners import LocalBackend

    if where is None:
        where = InProcessTrials(ray_address, site_policies)
    elif ray_address or site_policies:
        raise UsageError("ray_address and site_policies belong in where=InProcessTrials(...)")
    if isinstance(where, InProcessTrials) and experiment.privacy.secure:
        raise UsageError(
            "privacy.secureAggregation: trials in one process pass updates in memory (the "
            "fast engine); search over a federation (--backend local or --server) for SecAgg+"
        )
    folder = Path(out) if out else new_run_dir(f"{experiment.name}-tune")
    if (folder / TUNING_FILE).exists():
        raise UsageError(f"{folder} already holds a search: choose another --out folder")
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(where, LocalBackend):
        from medfl.runners._local import deployed

        with deployed(experiment, where, folder / DEPLOYMENT_DIR) as running:
            trials = FederationTrials(
                running.address, running.ca, where.round_timeout_s, where.startup_timeout_s
            )
            return _search(experiment, folder, trials, source, running.watch)
    return _search(experiment, folder, where, source)


def _search(
    experiment: Experiment,
    folder: Path,
    where: Where,
    source: str,
    watch: Callable[[], None] = lambda: None,
) -> TuneOutcome:
    search = run_trials(experiment, folder / "ray", where, watch)
    write_trials(search, folder / TRIALS_FILE)
    best = search.best()
    tuned = with_params(experiment, best.params)
    (folder / BEST_FILE).write_text(best_spec_text(tuned, best, source), encoding="utf-8")
    final = _run_best(tuned, where, folder / "best", watch)
    plots = plot(search, folder)
    done = summary(search, best, final)
    (folder / TUNING_FILE).write_text(json.dumps(done, indent=2), encoding="utf-8")
    (folder / REPORT_FILE).write_text(report(search, best, final, plots), encoding="utf-8")
    return TuneOutcome(search, best, final, folder)


def _run_best(tuned: Experiment, where: Where, out: Path, watch: Callable[[], None]) -> RunResult:
    """The best configuration once more, where the trials ran; test read once."""
    if isinstance(where, FederationTrials):
        from medfl.tuning._remote import run_best

        return run_best(resolve_paths(tuned, Path.cwd()), where, out, watch)
    from medfl.runners import FastEngine, run

    engine = FastEngine(site_policies=where.site_policies)
    return run(tuned, engine=engine, out=out).result
