"""Speed: medfl's fast engine against Flower's simulation engine and hand-written loops.

The workload is the heart-disease example (examples/heart-disease/experiment.yaml:
4 hospitals, logistic regression, FedAvg, 15 rounds), baselines off. Timed end to
end, in this one process:

  (a) medfl's fast engine:      run(experiment, engine=FastEngine(), baselines=False)
  (b) Flower's simulation:      run(experiment, engine=FlowerEngine(num_cpus=2), ...)
  (c) a hand-written FedAvg loop in torch (TensorDataset + DataLoader + torch.optim.SGD),
      on the same tensors medfl trains on, with the same epochs, batch size, learning
      rate and rounds, validating every round and testing at the end as medfl does;
  (d) the same loop in numpy (the logistic-regression gradient written out).

(c) and (d) build their tensors with medfl.data (read, split, federated preprocessing)
inside the timed region, as a researcher's script would have to. Each is repeated and
the median reported, after one untimed warm-up run; Flower's engine runs once.

Run: .venv/bin/python bench/speed.py [--repeats 5] [--no-flower]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from medfl import FastEngine, FlowerEngine, load_experiment, run
from medfl.data import Preprocessor, prepare_sites, stratified_split, summarize
from medfl.spec import Experiment, Training

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "heart-disease" / "experiment.yaml"
TARGET_VS_FLOWER = 10.0  # the fast engine at least this many times faster than Flower's
TARGET_VS_TORCH = 1.0  # fast engine time / hand-written torch time at most this

PARTS = ("train", "validation", "test")
Loop = Callable[[Experiment], tuple[float, float]]  # -> (test accuracy, rounds seconds)


@dataclass
class Timing:
    label: str
    seconds: list[float]  # end to end, one per repeat
    training: list[float]  # the rounds alone (medfl: its own trainingSeconds)
    accuracy: float

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def training_median(self) -> float:
        return statistics.median(self.training)


# --- the data, as medfl prepares it -------------------------------------------


@dataclass
class SiteTensors:
    x: dict[str, torch.Tensor]
    y: dict[str, torch.Tensor]


def site_tensors(experiment: Experiment) -> list[SiteTensors]:
    """Each site's split and preprocessed tensors, built with medfl.data's public functions."""
    schema, seed = experiment.data_schema, experiment.training.seed
    tables = prepare_sites(experiment)
    frames, summaries = [], []
    for table in tables:
        split = stratified_split(table.y, experiment.evaluation.split, seed, table.site)
        parts = {p: getattr(split, p) for p in PARTS}
        frames.append({p: (table.features.iloc[i], table.y[i]) for p, i in parts.items()})
        summaries.append(summarize(table.site, frames[-1]["train"][0], table.features, schema))
    pre = Preprocessor.from_summaries(schema, summaries)
    return [
        SiteTensors(
            {p: torch.from_numpy(pre.transform(f[p][0])) for p in PARTS},
            {p: torch.from_numpy(f[p][1]) for p in PARTS},
        )
        for f in frames
    ]


def accuracy(correct: list[int], total: list[int]) -> float:
    return sum(correct) / sum(total)


# --- (c) hand-written torch ----------------------------------------------------


def torch_fedavg(experiment: Experiment) -> tuple[float, float]:
    """FedAvg written plainly; returns (test accuracy, seconds spent in the rounds)."""
    cfg = experiment.training
    sites = site_tensors(experiment)
    began = time.perf_counter()
    torch.manual_seed(cfg.seed)
    width = sites[0].x["train"].shape[1]
    global_model = nn.Linear(width, 1)
    loaders = [
        DataLoader(TensorDataset(s.x["train"], s.y["train"]), cfg.batch_size, shuffle=True)
        for s in sites
    ]
    sizes = [len(s.y["train"]) for s in sites]
    loss_fn = nn.BCEWithLogitsLoss()
    for _ in range(cfg.rounds):
        states = []
        for loader in loaders:
            model = nn.Linear(width, 1)
            model.load_state_dict(global_model.state_dict())
            optimizer = torch.optim.SGD(model.parameters(), lr=cfg.learning_rate)
            for _ in range(math.ceil(cfg.epochs_or_default)):
                for xb, yb in loader:
                    optimizer.zero_grad()
                    loss_fn(model(xb).squeeze(-1), yb).backward()
                    optimizer.step()
            states.append(model.state_dict())
        average = {
            k: sum(s[k] * n for s, n in zip(states, sizes, strict=True)) / sum(sizes)
            for k in states[0]
        }
        global_model.load_state_dict(average)
        _torch_accuracy(global_model, sites, "validation")
    seconds = time.perf_counter() - began
    return _torch_accuracy(global_model, sites, "test"), seconds


@torch.no_grad()
def _torch_accuracy(model: nn.Module, sites: list[SiteTensors], part: str) -> float:
    correct, total = [], []
    for s in sites:
        pred = (torch.sigmoid(model(s.x[part]).squeeze(-1)) >= 0.5).float()
        correct.append(int((pred == s.y[part]).sum()))
        total.append(len(s.y[part]))
    return accuracy(correct, total)


def one_thread(loop: Loop) -> Loop:
    """The same loop with torch on one thread (what medfl's fast engine uses)."""

    def wrapped(experiment: Experiment) -> tuple[float, float]:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return loop(experiment)
        finally:
            torch.set_num_threads(before)

    return wrapped


# --- (d) hand-written numpy ----------------------------------------------------


def numpy_fedavg(experiment: Experiment) -> tuple[float, float]:
    """The same loop in numpy: logistic regression's gradient written out."""
    cfg = experiment.training
    sites = [
        ({p: s.x[p].numpy() for p in PARTS}, {p: s.y[p].numpy() for p in PARTS})
        for s in site_tensors(experiment)
    ]
    began = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    width = sites[0][0]["train"].shape[1]
    w: np.ndarray = np.asarray(rng.uniform(-1, 1, width)) / math.sqrt(width)
    b = 0.0
    shares = np.array([len(y["train"]) for _, y in sites], dtype=float)
    shares /= shares.sum()
    for _ in range(cfg.rounds):
        updates = [_numpy_local(w, b, x["train"], y["train"], cfg, rng) for x, y in sites]
        w = np.sum([u[0] * n for u, n in zip(updates, shares, strict=True)], axis=0)
        b = float(sum(u[1] * n for u, n in zip(updates, shares, strict=True)))
        _numpy_accuracy(w, b, sites, "validation")
    seconds = time.perf_counter() - began
    return _numpy_accuracy(w, b, sites, "test"), seconds


def _numpy_local(
    w: np.ndarray, b: float, x: np.ndarray, y: np.ndarray, cfg: Training, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    for _ in range(math.ceil(cfg.epochs_or_default)):
        order = rng.permutation(len(y))
        for start in range(0, len(y), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            error = 1.0 / (1.0 + np.exp(-(x[idx] @ w + b))) - y[idx]
            w = w - cfg.learning_rate * (x[idx].T @ error) / len(idx)
            b = b - cfg.learning_rate * float(error.mean())
    return w, b


NumpySite = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]


def _numpy_accuracy(w: np.ndarray, b: float, sites: list[NumpySite], part: str) -> float:
    correct = [int((((x[part] @ w + b) >= 0) == (y[part] == 1)).sum()) for x, y in sites]
    return accuracy(correct, [len(y[part]) for _, y in sites])


# --- timing ---------------------------------------------------------------------

Measure = Callable[[Path], tuple[float, float, float]]  # -> (seconds, rounds seconds, accuracy)


def medfl_measure(
    experiment: Experiment,
    engine: FastEngine | FlowerEngine,
    key: str | None = None,
    report: bool = True,
) -> Measure:
    """A medfl run; its own timings are kept in LAST_TIMINGS[key or the engine's name]."""

    def one(out: Path) -> tuple[float, float, float]:
        began = time.perf_counter()
        result = run(experiment, engine=engine, out=out, baselines=False, report=report).result
        seconds = time.perf_counter() - began
        LAST_TIMINGS[key or engine.name] = dict(result.timings, endToEnd=seconds)
        assert result.final is not None, result.error
        acc = result.final.metrics["accuracy"] or 0.0
        return seconds, result.timings["trainingSeconds"], acc

    return one


LAST_TIMINGS: dict[str, dict[str, float]] = {}  # medfl's own timings of its last run


def loop_measure(experiment: Experiment, loop: Loop) -> Measure:
    def one(_: Path) -> tuple[float, float, float]:
        began = time.perf_counter()
        acc, training = loop(experiment)
        return time.perf_counter() - began, training, acc

    return one


def interleaved(contenders: dict[str, Measure], repeats: int, out: Path) -> list[Timing]:
    """One untimed warm-up each, then ``repeats`` rounds of one run each, interleaved so
    that whatever else the machine does slows every contender alike."""
    timings = {label: Timing(label, [], [], 0.0) for label in contenders}
    for i in range(-1, repeats):
        for j, (label, measure) in enumerate(contenders.items()):
            seconds, training, acc = measure(out / f"{j}-{i + 1}")
            if i >= 0:
                timings[label].seconds.append(seconds)
                timings[label].training.append(training)
                timings[label].accuracy = acc
    return list(timings.values())


def time_flower(experiment: Experiment, out: Path) -> Timing | str:
    """Flower's engine once, or why it could not run."""
    try:
        seconds, training, acc = medfl_measure(experiment, FlowerEngine(num_cpus=2))(out)
    except Exception as exc:  # report and skip: the other measurements still stand
        return f"{type(exc).__name__}: {exc}"
    return Timing("(b) Flower simulation (Ray)", [seconds], [training], acc)


# --- report ---------------------------------------------------------------------


def print_table(timings: list[Timing], repeats: int) -> None:
    fast = timings[0]
    print(f"\nheart-disease example, 15 rounds, baselines off; median of {repeats} (Flower: 1)")
    head = f"{'engine':<34} {'end to end':>11} {'(min–max)':>15} {'rounds only':>12}"
    head += f" {'÷ fast':>7} {'test acc':>9}"
    print(head)
    print("─" * len(head))
    for t in timings:
        spread = f"({min(t.seconds):.2f}–{max(t.seconds):.2f})"
        print(
            f"{t.label:<34} {t.median:10.3f}s {spread:>15} {t.training_median:11.3f}s"
            f" {t.median / fast.median:6.1f}× {t.accuracy:9.3f}"
        )
    print("÷ fast: end-to-end time over the fast engine's (above 1: the fast engine wins)")


def print_breakdown(t: dict[str, float]) -> None:
    """Where the fast engine's end-to-end time goes (its last run, medfl's own timings)."""
    rest = t["totalSeconds"] - t["setupSeconds"] - t["trainingSeconds"]
    outputs = t["endToEnd"] - t["totalSeconds"]
    print(
        f"fast engine, last run: setup {t['setupSeconds']:.3f}s + rounds "
        f"{t['trainingSeconds']:.3f}s + test/model {rest:.3f}s + run dir, plots and "
        f"report {outputs:.3f}s = {t['endToEnd']:.3f}s"
    )


def _verdict(passed: bool, text: str) -> bool:
    print(f"{'PASS' if passed else 'FAIL'}: {text}")
    return passed


def verdicts(
    fast: Timing, flower: Timing | None, plain: Timing, one_thread: Timing, no_report: Timing
) -> bool:
    """The targets: fast vs Flower (both write their whole run directory), and fast vs
    the plain hand-written torch loop. That loop writes nothing, so it is compared with
    ``run(report=False)``: training, validation each round, test, result.json, the
    checkpoints and the model, but no PNG or report.md. The same loop pinned to one
    thread (as medfl pins itself) is reported, not a target."""
    ok = True
    if flower is None:
        print("SKIP: fast engine vs Flower (Flower's engine did not run)")
    else:
        speedup = flower.median / fast.median
        ok &= _verdict(
            speedup >= TARGET_VS_FLOWER,
            f"fast engine vs Flower: {speedup:.1f}× faster (target >= {TARGET_VS_FLOWER:.0f}×)",
        )
    ratio = no_report.median / plain.median
    ok &= _verdict(
        ratio <= TARGET_VS_TORCH,
        f"fast engine (report=False) / hand-written torch, end to end: {ratio:.2f} "
        f"(target <= {TARGET_VS_TORCH:.1f}; rounds only "
        f"{no_report.training_median / plain.training_median:.2f})",
    )
    print(
        f"info: fast engine (report=False) / hand-written torch on 1 thread: end to end "
        f"{no_report.median / one_thread.median:.2f}, rounds only "
        f"{no_report.training_median / one_thread.training_median:.2f}"
    )
    print(
        f"info: fast engine with its PNG curves and report / hand-written torch: "
        f"{fast.median / plain.median:.2f}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-flower", action="store_true", help="skip Flower's engine")
    args = parser.parse_args()
    experiment = load_experiment(EXAMPLE)
    contenders = {
        "(a) medfl fast engine": medfl_measure(experiment, FastEngine()),
        "(a) fast engine, report=False": medfl_measure(
            experiment, FastEngine(), "no-report", report=False
        ),
        "(c) hand-written torch": loop_measure(experiment, torch_fedavg),
        "(c) hand-written torch, 1 thread": loop_measure(experiment, one_thread(torch_fedavg)),
        "(d) hand-written numpy": loop_measure(experiment, numpy_fedavg),
    }
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="medfl-speed-") as tmp:
        timings = interleaved(contenders, args.repeats, Path(tmp))
        fast_breakdown = LAST_TIMINGS["fast"]
        flower = None if args.no_flower else time_flower(experiment, Path(tmp) / "flower")
    if isinstance(flower, Timing):
        timings.insert(1, flower)
    print_table(timings, args.repeats)
    print_breakdown(fast_breakdown)
    if isinstance(flower, str):
        print(f"Flower's simulation engine skipped: it failed with {flower}")
    by_label = {t.label: t for t in timings}
    ok = verdicts(
        by_label["(a) medfl fast engine"],
        flower if isinstance(flower, Timing) else None,
        by_label["(c) hand-written torch"],
        by_label["(c) hand-written torch, 1 thread"],
        by_label["(a) fast engine, report=False"],
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
