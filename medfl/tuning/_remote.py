"""Trials over a real federation: each trial is submitted as its own Flower run
(``medfl-job: trial``: the ServerApp records the validation rounds only, never reads a
test split, keeps no model) and followed through its result.json, whose rounds feed
Ray Tune's reports as the simulation's do. A trial that ASHA stops, that fails or that
the search leaves behind has its Flower run stopped: the sites are shared."""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune import Callback

from medfl.deploy import allow_rounds_after, request_stop, stop_requested
from medfl.errors import MedflError, UsageError, error_from_result
from medfl.results import RoundRecord, RunResult, RunStore
from medfl.runners._local import follow, submit_run
from medfl.spec import Experiment
from medfl.spec._tuning import Tuning
from medfl.tuning._space import decoded, with_params
from medfl.tuning._trial import Report, TrialFailed, _base
from medfl.tuning._where import FederationTrials

RUN_ID_SUFFIX = ".flower-run"  # beside a trial's run folder while its run may be going


def federation_trial(
    config: dict[str, Any], spec_text: str, where: FederationTrials, runs: str
) -> None:
    """Ray Tune's trainable: one trial's parameters as a Flower run, scored round by
    round on the sites' validation splits. Its run folder: ``runs/<trial id>``."""
    from ray import tune

    base = _base(spec_text)
    assert base.tuning is not None
    experiment = with_params(base, decoded(base.tuning, config))
    out = Path(runs) / tune.get_context().get_trial_id()
    try:
        score_run(experiment, base.tuning, where, out, tune.report)
    except MedflError as exc:
        raise TrialFailed(str(exc)) from None


def score_run(
    experiment: Experiment, tuning: Tuning, where: FederationTrials, out: Path, report: Report
) -> None:
    """Submit the trial, report its rounds as result.json gains them, and its last
    round once Flower says the run finished."""
    id_file = out.with_name(out.name + RUN_ID_SUFFIX)
    with tempfile.TemporaryDirectory(prefix="medfl-trial-") as home:
        cli = where.cli(Path(home))
        run_id = submit_run(
            cli, experiment, out, False, where.timeouts, Path(home), outputs=False, job="trial"
        )
        id_file.write_text(str(run_id))  # the search stops it if this trial is stopped
        scorer = _Scorer(tuning, experiment.training.rounds, report, out)
        try:
            status = follow(RunStore(out), cli, run_id, scorer, watch=scorer.in_time)
        except BaseException:
            if stop_requested(out) is None:  # else its ServerApp ends after this round
                cli.stop(run_id)
            raise
        finally:
            id_file.unlink(missing_ok=True)
    result = _result(out, status)
    if result.status != "succeeded" or not result.rounds:
        raise TrialFailed(result.error or f"the trial's Flower run ended {status}")
    scorer.last(result)


class _Scorer:
    """Each new round's validation score: checked, and reported at ASHA's rungs (the
    last round only after the run succeeded), as the in-process trial does."""

    def __init__(self, tuning: Tuning, rounds: int, report: Report, out: Path) -> None:
        self.tuning, self.rounds, self.report, self.out = tuning, rounds, report, out
        self.reported = tuning.report_rounds(rounds)
        self.began = time.monotonic()

    def __call__(self, record: RoundRecord) -> None:
        value = self._value(record)
        if record.round in self.reported and record.round < self.rounds:
            # Ray Tune's report returns once the search let the trial go on (ASHA did
            # not stop it); the run waits for this word after each rung
            self.report({self.tuning.metric: value, "round": record.round, "testReads": 0})
            allow_rounds_after(self.out, record.round)

    def _value(self, record: RoundRecord) -> float:
        value = record.metrics.get(self.tuning.metric)
        if value is None or not math.isfinite(value):
            raise TrialFailed(
                f"round {record.round}: the validation {self.tuning.metric} is undefined"
            )
        return float(value)

    def in_time(self) -> None:
        seconds = time.monotonic() - self.began
        if seconds > self.tuning.trial_timeout_seconds:
            raise TrialFailed(
                f"stopped after {seconds:.0f} s: past tuning.trialTimeoutSeconds "
                f"({self.tuning.trial_timeout_seconds:g})"
            )

    def last(self, result: RunResult) -> None:
        record = result.rounds[-1]
        reads = 0 if result.final is None else 1
        self.report({self.tuning.metric: self._value(record), "round": record.round,
                     "testReads": reads})  # fmt: skip


def _result(out: Path, status: str) -> RunResult:
    try:
        return RunStore(out).load_result()
    except MedflError:
        raise UsageError(
            f"Flower run ended {status} but {out} holds no result.json: the server writes "
            "each run there, on its own machine; run medfl tune --server on that machine"
        ) from None


class StopRuns(Callback):  # type: ignore[misc]
    """In the search's driver: asks the Flower run of a trial ASHA stopped to end
    after its current round (``flwr stop`` of runs still marked as going comes at the
    search's end), and calls ``watch`` (a local deployment's processes, may raise) at
    every step of the search."""

    def __init__(self, where: FederationTrials, runs: Path, watch: Callable[[], None]) -> None:
        self.where, self.runs, self.watch = where, runs, watch

    def __getstate__(self) -> dict[str, Any]:
        # Ray Tune pickles its callbacks with the search's state; a watch holds processes
        return {"where": self.where, "runs": self.runs, "watch": _nothing}

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self.watch()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        # A trial that ends on its own has removed its mark; one ASHA stopped is
        # blocked in its report, its run still training: it ends after this round.
        if (self.runs / (trial.trial_id + RUN_ID_SUFFIX)).exists():
            request_stop(self.runs / trial.trial_id, "the search stopped this trial (ASHA)")


def _nothing() -> None:
    pass


def stop_left_runs(where: FederationTrials, runs: Path, trial_id: str = "*") -> int:
    """Stop the Flower runs still marked as going (of one trial, or of all); how many."""
    marks = list(runs.glob(trial_id + RUN_ID_SUFFIX)) if runs.is_dir() else []
    if not marks:
        return 0
    with tempfile.TemporaryDirectory(prefix="medfl-stop-") as home:
        cli = where.cli(Path(home))
        for mark in marks:
            with contextlib.suppress(OSError, ValueError):
                cli.stop(int(mark.read_text()))
                mark.unlink()
    return len(marks)


def run_best(
    experiment: Experiment, where: FederationTrials, out: Path, watch: Callable[[], None]
) -> RunResult:
    """The best configuration as an ordinary run on the federation: the test splits
    read once; the ServerApp writes ``out`` (result.json, model, report)."""
    with tempfile.TemporaryDirectory(prefix="medfl-best-") as home:
        cli = where.cli(Path(home))
        run_id = submit_run(cli, experiment, out.resolve(), False, where.timeouts, Path(home))
        try:
            status = follow(RunStore(out), cli, run_id, None, watch=watch)
        except BaseException:
            cli.stop(run_id)
            raise
    result = _result(out, status)
    if result.status != "succeeded":
        raise error_from_result(result.error_kind, result.error or f"Flower run {status}")
    return result
