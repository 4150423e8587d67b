"""Secure aggregation's cost: the heart-disease example on Flower's simulation engine
with SecAgg+ against the same run without it.

Measured in this one run, on Flower's simulation engine (Ray, 2 CPUs) both times:

  (a) the example as is (plain updates), the baseline;
  (b) the example with ``privacy.secureAggregation`` (SecAgg+: four protocol stages per
      round in place of one training request).

Reported: the median seconds per round of each and (b) / (a); how far (b)'s final weights
are from (a)'s (stochastic quantisation, step 1.9e-6) and whether the test accuracy is
the same. Targets: weights within 1e-5 and the same accuracy; the time ratio is stated,
not a target (SecAgg+'s cost grows with the sites, its key agreement with their square).

Run: .venv/bin/python bench/secure.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np

from medfl import FlowerEngine, RunOutcome, load_experiment, run
from medfl.spec import Experiment, SecureAggregation

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "heart-disease" / "experiment.yaml"


def _variant(rounds: int, secure: bool) -> Experiment:
    experiment = load_experiment(EXAMPLE)
    training = experiment.training.model_copy(update={"rounds": rounds})
    privacy = experiment.privacy.model_copy(
        update={"secure_aggregation": SecureAggregation(enabled=secure)}
    )
    return experiment.model_copy(update={"training": training, "privacy": privacy})


def _run(experiment: Experiment, out: Path) -> RunOutcome:
    return run(experiment, engine=FlowerEngine(num_cpus=2), out=out, baselines=False)


def _per_round(outcome: RunOutcome) -> float:
    return statistics.median(r.seconds for r in outcome.result.rounds)


def _weights(outcome: RunOutcome) -> list[np.ndarray]:
    with np.load(outcome.run_dir / "model.npz") as data:
        return [data[f"p{i}"] for i in range(len(data.files))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    with tempfile.TemporaryDirectory() as tmp:
        plain = _run(_variant(args.rounds, False), Path(tmp) / "plain")
        secure = _run(_variant(args.rounds, True), Path(tmp) / "secure")
        pairs = zip(_weights(plain), _weights(secure), strict=True)
        gap = max(float(np.max(np.abs(p - q))) for p, q in pairs)
    a, b = _per_round(plain), _per_round(secure)
    assert plain.result.final is not None and secure.result.final is not None
    acc = (plain.result.final.metrics["accuracy"], secure.result.final.metrics["accuracy"])
    print(f"{'':36}{'s/round':>9}{'ratio':>8}")
    print(f"{'(a) plain updates':36}{a:9.3f}{1:8.2f}")
    print(f"{'(b) SecAgg+ (4 sites, 4 stages)':36}{b:9.3f}{b / a:8.2f}")
    print(f"final weights: at most {gap:.2e} apart; test accuracy (a) {acc[0]} (b) {acc[1]}")
    checks = [
        (gap <= 1e-5, f"SecAgg+'s model within 1e-5 of the plain one ({gap:.2e})"),
        (acc[0] == acc[1], "the same test accuracy"),
    ]
    for ok, what in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {what}")
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
