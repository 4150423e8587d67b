"""Comparison baselines, computed in this process (simulation only): each site alone,
and all training rows pooled. Both use the federation's preprocessing and the same
local training budget per round, so the only difference is who trains with whom."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medfl.data import Preprocessor
from medfl.errors import TrainingError
from medfl.results._model import Evaluation, SiteEvaluation
from medfl.spec import Experiment, FedAvg
from medfl.training import (
    Checkpoint,
    Federation,
    InProcessTransport,
    Params,
    ServerOptimizer,
    Setup,
    SiteWorker,
)
from medfl.training._metrics import unweighted, weighted
from medfl.training._site import SplitName

SPLITS: tuple[SplitName, ...] = ("train", "validation", "test")

POOLED = "__pooled__"


def _train_alone(fed: Federation, name: str, preprocessor: Preprocessor) -> Params:
    """The experiment's rounds with one site taking part (a fresh server each time)."""
    fed.optimizer = ServerOptimizer(fed.experiment.strategy)
    setup = Setup([name], {}, {}, preprocessor)
    return fed.run_rounds(setup, Checkpoint(fed.initial_params(preprocessor), {}), min_sites=1)


def _pooled_worker(experiment: Experiment, workers: dict[str, SiteWorker]) -> SiteWorker:
    splits: dict[SplitName, tuple[pd.DataFrame, np.ndarray]] = {}
    for part in SPLITS:
        tables = [w.split_tables()[part] for w in workers.values()]
        frame = pd.concat([f for f, _ in tables], ignore_index=True)
        splits[part] = (frame, np.concatenate([y for _, y in tables]))
    return SiteWorker.from_splits(experiment, POOLED, splits)


def compute_baselines(
    experiment: Experiment, active: list[str], preprocessor: Preprocessor, notes: list[str]
) -> dict[str, Evaluation]:
    """Each requested baseline; one that cannot train is left out and said in ``notes``."""
    kinds = experiment.evaluation.baselines
    if not kinds:
        return {}
    plain = experiment.model_copy(update={"strategy": FedAvg()})
    workers = {n: SiteWorker(plain, n) for n in active}
    for worker in workers.values():
        worker.hello()
        worker.configure(preprocessor)
    fed = Federation(plain, InProcessTransport(plain, workers))
    out: dict[str, Evaluation] = {}
    if "local" in kinds:
        sites = {}
        for name in active:
            # A site whose updates the federation rejects cannot train alone either: its
            # local baseline is undefined and left out, like an undefined metric.
            try:
                params = _train_alone(fed, name, preprocessor)
            except TrainingError as exc:
                notes.append(f"local baseline of site {name!r} left out: {exc}")
                continue
            metrics, n = workers[name].evaluate(params, "test")
            sites[name] = SiteEvaluation(metrics=metrics, num_examples=n)
        out["local"] = _evaluation(sites)
    if "pooled" in kinds:
        pooled = _pooled_worker(plain, workers)
        pooled.configure(preprocessor)
        workers[POOLED] = pooled
        try:
            out["pooled"] = fed.evaluate(_train_alone(fed, POOLED, preprocessor), active)
        except TrainingError as exc:
            notes.append(f"pooled baseline left out: {exc}")
    return out


def _evaluation(sites: dict[str, SiteEvaluation]) -> Evaluation:
    pairs = [(s.metrics, s.num_examples) for s in sites.values()]
    return Evaluation(
        metrics=weighted(pairs),
        mean_over_sites=unweighted([s.metrics for s in sites.values()]),
        sites=sites,
    )
