"""Speed of Flower's deployment engine (``--backend local``) against the fast engine.

The workload is the heart-disease example (4 hospitals, logistic regression, FedAvg),
baselines off, ``--rounds`` rounds (default 5). Measured in this one run:

  (a) medfl's fast engine (one process), the baseline;
  (b) ``--backend local``: a real SuperLink and a SuperNode per site on loopback, TLS
      and site authentication on, each site's ClientApp tasks run by medfl's warm site
      executor (``medfl.fl.site_executor``), Flower's fixed waits shortened;
  (c) the same deployment with Flower's stock SuperNode (a new ClientApp process per
      message, Flower's own waits): what (b) replaces. ``--no-stock`` skips it.

Reported: end-to-end seconds, seconds from submission to the end (the ServerApp's own
total), and the median seconds per round (result.json's per-round ``seconds``); each
as a ratio to (a). The final test metrics of (b) and (c) must equal (a)'s exactly:
the deployment computes the same federation.

Run: .venv/bin/python bench/deploy.py [--rounds 5] [--no-stock]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from medfl import FastEngine, load_experiment, run
from medfl.runners import LocalBackend
from medfl.spec import Experiment

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "heart-disease" / "experiment.yaml"


@dataclass
class Timing:
    label: str
    total: float  # end to end, processes started and stopped
    server: float  # the ServerApp's (or fast engine's) own total
    per_round: float  # median of result.json's per-round seconds
    metrics: dict[str, float | None]


def measure(label: str, experiment: Experiment, engine: object, out: Path) -> Timing:
    started = time.perf_counter()
    outcome = run(experiment, engine=engine, out=out, baselines=False, report=False)  # type: ignore[arg-type]
    total = time.perf_counter() - started
    result = outcome.result
    assert result.final is not None
    return Timing(
        label,
        total,
        result.timings["totalSeconds"],
        statistics.median(r.seconds for r in result.rounds),
        dict(result.final.metrics),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-stock", action="store_true", help="skip Flower's stock SuperNode")
    args = parser.parse_args()
    base = load_experiment(EXAMPLE)
    experiment = base.model_copy(
        update={"training": base.training.model_copy(update={"rounds": args.rounds})}
    )
    engines: list[tuple[str, object]] = [
        ("fast engine (baseline)", FastEngine()),
        ("--backend local (medfl site executor)", LocalBackend()),
    ]
    if not args.no_stock:
        engines.append(
            ("--backend local, Flower's stock SuperNode", LocalBackend(warm_sites=False))
        )
    with tempfile.TemporaryDirectory() as tmp:
        timings = [
            measure(label, experiment, e, Path(tmp) / str(i))
            for i, (label, e) in enumerate(engines)
        ]
    fast = timings[0]
    print(f"heart-disease example, {args.rounds} rounds, 4 sites, on this machine")
    print(f"{'':44} {'total s':>8} {'ratio':>7} {'server s':>9} {'s/round':>8} {'ratio':>7}")
    for t in timings:
        print(
            f"{t.label:44} {t.total:8.2f} {t.total / fast.total:7.1f} {t.server:9.2f} "
            f"{t.per_round:8.3f} {t.per_round / fast.per_round:7.0f}"
        )
    same = all(t.metrics == fast.metrics for t in timings)
    print(f"final test metrics identical to the fast engine's: {'yes' if same else 'NO'}")
    if len(timings) == 3:
        stock, warm = timings[2], timings[1]
        speedup = stock.per_round / warm.per_round
        print(f"site executor vs stock SuperNode, per round: {speedup:.1f}x faster")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
