"""Transfer learning: the example of examples/transfer-learning/ over several seeds.

Step 1 trains an MLP on Cleveland and Hungary (source.yaml); step 2 starts Switzerland
and VA Long Beach from it, first layer frozen, and fine-tunes per site
(transfer.yaml). In the same run, for each seed, the same step-2 federation is trained
from random weights (the `scratch` baseline) and the pretrained weights are scored
untrained. Scored on the two hospitals' test splits (81 patients per seed: small, so
read the spread, not one seed).

No target: the accuracy comparison is printed as measured (the AUC ratio pretrained /
scratch and in how many seeds the pretrained start scored higher), with the values
sent per round against the model's size.

Run: .venv/bin/python bench/transfer.py [--seeds 1 2 ... 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from medfl import load_experiment, run
from medfl.results import RunResult
from medfl.runners import FastEngine
from medfl.spec import Experiment

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "transfer-learning"
ROWS = (
    ("federated, from pretrained", lambda r: r.final),
    ("personalised (fine-tuned)", lambda r: r.personalized),
    ("from scratch", lambda r: r.baselines.get("scratch")),
    ("pretrained, untrained", lambda r: r.baselines.get("pretrained")),
    ("local baseline", lambda r: r.baselines.get("local")),
)


def _seeded(experiment: Experiment, seed: int, **changes: object) -> Experiment:
    training = experiment.training.model_copy(update={"seed": seed})
    return experiment.model_copy(update={"training": training, **changes})


def _one_seed(seed: int, folder: Path) -> RunResult:
    source = _seeded(load_experiment(EXAMPLE / "source.yaml"), seed)
    first = run(source, out=folder / f"source-{seed}", baselines=False, report=False)
    transfer = load_experiment(EXAMPLE / "transfer.yaml")
    assert transfer.model.pretrained is not None
    pretrained = transfer.model.pretrained.model_copy(update={"path": str(first.run_dir)})
    model = transfer.model.model_copy(update={"pretrained": pretrained})
    # As run.sh: Switzerland's policy lets out its metrics on the public UCI data.
    engine = FastEngine(site_policies=(("switzerland", EXAMPLE / "public-data-policy.yaml"),))
    second = run(
        _seeded(transfer, seed, model=model), engine=engine, out=folder / f"transfer-{seed}"
    )
    return second.result


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 11)))
    args = parser.parse_args()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        results = [_one_seed(seed, Path(tmp)) for seed in args.seeds]
    auc: dict[str, list[float]] = {label: [] for label, _ in ROWS}
    acc: dict[str, list[float]] = {label: [] for label, _ in ROWS}
    for result in results:
        for label, pick in ROWS:
            ev = pick(result)
            assert ev is not None, label
            auc[label].append(float(ev.metrics["auc"] or 0.0))
            acc[label].append(float(ev.metrics["accuracy"] or 0.0))
    print(f"seeds {args.seeds}; test splits of switzerland + va-long-beach")
    print(f"{'model':<28} {'AUC (mean ± sd)':>18} {'accuracy':>18}  AUC per seed")
    for label, _ in ROWS:
        per_seed = " ".join(f"{v:.3f}" for v in auc[label])
        print(f"{label:<28} {_mean_sd(auc[label]):>18} {_mean_sd(acc[label]):>18}  {per_seed}")
    info = results[0].model
    assert info is not None
    print(
        f"values sent per round each way: {info.values_sent} of {info.values_total} "
        f"(ratio {info.values_sent / info.values_total:.3f}; frozen: "
        f"{', '.join(la.name for la in info.layers if la.role == 'frozen')})"
    )
    gain = statistics.mean(auc[ROWS[0][0]]) / statistics.mean(auc["from scratch"])
    wins = sum(a > b for a, b in zip(auc[ROWS[0][0]], auc["from scratch"], strict=True))
    print(f"AUC ratio pretrained / scratch: {gain:.3f} (higher in {wins} of {len(results)} seeds)")
    print(f"({time.perf_counter() - began:.0f} s; no target: read the spread over seeds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
