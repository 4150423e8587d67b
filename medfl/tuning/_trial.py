"""One trial: the experiment with the trial's parameters, trained by the fast engine's
federation in this process (a Ray actor), scored on the sites' validation splits after
every round. A trial never asks for a test split; it counts that it did not.

Flower's own simulation engine is never started inside a trial: Ray inside Ray hangs.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medfl.data import SiteTable, prepare_site
from medfl.errors import MedflError
from medfl.spec import Experiment, parse_experiment
from medfl.spec._policy import SitePolicy, load_policies
from medfl.spec._tuning import Tuning
from medfl.training import Checkpoint, Federation, InProcessTransport, SiteWorker
from medfl.training._site import SplitName
from medfl.tuning._space import decoded, with_params

Report = Callable[[dict[str, Any]], None]


class TrialFailed(MedflError):
    """A trial that cannot give a score (diverged, undefined metric, too slow)."""


class CountingTransport(InProcessTransport):
    """The in-process transport, counting how often each split is evaluated."""

    def __init__(self, experiment: Experiment, workers: dict[str, SiteWorker]) -> None:
        super().__init__(experiment, workers)
        self.reads: dict[str, int] = {"validation": 0, "test": 0}

    def evaluate(self, params, split: SplitName, sites):  # type: ignore[no-untyped-def]
        self.reads[split] = self.reads.get(split, 0) + 1
        return super().evaluate(params, split, sites)


# Per process (a reused Ray actor runs many trials): the base spec, parsed once, and each
# site's prepared rows, read once (a trial's parameters never change them).
_SPECS: dict[str, Experiment] = {}
_TABLES: dict[str, SiteTable] = {}


def _base(spec_text: str) -> Experiment:
    digest = hashlib.sha256(spec_text.encode()).hexdigest()
    if digest not in _SPECS:
        _SPECS.clear()
        _SPECS[digest] = parse_experiment(json.loads(spec_text), "tuning")
    return _SPECS[digest]


def _workers(experiment: Experiment, policies: dict[str, SitePolicy]) -> dict[str, SiteWorker]:
    schema, column = experiment.data_schema, experiment.evaluation.split.column
    workers = {}
    for site in experiment.sites:
        key = json.dumps([site.model_dump(mode="json"), schema.model_dump(mode="json"), column])
        if key not in _TABLES:
            _TABLES[key] = prepare_site(site, schema, column)
        policy = policies.get(site.name)
        workers[site.name] = SiteWorker(experiment, site.name, table=_TABLES[key], policy=policy)
    return workers


def score_rounds(
    experiment: Experiment,
    tuning: Tuning,
    report: Report,
    policies: dict[str, SitePolicy] | None = None,
) -> CountingTransport:
    """Train ``experiment``; after each round report its validation score. Raises
    TrialFailed when the score is undefined or the trial is past its time."""
    transport = CountingTransport(experiment, _workers(experiment, policies or {}))
    federation = Federation(experiment, transport)
    setup = federation.setup()
    began = time.monotonic()
    reported = tuning.report_rounds(experiment.training.rounds)

    def on_round(record, params, optimizer) -> None:  # type: ignore[no-untyped-def]
        value = record.metrics.get(tuning.metric)
        if value is None or not math.isfinite(value):
            raise TrialFailed(f"round {record.round}: the validation {tuning.metric} is undefined")
        if record.round in reported:
            reads = transport.reads["test"]
            report({tuning.metric: value, "round": record.round, "testReads": reads})
        seconds = time.monotonic() - began
        if seconds > tuning.trial_timeout_seconds and record.round < experiment.training.rounds:
            raise TrialFailed(
                f"stopped after round {record.round}: {seconds:.0f} s is past "
                f"tuning.trialTimeoutSeconds ({tuning.trial_timeout_seconds:g})"
            )

    federation.run_rounds(setup, Checkpoint(setup.start.initial(), {}), on_round)
    return transport


def trial(config: dict[str, Any], spec_text: str, policy_files: list[tuple[str, str]]) -> None:
    """Ray Tune's trainable: one trial's parameters, scored round by round."""
    import torch
    from ray import tune

    torch.set_num_threads(1)  # tiny models: one thread is faster, and reproducible
    base = _base(spec_text)
    assert base.tuning is not None
    experiment = with_params(base, decoded(base.tuning, config))
    try:
        policies = load_policies(tuple((s, Path(p)) for s, p in policy_files))
        score_rounds(experiment, base.tuning, tune.report, policies)
    except MedflError as exc:  # a TrainingError (every update rejected) included
        raise TrialFailed(str(exc)) from None
