"""One run from start to result directory, whatever carries the messages.

Both engines call ``drive``: the fast engine in this thread, Flower's inside its
ServerApp. A failure keeps every finished round in result.json with the reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from medfl.errors import MedflError
from medfl.results._model import RoundRecord, RunResult
from medfl.results._store import RunStore
from medfl.runners._baselines import compute_baselines
from medfl.spec import Experiment
from medfl.training import Checkpoint, Federation, Params, ServerOptimizer, Setup, Transport

log = logging.getLogger("medfl.run")

Progress = Callable[[RoundRecord], None]


@dataclass
class DriveOptions:
    engine: str = "fast"
    resume: bool = False
    baselines: bool = True
    progress: Progress | None = None
    no_baselines_because: str | None = None  # said in result.json when baselines are off


def _start(fed: Federation, store: RunStore, setup: Setup, resume: bool) -> Checkpoint:
    if not resume:
        return Checkpoint(fed.initial_params(setup.preprocessor), {}, [])
    params, optimizer, rounds = store.load_checkpoint()
    return Checkpoint(params, optimizer, rounds)


def _record_setup(result: RunResult, setup: Setup) -> None:
    result.sites = {n: h.report.to_dict() for n, h in setup.hellos.items()}
    result.excluded_sites = setup.excluded
    result.features = setup.preprocessor.feature_names


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt | SystemExit):  # Ctrl-C; Flower stopping the run
        return "interrupted"
    return f"internal error: {type(exc).__name__}: {exc}"


def _kind(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return "interrupted"
    return type(exc).__name__ if isinstance(exc, MedflError) else "internal"


def drive(
    experiment: Experiment, transport: Transport, store: RunStore, options: DriveOptions
) -> RunResult:
    """Set up, run every round (checkpointing each), evaluate on test, save the model."""
    result = RunResult(name=experiment.name, engine=options.engine)
    began = time.perf_counter()
    fed = Federation(experiment, transport)
    try:
        setup = fed.setup()
        _record_setup(result, setup)
        result.timings["setupSeconds"] = time.perf_counter() - began
        start = _start(fed, store, setup, options.resume)
        result.rounds = list(start.rounds)

        def on_round(record: RoundRecord, params: Params, optimizer: ServerOptimizer) -> None:
            result.rounds.append(record)
            store.save_result(result)  # first: a checkpoint never runs ahead of result.json
            store.save_checkpoint(params, optimizer.state(), len(result.rounds))
            if options.progress:
                options.progress(record)

        trained = time.perf_counter()
        params = fed.run_rounds(setup, start, on_round)
        result.timings["trainingSeconds"] = time.perf_counter() - trained
        result.final = fed.evaluate(params, setup.active)
        store.save_model(params, setup.preprocessor.to_dict(), experiment)
        if options.baselines:
            started = time.perf_counter()
            result.baselines = compute_baselines(
                experiment, setup.active, setup.preprocessor, result.notes
            )
            result.timings["baselineSeconds"] = time.perf_counter() - started
        elif experiment.evaluation.baselines and options.no_baselines_because:
            result.notes.append(f"baselines left out: {options.no_baselines_because}")
        result.status = "succeeded"
    except BaseException as exc:
        result.status = "failed"
        result.error = str(exc) if isinstance(exc, MedflError) else _describe(exc)
        result.error_kind = _kind(exc)
        raise
    finally:
        result.timings["totalSeconds"] = time.perf_counter() - began
        store.save_result(result)
    return result
