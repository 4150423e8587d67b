"""Scale: the batched engine against a sequential torch loop and numpy over many virtual
sites, memory with 100 000 sites, and accuracy under label skew against IID.

Workloads (examples/heart-disease/scale.yaml: logistic regression, SGD lr 0.1, batch 16,
1 local epoch; the pool is the four hospitals' 552 training rows):

  (1) 1000 virtual sites, fixed-size shards of 32 rows (drawn with replacement), all
      sampled, 5 rounds. Per round, training and the FedAvg average only (validation
      scoring of the global model is timed apart):
        (a) medfl's batched engine: run(engine=BatchedEngine()), its own per-round seconds;
        (b) a sequential torch loop: per site nn.Linear + torch.optim.SGD over the
            same sites, batch size and steps (each site's batches from train_local's
            own generator: the fast engine's per-site path, without its bookkeeping);
        (c) numpy: the logistic-regression gradient written out, site by site;
        and the batched engine with DP-SGD at every site (noise multiplier 1.1).
      Ratios (a)/(b) and (a)/(c) in this run. Flower's engine is not run here (about
      80 s a round at 1000 sites on these machines: bench/speed.py measures it at 4).
  (2) 100 000 virtual sites (shards of 32), 1 % sampled per round, 5 rounds: seconds
      per round and memory (the partition's arrays, the largest stack, peak RSS over the
      process's RSS before the run). Each scenario runs in its own process, so peak RSS
      is its own.
  (3) 50 virtual sites, 30 rounds of 1 and of 5 local epochs, the same budget for
      each partition: IID against Dirichlet label skew (alpha 1.0 and 0.1, minSize 4)
      and quantity skew (alpha 0.5), test accuracy and AUC over seeds 1-3.

Run: .venv/bin/python bench/scale.py [--only 1|2|3] [--device cpu|cuda|auto]
     [--sites N] [--big N] [--fraction F]
A GPU run (not measured here: no GPU on these machines): bench/scale_gpu.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medfl import load_experiment, run
from medfl._seeds import derive_seed
from medfl.simulation import build_pool
from medfl.spec import Experiment, parse_experiment
from medfl.training import Federation, InProcessTransport
from medfl.training._local import _batches, local_steps

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "heart-disease" / "scale.yaml"
TARGET_SECONDS = 0.5  # per round, 1000 sites, all sampled, on these 2-core machines
SEEDS = (1, 2, 3)


def scaled(
    count: int,
    partitioner: dict[str, Any],
    rounds: int = 5,
    fraction: float = 1.0,
    device: str = "cpu",
    seed: int | None = None,
    private: bool = False,
) -> Experiment:
    doc = load_experiment(EXAMPLE).to_wire()
    doc["training"]["rounds"] = rounds
    if seed is not None:
        doc["training"]["seed"] = seed
    doc["evaluation"]["baselines"] = []
    if private:
        doc["privacy"] = {"mode": "local", "noiseMultiplier": 1.1, "delta": 1e-5}
    doc["simulation"] = {
        "virtualSites": {"count": count, "partitioner": partitioner},
        "sampleFraction": fraction,
        "device": device,
    }
    return parse_experiment(doc)


def rss_bytes() -> int:
    """This process's resident set now (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def engine_run(experiment: Experiment) -> dict[str, Any]:
    before = rss_bytes()
    with tempfile.TemporaryDirectory(prefix="medfl-scale-") as tmp:
        began = time.perf_counter()
        result = run(experiment, out=Path(tmp) / "run", report=False, baselines=False).result
        seconds = time.perf_counter() - began
    assert result.simulation is not None and result.final is not None, result.error
    sim = result.simulation
    train = [r.seconds for r in sim.rounds]
    scored = [r.seconds for r in result.rounds]
    return {
        "roundSeconds": statistics.median(train),
        "roundSecondsAll": train,
        "roundWithValidation": statistics.median(scored),
        "endToEnd": seconds,
        "memory": sim.memory,
        "rssBefore": before,
        "peakOverBefore": sim.memory["peakRssBytes"] - before,
        "accuracy": result.final.metrics["accuracy"],
        "auc": result.final.metrics["auc"],
        "sites": sim.sites,
        "perRound": sim.sites_per_round,
    }


# --- (b) and (c): the same sites and batches, one site at a time ---------------------


def site_batches(experiment: Experiment) -> tuple[Any, list[list[list[torch.Tensor]]]]:
    """The pool and, per round, per site, train_local's batches (as many, as large, as
    the batched engine's; drawn by its per-site generator)."""
    transport = InProcessTransport(experiment)
    Federation(experiment, transport).setup()  # reads, splits and preprocesses the sites
    pool = build_pool(experiment, transport.workers, torch.device("cpu"))
    cut, cfg = pool.partition, experiment.training
    per_round = []
    for r in range(1, cfg.rounds + 1):
        sites = []
        for i in range(cut.count):
            rows = torch.from_numpy(cut.site_rows(i).astype(np.int64))
            seed = experiment.training.seed
            drawn = _batches(len(rows), local_steps(len(rows), cfg), cfg.batch_size,
                             derive_seed(seed, cut.site_name(i), r))  # fmt: skip
            sites.append([rows[b] for b in drawn])
        per_round.append(sites)
    return pool, per_round


def torch_loop(experiment: Experiment) -> float:
    pool, batches = site_batches(experiment)
    lr = experiment.training.learning_rate
    width = pool.x.shape[1]
    global_model = nn.Linear(width, 1)
    loss_fn = nn.BCEWithLogitsLoss()
    seconds = []
    for sites in batches:
        began = time.perf_counter()
        total = [torch.zeros_like(p) for p in global_model.state_dict().values()]
        n = 0
        for site in sites:
            model = nn.Linear(width, 1)
            model.load_state_dict(global_model.state_dict())
            optimizer = torch.optim.SGD(model.parameters(), lr=lr)
            for idx in site:
                optimizer.zero_grad()
                loss_fn(model(pool.x[idx]).squeeze(-1), pool.y[idx]).backward()
                optimizer.step()
            rows = sum(len(i) for i in site)
            for acc, p in zip(total, model.state_dict().values(), strict=True):
                acc += p * rows
            n += rows
        global_model.load_state_dict(
            dict(zip(global_model.state_dict(), [t / n for t in total], strict=True))
        )
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds)


def numpy_loop(experiment: Experiment) -> float:
    pool, batches = site_batches(experiment)
    x, y = pool.x.numpy().astype(np.float64), pool.y.numpy().astype(np.float64)
    lr = experiment.training.learning_rate
    w, b = np.zeros(x.shape[1]), 0.0
    seconds = []
    for sites in batches:
        idxs = [[i.numpy() for i in site] for site in sites]
        began = time.perf_counter()
        sw, sb, n = np.zeros_like(w), 0.0, 0
        for site in idxs:
            lw, lb = w.copy(), b
            for idx in site:
                error = 1.0 / (1.0 + np.exp(-(x[idx] @ lw + lb))) - y[idx]
                lw -= lr * (x[idx].T @ error) / len(idx)
                lb -= lr * float(error.mean())
            rows = sum(len(i) for i in site)
            sw += lw * rows
            sb += lb * rows
            n += rows
        w, b = sw / n, sb / n
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds)


# --- scenarios, each in its own process -------------------------------------------


def scenario(name: str, args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)  # what run() does too: the baselines on the same footing
    shards = {"type": "shards", "shardSize": 32}
    if name == "engine-1000":
        return engine_run(scaled(args.sites, shards, device=args.device))
    if name == "engine-dp-1000":
        return engine_run(scaled(args.sites, shards, device=args.device, private=True))
    if name == "torch-1000":
        return {"roundSeconds": torch_loop(scaled(args.sites, shards))}
    if name == "numpy-1000":
        return {"roundSeconds": numpy_loop(scaled(args.sites, shards))}
    if name == "engine-big":
        return engine_run(scaled(args.big, shards, fraction=args.fraction, device=args.device))
    raise SystemExit(f"unknown scenario {name}")


SKEWS = {
    "iid": "IID",
    "dirichlet1": "Dirichlet alpha 1.0 (label skew)",
    "dirichlet01": "Dirichlet alpha 0.1 (strong skew)",
    "quantity": "quantity skew alpha 0.5",
}
PARTITIONERS: dict[str, dict[str, Any]] = {
    "iid": {"type": "iid"},
    "dirichlet1": {"type": "dirichlet", "alpha": 1.0, "minSize": 4},
    "dirichlet01": {"type": "dirichlet", "alpha": 0.1, "minSize": 4},
    "quantity": {"type": "quantity", "alpha": 0.5, "minSize": 4},
}


def skew_run(kind: str, seed: int, epochs: int) -> dict[str, Any]:
    experiment = scaled(50, PARTITIONERS[kind], rounds=30, seed=seed)
    training = experiment.training.model_copy(update={"local_epochs": float(epochs)})
    return engine_run(experiment.model_copy(update={"training": training}))


def in_process(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """A scenario in a fresh process: its peak RSS is its own."""
    command = [sys.executable, __file__, "--scenario", name, "--device", args.device]
    command += ["--sites", str(args.sites), "--big", str(args.big)]
    command += ["--fraction", str(args.fraction)]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"scenario {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def part_one(args: argparse.Namespace) -> bool:
    engine = in_process("engine-1000", args)
    torch_s = in_process("torch-1000", args)["roundSeconds"]
    numpy_s = in_process("numpy-1000", args)["roundSeconds"]
    sec = engine["roundSeconds"]
    print(f"\n(1) {args.sites} virtual sites, shards of 32, all sampled, 5 rounds ({args.device})")
    print(f"{'':34} {'s / round':>10} {'÷ batched':>10}")
    print(f"{'(a) medfl batched engine':34} {sec:10.3f} {1.0:9.1f}×")
    print(f"{'(b) sequential torch loop':34} {torch_s:10.3f} {torch_s / sec:9.1f}×")
    print(f"{'(c) numpy, site by site':34} {numpy_s:10.3f} {numpy_s / sec:9.1f}×")
    print(
        f"batched engine: with validation scoring {engine['roundWithValidation']:.3f} s/round; "
        f"rounds {', '.join(f'{s:.3f}' for s in engine['roundSecondsAll'])}; end to end "
        f"{engine['endToEnd']:.2f} s; test accuracy {engine['accuracy']:.3f}"
    )
    dp = in_process("engine-dp-1000", args)
    print(
        f"batched engine with DP-SGD at every site (noise 1.1, Poisson batches): "
        f"{dp['roundSeconds']:.3f} s/round ({dp['roundSeconds'] / sec:.1f}× without DP)"
    )
    m = engine["memory"]
    print(
        f"memory: pool {mib(m['poolBytes'])}, partition {mib(m['partitionBytes'])}, largest "
        f"stack {mib(m['peakStackBytes'])}, peak RSS {mib(m['peakRssBytes'])} "
        f"({mib(engine['peakOverBefore'])} over the process before the run)"
    )
    passed = args.device != "cpu" or sec <= TARGET_SECONDS
    verdict = "PASS" if passed else "FAIL"
    print(f"{verdict}: batched engine {sec:.3f} s/round at {args.sites} sites (target <= 0.5 s)")
    return passed


def part_two(args: argparse.Namespace) -> None:
    big = in_process("engine-big", args)
    m = big["memory"]
    print(
        f"\n(2) {big['sites']} virtual sites, {big['perRound']} sampled per round "
        f"({args.fraction:.0%}), 5 rounds ({args.device}): {big['roundSeconds']:.3f} s/round "
        f"training ({big['roundWithValidation']:.3f} with validation scoring), end to end "
        f"{big['endToEnd']:.2f} s"
    )
    print(
        f"memory: partition {mib(m['partitionBytes'])} (int32 rows + int64 offsets, all "
        f"sites), largest stack {mib(m['peakStackBytes'])} (the sampled sites only), peak "
        f"RSS {mib(m['peakRssBytes'])} ({mib(big['peakOverBefore'])} over the process "
        "before the run)"
        + (f", CUDA peak {mib(m['cudaPeakBytes'])}" if "cudaPeakBytes" in m else "")
    )


def part_three(args: argparse.Namespace) -> None:
    """In this process: only test metrics are read (no memory figure)."""
    torch.set_num_threads(1)
    for epochs in (1, 5):
        print(
            f"\n(3) 50 virtual sites, 30 rounds x {epochs} local epoch(s), all sampled: test "
            f"accuracy / AUC, mean ± sd over seeds {SEEDS[0]}-{SEEDS[-1]}"
        )
        for kind, label in SKEWS.items():
            runs = [skew_run(kind, seed, epochs) for seed in SEEDS]
            acc = [r["accuracy"] for r in runs]
            auc = [r["auc"] for r in runs]
            print(
                f"{label:36} accuracy {statistics.mean(acc):.3f} ± {statistics.pstdev(acc):.3f}"
                f"   AUC {statistics.mean(auc):.3f} ± {statistics.pstdev(auc):.3f}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["1", "2", "3"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--scenario", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scenario:
        print(json.dumps(scenario(args.scenario, args)))
        return 0
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ok = True
    if args.only in (None, "1"):
        ok = part_one(args)
    if args.only in (None, "2"):
        part_two(args)
    if args.only in (None, "3"):
        part_three(args)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
