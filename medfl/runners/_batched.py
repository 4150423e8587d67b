"""The batched engine's run: the experiment's sites read and preprocess their data as in
the fast engine, their training rows become the pool of virtual sites, each round
trains the sampled ones as stacks, and the source sites' validation and test splits
score the global model. The run folder is the fast engine's, plus two CSV files."""

from __future__ import annotations

import resource
import time

import numpy as np

from medfl.errors import DisclosureRefusal, UsageError
from medfl.results._model import RoundRecord, RunResult, SimulationReport, SiteRound
from medfl.results._store import RunStore
from medfl.runners._baselines import compute_baselines
from medfl.runners._drive import DriveOptions, _record_setup, _save_model, failed
from medfl.simulation import BatchedRounds, SiteFigures, build_pool, check_supported, partition_csv
from medfl.simulation._pool import Pool
from medfl.spec import Experiment, Simulation
from medfl.training import Federation, InProcessTransport, Params, Setup, weighted

PARTITION_FILE = "partition.csv"
SITES_FILE = "virtual_sites.csv"
VIRTUAL_NOTE = (
    "virtual sites: rounds[].sites are the source sites' validation splits, which score "
    "the global model (they do not train); each virtual site's training per round is in "
    f"{SITES_FILE}, the partition in {PARTITION_FILE}"
)


def run_batched(
    experiment: Experiment, device: str | None, store: RunStore, options: DriveOptions
) -> RunResult:
    import torch

    from medfl.simulation import choose_device

    if options.resume:
        raise UsageError("the batched engine does not resume runs yet; start a new run")
    check_supported(experiment)
    if experiment.simulation is None:  # the batched engine over the experiment's own sites
        experiment = experiment.model_copy(update={"simulation": Simulation()})
    assert experiment.simulation is not None
    where = choose_device(device or experiment.simulation.device)
    result = RunResult(name=experiment.name, engine=options.engine)
    began = time.perf_counter()
    transport = InProcessTransport(experiment, policies=options.policies)
    fed = Federation(experiment, transport)
    rounds: BatchedRounds | None = None
    lines = ["round,site,examples,steps,trainLoss,status,epsilon"]
    try:
        setup = fed.setup()
        _record_setup(result, setup, experiment)
        pool = build_pool(experiment, {n: transport.workers[n] for n in setup.active}, where)
        sim = _report(experiment, pool, where)
        result.simulation = sim
        _private_setup(result, experiment, options)
        if sim.virtual:
            result.notes.append(VIRTUAL_NOTE)
            (store.path / PARTITION_FILE).write_text(partition_csv(pool))
            sim.files = {"partition": PARTITION_FILE, "sites": SITES_FILE}
        result.timings["setupSeconds"] = time.perf_counter() - began
        rounds, params = BatchedRounds(experiment, pool), setup.start.initial()
        trained = time.perf_counter()
        for r in range(1, experiment.training.rounds + 1):
            params, virtual, figures = rounds.round(r, params)
            scoring = time.perf_counter()
            record = _score(r, params, transport, setup, pool, figures, sim.virtual)
            record.seconds = virtual.seconds + time.perf_counter() - scoring  # as the fast engine
            _spend(result, record, figures, pool)
            result.rounds.append(record)
            sim.rounds.append(virtual)
            lines += _csv_lines(r, figures, pool)
            store.save_result(result)
            if options.progress:
                options.progress(record)
        result.timings["trainingSeconds"] = time.perf_counter() - trained
        result.final = fed.evaluate(params, setup.active)
        _save_model(store, setup, params, experiment, result.notes)
        if options.baselines:
            result.baselines = compute_baselines(experiment, setup, result.notes, options.policies)
        result.status = "succeeded"
    except BaseException as exc:
        failed(result, exc)
        raise
    finally:
        result.timings["totalSeconds"] = time.perf_counter() - began
        if result.simulation is not None:
            _memory(result.simulation, where.type == "cuda", torch)
            if rounds is not None and rounds.privacy is not None:
                result.simulation.privacy = rounds.privacy.summary()
            if result.simulation.virtual:
                (store.path / SITES_FILE).write_text("\n".join(lines) + "\n")
        store.save_result(result)
    return result


def _private_setup(result: RunResult, experiment: Experiment, options: DriveOptions) -> None:
    if not experiment.privacy.local:
        return
    if options.policies:
        raise UsageError(
            "--site-policy: the batched engine does not enforce the sites' privacy budgets; "
            "run a privacy.mode 'local' experiment with site policies on the fast engine"
        )
    if experiment.simulation and experiment.simulation.virtual_sites and result.privacy:
        result.privacy.sites = {}  # the source sites do not train; every virtual site does
        result.notes.append(
            "privacy: DP-SGD at every virtual site, each with its own plan and accountant "
            f"(ε after each round in {SITES_FILE}, the spread in simulation.privacy); the "
            "plans assume a site takes part in every round (no amplification by sampling "
            "sites is counted)"
        )


def _spend(result: RunResult, record: RoundRecord, figures: SiteFigures, pool: Pool) -> None:
    """The experiment's own sites under DP-SGD: their ε and steps in result.privacy."""
    if result.privacy is None or not result.privacy.sites:
        return
    for k, i in enumerate(figures.sites.tolist()):
        name = pool.partition.site_name(i)
        report, site = result.privacy.sites.get(name), record.sites.get(name)
        if report is None or site is None or np.isnan(figures.epsilon[k]):
            continue
        site.epsilon = report.epsilon = float(figures.epsilon[k])
        report.steps += int(figures.steps[k])
        report.rounds_contributed += 1


def _report(experiment: Experiment, pool: Pool, device: object) -> SimulationReport:
    assert experiment.simulation is not None
    sites = pool.partition.count
    return SimulationReport(
        device=str(device),
        sites=sites,
        sites_per_round=experiment.simulation.per_round(sites),
        virtual=pool.report is not None,
        partition=pool.report,
        memory={"poolBytes": pool.nbytes, "partitionBytes": pool.partition.nbytes},
    )


def _memory(sim: SimulationReport, cuda: bool, torch: object) -> None:
    """Peak figures: this process's resident set (ru_maxrss, KiB on Linux), the largest
    stack, and on CUDA torch's own peak allocation."""
    sim.memory["peakStackBytes"] = max((r.stack_bytes for r in sim.rounds), default=0)
    sim.memory["peakRssBytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if cuda:
        sim.memory["cudaPeakBytes"] = int(torch.cuda.max_memory_allocated())  # type: ignore[attr-defined]


def _score(
    r: int,
    params: Params,
    transport: InProcessTransport,
    setup: Setup,
    pool: Pool,
    figures: SiteFigures,
    virtual: bool,
) -> RoundRecord:
    """The global model on the source sites' validation splits (the fast engine's
    figures); without virtual sites each site's own training figures beside them."""
    sites: dict[str, SiteRound] = {}
    if not virtual:
        for k, i in enumerate(figures.sites.tolist()):
            ok = bool(figures.ok[k])
            sites[pool.partition.site_name(i)] = SiteRound(
                status="ok" if ok else "rejected",
                num_examples=int(figures.examples[k]),
                train_loss=float(figures.loss[k]) if ok else None,
                steps=int(figures.steps[k]),
                reason=None if ok else "local loss or update is not finite",
            )
    scored = []
    for name, answer in transport.evaluate(params, "validation", setup.active).items():
        site = sites.setdefault(name, SiteRound(status="ok"))
        if isinstance(answer, DisclosureRefusal):
            site.withheld = str(answer)
        elif isinstance(answer, Exception):
            site.reason = site.reason or f"evaluation failed: {answer}"
        else:
            site.metrics, site.validation_examples = answer
            scored.append(answer)
    ordered = {n: sites[n] for n in setup.active if n in sites}
    return RoundRecord(round=r, metrics=weighted(scored), sites=ordered)


def _csv_lines(r: int, figures: SiteFigures, pool: Pool) -> list[str]:
    names = pool.partition.site_name
    status = np.where(figures.ok, "ok", "rejected")
    epsilon = ["" if np.isnan(e) else f"{e:.6g}" for e in figures.epsilon.tolist()]
    return [
        f"{r},{names(i)},{n},{s},{loss:.6g},{st},{eps}"
        for i, n, s, loss, st, eps in zip(
            figures.sites.tolist(),
            figures.examples.tolist(),
            figures.steps.tolist(),
            figures.loss.tolist(),
            status.tolist(),
            epsilon,
            strict=True,
        )
    ]
