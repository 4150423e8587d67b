"""The search: Optuna's sampler inside Ray Tune, ASHA stopping poor trials early, then
the best configuration trained once more and evaluated on the test splits, once."""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medfl.errors import TrainingError, UsageError
from medfl.spec import Experiment
from medfl.spec._load import resolve_paths
from medfl.spec._tuning import Tuning
from medfl.tuning._space import check_space, decoded, default_point, encoded, optuna_space
from medfl.tuning._where import FederationTrials, InProcessTrials, Where

log = logging.getLogger("medfl.tune")

TRIAL_RUNS = "trial-runs"  # a federation's trials: each its run folder here, by trial id
_WAITING_CPU = 0.25  # of this machine's Ray, for a trial that only follows its Flower run


@dataclass
class TrialRow:
    """One trial as the trials table shows it."""

    number: int
    status: str  # completed, pruned (stopped early by ASHA or the time budget), failed
    value: float | None
    rounds: int
    seconds: float
    params: dict[str, Any]
    test_reads: int = 0
    reason: str = ""


@dataclass
class SearchResult:
    tuning: Tuning
    rows: list[TrialRow]
    seconds: float
    default: dict[str, Any] | None  # the spec's own values, tried first when in the space
    notes: list[str] = field(default_factory=list)

    def best(self) -> TrialRow:
        done = [r for r in self.rows if r.status == "completed" and r.value is not None]
        if not done:
            reasons = "; ".join(sorted({r.reason for r in self.rows if r.reason})) or "none ran"
            raise TrainingError(f"no trial completed its rounds ({reasons})")
        sign = 1.0 if self.tuning.direction == "max" else -1.0
        return max(done, key=lambda r: (sign * (r.value or 0.0), -r.number))


def _concurrency(tuning: Tuning) -> int:
    return max(1, int(_cpus() / tuning.resources.cpus))


def _cpus() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


@contextmanager
def _ray(address: str | None) -> Iterator[None]:
    """Ray for the search: an existing cluster at ``address``, else one on this machine
    sized to its CPUs. Ray's and Tune's own output kept to errors."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no per-trial files
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "60")  # the search's state, not per trial
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    started = not ray.is_initialized()
    if started:
        cpus = None if address else _cpus()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Tip: In future versions of Ray", FutureWarning)
            ray.init(
                address=address, num_cpus=cpus, include_dashboard=False if cpus else None,
                logging_level=logging.ERROR, log_to_driver=False,
            )  # fmt: skip
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def run_trials(
    experiment: Experiment,
    folder: Path,
    where: Where | None = None,
    watch: Callable[[], None] = lambda: None,
) -> SearchResult:
    """Every trial of ``experiment.tuning``; none touches a test split. ``watch`` (a
    local deployment's processes) is called at every step of the search and may raise."""
    tuning = experiment.tuning
    if tuning is None:
        raise UsageError("the experiment has no tuning section: nothing to search")
    where = where or InProcessTrials()
    check_space(experiment, tuning)
    portable = resolve_paths(experiment, Path.cwd())  # trials run in other folders
    point = default_point(experiment, tuning)
    began = time.perf_counter()
    address = where.ray_address if isinstance(where, InProcessTrials) else None
    with _ray(address), _stopping_runs(where, folder):
        tuner = _tuner(portable, tuning, folder, point, _trials(where, portable, folder, watch))
        grid = tuner.fit()
        rows = [_row(i, result, tuning, experiment) for i, result in enumerate(grid)]
    rows.sort(key=lambda r: r.number)
    return SearchResult(tuning, rows, time.perf_counter() - began, point)


@dataclass
class _Trials:
    """What Ray Tune runs for a trial, with what, and how many at once."""

    trainable: Any
    resources: dict[str, float]
    concurrency: int
    callbacks: list[Any]


def _trials(
    where: Where, experiment: Experiment, folder: Path, watch: Callable[[], None]
) -> _Trials:
    from ray import tune

    tuning = experiment.tuning
    assert tuning is not None
    spec_text = json.dumps(experiment.to_wire())
    if isinstance(where, FederationTrials):
        from medfl.tuning._remote import StopRuns, federation_trial

        runs = (folder / TRIAL_RUNS).resolve()
        runs.mkdir(parents=True, exist_ok=True)
        trainable = tune.with_parameters(
            federation_trial, spec_text=spec_text, where=where, runs=str(runs)
        )
        # the sites train; a trial here only waits on them. All trials share the same
        # sites, so one at a time unless tuning.concurrency says otherwise.
        resources = {"cpu": _WAITING_CPU, "gpu": 0.0}
        return _Trials(
            trainable, resources, tuning.concurrency or 1, [StopRuns(where, runs, watch)]
        )
    from medfl.tuning._trial import trial

    files = [(site, str(path)) for site, path in where.site_policies]
    trainable = tune.with_parameters(trial, spec_text=spec_text, policy_files=files)
    resources = {"cpu": tuning.resources.cpus, "gpu": tuning.resources.gpus}
    return _Trials(trainable, resources, tuning.concurrency or _concurrency(tuning), [])


@contextmanager
def _stopping_runs(where: Where, folder: Path) -> Iterator[None]:
    """A federation's trials whose runs are still going when the search ends (its time
    budget, a failure, Ctrl-C) are stopped: the sites are shared with the next work."""
    try:
        yield
    finally:
        if isinstance(where, FederationTrials):
            from medfl.tuning._remote import stop_left_runs

            stop_left_runs(where, (folder / TRIAL_RUNS).resolve())


def _tuner(  # type: ignore[no-untyped-def]
    experiment: Experiment,
    tuning: Tuning,
    folder: Path,
    point: dict[str, Any] | None,
    trials: _Trials,
):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    rounds = experiment.training.rounds
    search = OptunaSearch(
        space=optuna_space(tuning),
        metric=tuning.metric,
        mode=tuning.direction,
        points_to_evaluate=[encoded(tuning, point)] if point else None,
        seed=tuning.seed,
    )
    scheduler = None
    if tuning.scheduler == "asha" and rounds > 1:
        grace = min(tuning.grace_period, rounds)
        scheduler = ASHAScheduler(
            time_attr="round", max_t=rounds, grace_period=grace,
            reduction_factor=tuning.reduction_factor,
        )  # fmt: skip
    return tune.Tuner(
        tune.with_resources(trials.trainable, trials.resources),
        tune_config=tune.TuneConfig(
            metric=tuning.metric,
            mode=tuning.direction,
            search_alg=search,
            scheduler=scheduler,
            num_samples=tuning.trials,
            max_concurrent_trials=trials.concurrency,
            time_budget_s=tuning.time_budget_seconds,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name="trials",
            storage_path=str(folder.resolve()),
            verbose=0,
            callbacks=trials.callbacks,
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
        ),
    )


def _row(index: int, result: Any, tuning: Tuning, experiment: Experiment) -> TrialRow:
    metrics = result.metrics or {}
    rounds = int(metrics.get("round", 0))
    value = metrics.get(tuning.metric)
    if result.error is not None:
        status, reason = "failed", _reason(result.error)
    elif rounds < experiment.training.rounds:
        status, reason = "pruned", f"stopped after round {rounds} (ASHA or the time budget)"
    else:
        status, reason = "completed", ""
    return TrialRow(
        number=_number(result, index),
        status=status,
        value=None if value is None else float(value),
        rounds=rounds,
        seconds=float(metrics.get("time_total_s", 0.0)),
        params=decoded(tuning, result.config or {}),
        test_reads=int(metrics.get("testReads", 0)),
        reason=reason,
    )


def _number(result: Any, index: int) -> int:
    """The trial's number in the order trials started: Ray names its folder
    ``trial_<id>_<number>_<values>``."""
    parts = Path(str(getattr(result, "path", "") or "")).name.split("_")
    return int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else index + 1


def _reason(error: BaseException) -> str:
    """The trial's own message, without Ray's wrapping and traceback."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in reversed(lines):
        if "TrialFailed:" in line:
            return line.split("TrialFailed:", 1)[1].strip()
    return lines[-1] if lines else type(error).__name__
