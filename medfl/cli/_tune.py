"""``medfl tune``: a hyperparameter search, each trial a federated run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from medfl.cli._deploy import add_site_policy, site_policies
from medfl.errors import UsageError
from medfl.spec import load_experiment

SHOWN = 10  # the best trials printed; trials.csv has them all


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    tune = sub.add_parser("tune", help="search hyperparameters (Optuna in Ray Tune)")
    tune.add_argument("file", type=Path, help="experiment YAML with a tuning: section")
    tune.add_argument("--out", type=Path, help="search folder (default: runs/NAME-tune-TIME)")
    tune.add_argument(
        "--ray-address", metavar="ADDRESS", help="an existing Ray cluster (default: Ray here)"
    )
    tune.add_argument("--trials", type=int, help="override tuning.trials")
    tune.add_argument("--json", action="store_true", help="print tuning.json to stdout")
    add_site_policy(tune)
    tune.set_defaults(handler=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    from medfl.tuning import tune

    experiment = load_experiment(args.file)
    tuning = experiment.tuning
    if tuning is None:
        raise UsageError(f"{args.file} has no tuning: section (what to search, and how)")
    if args.trials is not None:
        if args.trials < 1:
            raise UsageError(f"--trials {args.trials}: give at least 1")
        tuning = tuning.model_copy(update={"trials": args.trials})
        experiment = experiment.model_copy(update={"tuning": tuning})
    policies = site_policies(args, experiment)
    console = Console(stderr=True)
    console.print(f"searching: {tuning.trials} trials of {args.file}")
    outcome = tune(
        experiment, out=args.out, ray_address=args.ray_address, source=str(args.file),
        site_policies=policies,
    )  # fmt: skip
    if args.json:
        print((outcome.folder / "tuning.json").read_text())
    _print(outcome, console)
    return 0


def _print(outcome, console: Console) -> None:  # type: ignore[no-untyped-def]
    search, best = outcome.search, outcome.best
    metric = search.tuning.metric
    table = Table(title=f"best trials by validation {metric}", title_justify="left")
    for column in ("trial", "status", metric, "rounds", *search.tuning.space):
        table.add_column(column, justify="left" if column == "status" else "right")
    sign = -1 if search.tuning.direction == "max" else 1
    ranked = sorted(
        (r for r in search.rows if r.value is not None), key=lambda r: sign * (r.value or 0)
    )
    for r in ranked[:SHOWN]:
        params = [_short(r.params.get(p)) for p in search.tuning.space]
        table.add_row(str(r.number), r.status, f"{r.value:.3f}", str(r.rounds), *params)
    console.print(table)
    final = outcome.final.final
    if final is not None:
        got = ", ".join(f"{m} {_short(final.metrics.get(m))}" for m in ("accuracy", "auc"))
        console.print(f"best (trial {best.number}) on the test splits, once: {got}")
    rate = 60 * len(search.rows) / search.seconds if search.seconds else 0.0
    console.print(f"{len(search.rows)} trials in {search.seconds:.0f} s ({rate:.0f} per minute)")
    folder = outcome.folder
    console.print(f"report: {folder / 'report.md'}\nbest spec: {folder / 'best.yaml'}")
    print(f"results: {folder}", file=sys.stderr)


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)
