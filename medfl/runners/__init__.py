"""Where an experiment runs (public). The engine is chosen by the type of a small
config object: ``FastEngine()`` (in-process, the default), ``FlowerEngine()``
(Flower's simulation engine on Ray), ``BatchedEngine()`` (many virtual sites trained
as stacks, CPU or CUDA) or ``LocalBackend()`` (Flower's deployment engine: a
SuperLink and one SuperNode process per site on this machine, TLS on). All run the
same federation code; the batched engine its own round loop over the same maths."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from medfl.errors import MedflError, UsageError
from medfl.results import RunResult, RunStore, new_run_dir, write_outputs
from medfl.results._store import CHECKPOINT_FILE, RESULT_FILE
from medfl.runners._drive import DriveOptions, Progress, drive, failed, site_resumes
from medfl.runners._local import LocalBackend
from medfl.spec import Experiment
from medfl.spec._load import resolve_paths
from medfl.spec._policy import PolicyFiles, load_policies

__all__ = [
    "BatchedEngine",
    "FastEngine",
    "FlowerEngine",
    "LocalBackend",
    "RunOutcome",
    "check_engine",
    "default_engine",
    "run",
]


@dataclass(frozen=True)
class FastEngine:
    """Every site in this process; no Ray start-up."""

    site_policies: PolicyFiles = ()  # (site, its policy file); default limits for the rest
    name: str = "fast"


@dataclass(frozen=True)
class FlowerEngine:
    """Flower's simulation engine: a ServerApp and one ClientApp per site on Ray."""

    num_cpus: int = 2
    startup_timeout_s: float = 180.0  # Ray and the apps start, sites read their data
    reply_timeout_s: float = 600.0  # any later request, a round's training included
    site_policies: PolicyFiles = ()  # (site, its policy file); default limits for the rest
    name: str = "flower"


@dataclass(frozen=True)
class BatchedEngine:
    """The sampled sites of each round trained together as one stacked computation:
    the spec's virtual sites (simulation.virtualSites) or the experiment's own sites."""

    device: Literal["cpu", "cuda", "auto"] | None = None  # None: simulation.device
    site_policies: PolicyFiles = ()  # (site, its policy file) of the source sites
    name: str = "batched"


Engine = FastEngine | FlowerEngine | LocalBackend | BatchedEngine


def default_engine(experiment: Experiment) -> Engine:
    """A spec with virtual sites means the batched engine; one with secure aggregation
    Flower's (SecAgg+ needs its messages); any other the fast one."""
    simulation = experiment.simulation
    virtual = simulation is not None and simulation.virtual_sites is not None
    if virtual:
        return BatchedEngine()
    return FlowerEngine() if experiment.privacy.secure else FastEngine()


def check_engine(experiment: Experiment, engine: Engine) -> None:
    """Refuse (UsageError) an engine that cannot run this spec, naming the field."""
    if experiment.privacy.secure and isinstance(engine, FastEngine | BatchedEngine):
        raise UsageError(
            f"privacy.secureAggregation: the {engine.name!r} engine passes updates in "
            "memory, and SecAgg+ needs Flower's messages: run with --engine flower, "
            "--backend local or --backend kubernetes"
        )
    simulation = experiment.simulation
    if isinstance(engine, BatchedEngine) or simulation is None:
        return
    if simulation.virtual_sites is not None:
        raise UsageError(
            f"simulation.virtualSites: only the batched engine simulates virtual sites, "
            f"not the {engine.name!r} engine; run with --engine batched"
        )


@dataclass
class RunOutcome:
    result: RunResult
    run_dir: Path


@contextmanager
def _single_thread() -> Iterator[None]:
    """Tiny models train faster on one thread, and one thread is bit-reproducible."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_sites_here(
    experiment: Experiment, store: RunStore, engine: Engine, options: DriveOptions
) -> None:
    """In a simulation every site's data is on this machine: a bad site fails in a
    second here rather than after Ray has started (the sites check again there)."""
    from medfl.training import Federation, InProcessTransport

    transport = InProcessTransport(experiment, policies=options.policies)
    before = store.load_result() if options.resume else None
    try:
        saved = store.load_checkpoint() if options.resume else None
        Federation(experiment, transport).setup(resume=site_resumes(before, saved, experiment))
    except MedflError as exc:
        # a refused resume keeps the run's rounds and ε spent in result.json
        result = before or RunResult(name=experiment.name, engine=engine.name)
        failed(result, exc)
        store.save_result(result)
        raise


def _execute(
    experiment: Experiment, engine: Engine, store: RunStore, options: DriveOptions
) -> RunResult:
    if isinstance(engine, BatchedEngine):
        from medfl.runners._batched import run_batched

        with _single_thread():
            return run_batched(experiment, engine.device, store, options)
    if isinstance(engine, LocalBackend):
        from medfl.runners._local import run_local

        _check_sites_here(experiment, store, engine, options)
        return run_local(experiment, engine, store, options.resume, options.progress)
    if isinstance(engine, FlowerEngine):
        from medfl.fl import Timeouts, run_flower_simulation

        _check_sites_here(experiment, store, engine, options)

        timeouts = Timeouts(engine.startup_timeout_s, engine.reply_timeout_s)
        return run_flower_simulation(
            experiment, store, options, engine.num_cpus, timeouts, engine.site_policies
        )
    from medfl.training import InProcessTransport

    transport = InProcessTransport(experiment, policies=options.policies)
    with _single_thread():
        return drive(experiment, transport, store, options)


def run(
    experiment: Experiment | None = None,
    *,
    engine: Engine | None = None,
    out: Path | str | None = None,
    resume: Path | str | None = None,
    progress: Progress | None = None,
    baselines: bool = True,
    report: bool = True,
) -> RunOutcome:
    """Run an experiment (or resume the run in ``resume``) and write its run directory.

    ``report=False`` skips the PNG curves and report.md (result.json, the model and
    checkpoints are always written): for many short runs, e.g. a search's trials.

    Raises a MedflError subclass on bad input or a failed run; the run directory
    then still holds result.json with status ``failed``, the reason, and every
    finished round.
    """
    if resume is not None:
        store = RunStore(Path(resume))
        experiment = store.experiment()
        engine = engine or default_engine(experiment)
    elif experiment is None:
        raise ValueError("give an experiment or a run directory to resume")
    else:
        engine = engine or default_engine(experiment)
        check_engine(experiment, engine)
        # Relative data paths mean the working directory now; the run directory's copy of
        # the spec (read back on resume, from anywhere) must still name the same files.
        experiment = resolve_paths(experiment, Path.cwd())
        store = _new_store(experiment, out)
    options = DriveOptions(
        engine=engine.name,
        resume=resume is not None,
        baselines=baselines,
        progress=progress,
        policies=load_policies(engine.site_policies),
    )
    try:
        result = _execute(experiment, engine, store, options)
    except (MedflError, KeyboardInterrupt) as exc:
        exc.run_dir = store.path  # type: ignore[union-attr]  # the caller points the user there
        raise
    finally:  # also when interrupted or failed: the report says what happened
        if report:
            write_outputs(store, experiment)
    return RunOutcome(result, store.path)


def _failed_before_round_1(store: RunStore) -> bool:
    """Such a run has nothing to resume (a spec or data error): its folder is reused."""
    if (store.path / CHECKPOINT_FILE).exists():
        return False
    try:
        result = store.load_result()
    except (MedflError, ValueError):
        return False
    return result.status == "failed" and not result.rounds


def _new_store(experiment: Experiment, out: Path | str | None) -> RunStore:
    """A fresh run directory; never one that already holds a run (that is --resume's)."""
    store = RunStore(Path(out) if out else new_run_dir(experiment.name))
    if (store.path / RESULT_FILE).exists() and not _failed_before_round_1(store):
        raise UsageError(
            f"{store.path} already holds a run: continue it with --resume {store.path}, "
            "or choose another --out folder"
        )
    try:
        store.create(experiment)
    except OSError as exc:
        raise UsageError(f"cannot create the run directory {store.path}: {exc.strerror}") from None
    return store
