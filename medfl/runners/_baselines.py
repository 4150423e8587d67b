"""Comparison baselines, computed in this process (simulation only): each site alone,
and all training rows pooled. Both use the federation's preprocessing and the same
local training budget per round, so the only difference is who trains with whom."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medfl.errors import DisclosureRefusal, TrainingError
from medfl.results._model import Evaluation, SiteEvaluation
from medfl.spec import Experiment, FedAvg, SecureAggregation
from medfl.spec._models import Privacy
from medfl.spec._policy import PrivacyPolicy, SitePolicy
from medfl.training import (
    Checkpoint,
    Federation,
    InProcessTransport,
    Params,
    ServerOptimizer,
    Setup,
    SiteWorker,
)
from medfl.training._federation import over_sites
from medfl.training._site import SplitName
from medfl.training._start import StartingModel, starting_model

SPLITS: tuple[SplitName, ...] = ("train", "validation", "test")

POOLED = "__pooled__"


def _train_alone(fed: Federation, name: str, setup: Setup) -> Params:
    """The experiment's rounds with one site taking part (a fresh server each time)."""
    fed.optimizer = ServerOptimizer(fed.experiment.strategy)
    alone = Setup([name], {}, {}, setup.preprocessor, setup.start)
    return fed.run_rounds(alone, Checkpoint(setup.start.initial(), {}), min_sites=1)


def _pooled_worker(experiment: Experiment, workers: dict[str, SiteWorker]) -> SiteWorker:
    splits: dict[SplitName, tuple[pd.DataFrame, np.ndarray]] = {}
    for part in SPLITS:
        tables = [w.split_tables()[part] for w in workers.values()]
        frame = pd.concat([f for f, _ in tables], ignore_index=True)
        splits[part] = (frame, np.concatenate([y for _, y in tables]))
    return SiteWorker.from_splits(experiment, POOLED, splits)


def _workers(
    experiment: Experiment, setup: Setup, start: StartingModel, policies: dict[str, SitePolicy]
) -> dict[str, SiteWorker]:
    workers = {n: SiteWorker(experiment, n, policy=policies.get(n)) for n in setup.active}
    for worker in workers.values():
        worker.hello()
        worker.configure(setup.preprocessor, start.base)
    return workers


def compute_baselines(
    experiment: Experiment,
    setup: Setup,
    notes: list[str],
    policies: dict[str, SitePolicy] | None = None,
) -> dict[str, Evaluation]:
    """Each requested baseline; one that cannot train is left out and said in ``notes``.
    All start from the run's starting model and input encoding but ``scratch``, which
    starts from the seed's random weights with nothing frozen."""
    kinds = experiment.evaluation.baselines
    if not kinds:
        return {}
    # Baselines train with the experiment's DP settings, in this process: they spend
    # nothing from the sites' ledgers (simulation only), so the privacy part is left out.
    policies = {
        n: p.model_copy(update={"privacy": PrivacyPolicy()}) for n, p in (policies or {}).items()
    }
    # Central DP is the server's mechanism over several sites: a site alone, or the
    # pooled rows, would get noise for one "site"; the baselines train without it.
    experiment = _in_process(experiment)
    keep = {} if not experiment.privacy.central else {"privacy": Privacy()}
    plain = experiment.model_copy(update={"strategy": FedAvg(), **keep})
    workers = _workers(plain, setup, setup.start, policies)
    fed = Federation(plain, InProcessTransport(plain, workers))
    out: dict[str, Evaluation] = {}
    if "pretrained" in kinds:
        out["pretrained"] = fed.evaluate(setup.start.initial(), setup.active)
    if "local" in kinds:
        out["local"] = _local(fed, workers, setup, notes)
    if "pooled" in kinds:
        pooled = _pooled_worker(plain, workers)
        pooled.configure(setup.preprocessor, setup.start.base)
        workers[POOLED] = pooled
        try:
            out["pooled"] = fed.evaluate(_train_alone(fed, POOLED, setup), setup.active)
        except TrainingError as exc:
            notes.append(f"pooled baseline left out: {exc}")
    if "scratch" in kinds:
        try:
            out["scratch"] = _scratch(experiment, setup, policies)
        except TrainingError as exc:
            notes.append(f"scratch baseline left out: {exc}")
    return out


def _local(
    fed: Federation, workers: dict[str, SiteWorker], setup: Setup, notes: list[str]
) -> Evaluation:
    sites, withheld = {}, {}
    for name in setup.active:
        # A site whose updates the federation rejects cannot train alone either: its
        # local baseline is undefined and left out, like an undefined metric.
        try:
            params = _train_alone(fed, name, setup)
        except TrainingError as exc:
            notes.append(f"local baseline of site {name!r} left out: {exc}")
            continue
        try:
            metrics, n = workers[name].evaluate(params, "test")
        except DisclosureRefusal as exc:
            withheld[name] = str(exc)
            continue
        sites[name] = SiteEvaluation(metrics=metrics, num_examples=n)
    return over_sites(sites, withheld)


def _in_process(experiment: Experiment) -> Experiment:
    """Secure aggregation protects updates on their way to a server; baselines train in
    this process, where there is none: their updates are summed as they are."""
    off = experiment.privacy.model_copy(update={"secure_aggregation": SecureAggregation()})
    return experiment.model_copy(update={"privacy": off})


def _scratch(experiment: Experiment, setup: Setup, policies: dict[str, SitePolicy]) -> Evaluation:
    """The same federation (strategy, rounds, sites, encoding) from random weights."""
    model = experiment.model.model_copy(update={"pretrained": None, "freeze": []})
    fresh = experiment.model_copy(update={"model": model})
    start = starting_model(fresh, setup.preprocessor, None)
    fed = Federation(fresh, InProcessTransport(fresh, _workers(fresh, setup, start, policies)))
    scratch = Setup(setup.active, {}, {}, setup.preprocessor, start)
    params = fed.run_rounds(scratch, Checkpoint(start.initial(), {}))
    return fed.evaluate(params, setup.active)
