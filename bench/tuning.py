"""Trials per minute of ``medfl tune`` on the heart-disease example, and where the time goes.

The workload is examples/heart-disease/tuning.yaml's search space (learning rate, local
epochs, batch size) over the four hospitals, 15 rounds a trial. Timed in one run:

  (a) medfl's search: Ray Tune with Optuna's sampler, trials in reused actors (the
      machine's CPUs), ASHA off so that every trial trains all its rounds;
  (b) the same with ASHA on, as the example ships;
  (c) baseline: plain Optuna in this one process, the same trial function, one trial
      after another (no Ray).

Ray's start-up is timed apart and left out of (a) and (b); the rates count trials that
finished, failed or were stopped. Target: (a) >= 60 trials per minute.

Run: .venv/bin/python bench/tuning.py [--trials 32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

from medfl import load_experiment
from medfl.spec import Experiment
from medfl.tuning._search import _ray, _trials, _tuner
from medfl.tuning._space import decoded, optuna_space, with_params
from medfl.tuning._trial import score_rounds
from medfl.tuning._where import InProcessTrials

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "heart-disease" / "tuning.yaml"
TARGET = 60.0


def _with(experiment: Experiment, **changes: Any) -> Experiment:
    assert experiment.tuning is not None
    return experiment.model_copy(update={"tuning": experiment.tuning.model_copy(update=changes)})


def _search(experiment: Experiment, folder: Path) -> tuple[float, list[float]]:
    """Trials per minute and each trial's own time (Ray already started)."""
    assert experiment.tuning is not None
    began = time.perf_counter()
    trials = _trials(InProcessTrials(), experiment, folder, lambda: None)
    grid = _tuner(experiment, experiment.tuning, folder, None, trials).fit()
    seconds = time.perf_counter() - began
    own = [float((r.metrics or {}).get("time_total_s", 0.0)) for r in grid]
    return 60 * len(own) / seconds, own


def _plain_optuna(experiment: Experiment, trials: int) -> tuple[float, list[float]]:
    import torch

    tuning = experiment.tuning
    assert tuning is not None
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=tuning.seed)
    )
    space, own = optuna_space(tuning), []
    began = time.perf_counter()
    for _ in range(trials):
        trial = study.ask(space)
        start = time.perf_counter()
        trial_exp = with_params(experiment, decoded(tuning, trial.params))
        last: dict[str, Any] = {}
        score_rounds(trial_exp, tuning, last.update)
        own.append(time.perf_counter() - start)
        study.tell(trial, last[tuning.metric])
    return 60 * trials / (time.perf_counter() - began), own


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=32)
    args = parser.parse_args()
    base = load_experiment(EXAMPLE)
    cpus = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="medfl-bench-") as tmp:
        started = time.perf_counter()
        with _ray(None):
            ray_s = time.perf_counter() - started
            full, full_own = _search(_with(base, trials=args.trials, scheduler="none"), Path(tmp))
            asha, _ = _search(_with(base, trials=args.trials), Path(tmp) / "asha")
    plain, plain_own = _plain_optuna(base, args.trials)
    trial_s, plain_s = statistics.median(full_own), statistics.median(plain_own)
    print(f"{EXAMPLE.name}: {args.trials} trials of 15 rounds, 4 sites; {cpus} CPUs")
    print(f"Ray start-up (once, not counted below): {ray_s:.1f} s")
    print(f"(a) Ray Tune + Optuna, ASHA off   {full:6.1f} trials/min   ratio {full / plain:4.2f}")
    print(f"(b) Ray Tune + Optuna, ASHA on    {asha:6.1f} trials/min   ratio {asha / plain:4.2f}")
    print(f"(c) plain Optuna, one process     {plain:6.1f} trials/min   ratio 1.00")
    busy = min(cpus, args.trials)
    overhead = 60 / full * busy - trial_s
    print(
        f"where a trial's time goes in (a): {trial_s:.2f} s training and scoring (median; "
        f"{plain_s:.2f} s in (c)), about {max(overhead, 0):.2f} s of Ray Tune per trial per "
        f"worker ({busy} at once)"
    )
    ok = full >= TARGET
    print(f"{'PASS' if ok else 'FAIL'}: (a) {full:.1f} trials/min (target >= {TARGET:.0f})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
