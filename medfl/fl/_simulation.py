"""One experiment through Flower's simulation engine: a ServerApp and a ClientApp per
site on Ray, started and stopped here."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medfl.errors import TrainingError
from medfl.fl._client_app import make_client_app
from medfl.fl._server_app import ServerSession, make_server_app
from medfl.fl._transport import Timeouts
from medfl.results import RunResult, RunStore
from medfl.spec import Experiment, parse_experiment
from medfl.spec._policy import PolicyFiles

if TYPE_CHECKING:
    from medfl.runners._drive import DriveOptions

_SERVER_STOP_SECONDS = 60.0  # a ServerApp told to stop gives up within one poll


def _portable_spec(experiment: Experiment) -> str:
    """The spec as JSON with data paths made absolute: Ray's workers may run elsewhere."""
    resolved = parse_experiment(experiment.to_wire(), "experiment", base_dir=Path.cwd())
    return json.dumps(resolved.to_wire())


def _backend_config(num_cpus: int) -> dict[str, Any]:
    """One CPU per ClientApp, so Ray runs ``num_cpus`` sites at once; Ray's own
    logging kept to errors (sites' failures come back in their replies)."""
    return {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {
            "num_cpus": num_cpus,
            "include_dashboard": False,
            "logging_level": "ERROR",
            "log_to_driver": False,
        },
    }


@contextmanager
def _quiet_engine() -> Iterator[None]:
    """Flower logs each run's start and its own deprecation notices, Ray a tip about
    GPU environment variables; medfl reports progress itself. Errors still show."""
    logger = logging.getLogger("flwr")
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Tip: In future versions of Ray", FutureWarning)
            yield
    finally:
        logger.setLevel(before)


def _stop_ray(started_here: bool) -> None:
    import ray

    if started_here and ray.is_initialized():
        ray.shutdown()


def run_flower_simulation(
    experiment: Experiment,
    store: RunStore,
    options: DriveOptions,
    num_cpus: int = 2,
    timeouts: Timeouts | None = None,
    policies: PolicyFiles = (),
) -> RunResult:
    """Run ``experiment`` on Flower's simulation engine and return its RunResult.

    What ``drive`` raises inside the ServerApp (a DataError, a TrainingError) is
    raised here as the same exception; Ray is shut down either way.
    """
    import ray
    from flwr.simulation import run_simulation

    from medfl.runners import _single_thread

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    session = ServerSession(experiment, store, options, timeouts or Timeouts())
    started_ray = not ray.is_initialized()
    engine_error: Exception | None = None
    try:
        with _quiet_engine(), _single_thread():
            run_simulation(
                server_app=make_server_app(session),
                client_app=make_client_app(_portable_spec(experiment), dict(policies)),
                num_supernodes=len(experiment.sites),
                backend_config=_backend_config(num_cpus),  # type: ignore[arg-type]
            )
    except Exception as exc:
        engine_error = exc
        session.stop.set(f"Flower's simulation engine failed: {type(exc).__name__}: {exc}")
    finally:
        session.stop.set("Flower's simulation engine stopped before the run finished")
        session.finished.wait(_SERVER_STOP_SECONDS)
        _stop_ray(started_ray)
    if session.result is None and session.error is None:
        raise TrainingError(session.stop.reason) from engine_error
    return session.outcome()
