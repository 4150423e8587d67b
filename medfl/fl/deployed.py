"""The Flower App a deployment runs (public: ``[tool.flwr.app.components]`` names it).

SuperLink starts ``server_app`` for each submitted run; every SuperNode starts
``client_app``. Both read the run's spec from the run config (``medfl-experiment``,
JSON), parsed once here at the boundary. The ServerApp writes the run directory
(``medfl-out``) on the server's machine: result.json after every round, the model,
plots and the report, exactly as the simulation does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from medfl.deploy import allowed_after, lost_sites, stop_requested
from medfl.errors import TrainingError
from medfl.fl._client_app import RUN_CONFIG_KEY, make_client_app
from medfl.fl._quick import quick_object_pulls
from medfl.fl._server_app import ServerSession
from medfl.fl._transport import GridTransport, Timeouts
from medfl.results import RoundRecord, RunStore, write_outputs
from medfl.results._store import SPEC_FILE
from medfl.spec import Experiment, parse_experiment
from medfl.spec._tuning import Tuning

# Each pull is an HTTP call to the SuperLink: on a small machine 100 a second take
# the CPU the sites need to train.
_GRID_POLL_SECONDS = 0.05
_WORD_POLL_S = 0.05  # a trial's run, waiting on the search's word after a rung


@dataclass(frozen=True)
class DeployedRun:
    """A submitted run's config: the run config's keys, typed once."""

    experiment: Experiment
    out: Path
    resume: bool
    timeouts: Timeouts
    write_outputs: bool  # model, plots, report; off when the submitter writes them
    # or "glm", "stats": a federated GLM or statistics instead; or "trial": a search's
    # trial, only its validation rounds (no test split, model, baselines or report)
    job: str = "train"

    @classmethod
    def from_context(cls, context: Context) -> DeployedRun:
        config = context.run_config
        text = str(config[RUN_CONFIG_KEY])
        if not text:
            raise ValueError(f"the run config carries no experiment ({RUN_CONFIG_KEY} is empty)")
        return cls(
            experiment=parse_experiment(json.loads(text), "run config"),
            out=Path(str(config["medfl-out"]) or "runs/deployed"),
            resume=bool(config.get("medfl-resume", False)),
            write_outputs=bool(config.get("medfl-write-outputs", True)),
            job=str(config.get("medfl-job", "train")),
            timeouts=Timeouts(
                startup=float(config.get("medfl-startup-timeout", 180.0)),  # type: ignore[arg-type]
                reply=float(config.get("medfl-reply-timeout", 600.0)),  # type: ignore[arg-type]
                poll=_GRID_POLL_SECONDS,
            ),
        )


server_app = ServerApp()
client_app = make_client_app()


@server_app.main()
def _main(grid: Grid, context: Context) -> None:
    from medfl.runners._drive import DriveOptions

    quick_object_pulls()
    run = DeployedRun.from_context(context)
    store = RunStore(run.out)
    if not (run.out / SPEC_FILE).exists():
        store.create(run.experiment)
    if run.job in ("glm", "stats"):
        _run_job(grid, run, store)
        return
    trial = run.job == "trial"
    session = ServerSession(
        run.experiment,
        store,
        DriveOptions(
            engine="local",
            resume=run.resume,
            baselines=False,
            no_baselines_because="they train on every site's data in one process, "
            "which only a simulation has",
            validation_only=trial,
            progress=_stop_when_asked(
                run.out, run.experiment.tuning, run.experiment.training.rounds
            )
            if trial
            else None,
        ),
        run.timeouts,
        lost=lambda: lost_sites(run.out),
    )
    session.run(grid)
    if run.write_outputs and not trial:
        write_outputs(store, run.experiment)
    session.outcome()  # a failed run ends failed in Flower too (result.json says why)


def _stop_when_asked(
    out: Path, tuning: Tuning | None, rounds: int
) -> Callable[[RoundRecord], None]:
    """A search's trial ends after a round once the search asked it to (ASHA stopped
    it): between rounds no site is left waiting on a message of this run. After a round
    ASHA decides on (a rung), the run waits for the search's word — stopped, or go on —
    so a stopped trial does not train rounds the search has already given up on."""
    rungs = (tuning.report_rounds(rounds) - {rounds}) if tuning is not None else set()
    patience = tuning.trial_timeout_seconds if tuning is not None else 0.0

    def check(record: RoundRecord) -> None:
        if record.round in rungs:
            _await_word(out, record.round, patience)
        reason = stop_requested(out)
        if reason is not None:
            raise TrainingError(f"stopped after round {record.round}: {reason}")

    return check


def _await_word(out: Path, round_: int, patience: float) -> None:
    deadline = time.monotonic() + patience
    while stop_requested(out) is None and allowed_after(out) < round_:
        if time.monotonic() > deadline:
            raise TrainingError(
                f"stopped after round {round_}: the search did not read its score within "
                f"tuning.trialTimeoutSeconds ({patience:g} s)"
            )
        time.sleep(_WORD_POLL_S)


def _run_job(grid: Grid, run: DeployedRun, store: RunStore) -> None:
    """A GLM or the statistics over the sites' Flower nodes: glm.json or stats.json,
    and result.json saying how it ended (the submitter follows that)."""
    from medfl.errors import MedflError
    from medfl.results import RunResult
    from medfl.stats import glm_dict
    from medfl.stats._federated import GLM_FILE, STATS_FILE, describe_federation, fit_glm

    result = RunResult(name=run.experiment.name, engine="local")
    store.save_result(result)
    transport = GridTransport(grid, run.experiment, run.timeouts, lost=lambda: lost_sites(run.out))
    try:
        if run.job == "glm":
            output, name = glm_dict(fit_glm(run.experiment, transport)), GLM_FILE
        else:
            output, name = describe_federation(run.experiment, transport).to_dict(), STATS_FILE
        (run.out / name).write_text(json.dumps(output, indent=2))
        result.status = "succeeded"
    except MedflError as exc:
        result.status, result.error, result.error_kind = "failed", str(exc), type(exc).__name__
        raise
    finally:
        if result.status == "running":
            result.status, result.error, result.error_kind = "failed", "interrupted", "internal"
        store.save_result(result)
