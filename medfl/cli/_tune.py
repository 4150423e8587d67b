"""``medfl tune``: a hyperparameter search, each trial a federated run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from medfl.cli._deploy import (
    _need,
    absolute_path,
    add_backend,
    add_round_timeout,
    add_site_policy,
    server_tls,
    site_policies,
    warn_insecure,
)
from medfl.errors import UsageError
from medfl.spec import Experiment, load_experiment

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
    add_backend(tune)
    tune.add_argument(
        "--server",
        metavar="HOST:PORT",
        help="submit every trial to this running federation (medfl server and medfl site); "
        "run it on the server's machine",
    )
    tune.add_argument(
        "--tls-dir",
        type=absolute_path,
        metavar="DIR",
        help="--backend local: this CA and server certificate; --server: DIR holding ca.pem",
    )
    add_round_timeout(tune, "--backend local and --server: ")
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
    where = _where(args, experiment)
    console = Console(stderr=True)
    console.print(f"searching: {tuning.trials} trials of {args.file}{_said(args)}")
    outcome = tune(experiment, out=args.out, where=where, source=str(args.file))
    if args.json:
        print((outcome.folder / "tuning.json").read_text())
    _print(outcome, console)
    return 0


def _where(args: argparse.Namespace, experiment: Experiment):  # type: ignore[no-untyped-def]
    """Where the trials run, from the flags: Ray here (default), a deployment started
    here (--backend local) or a running federation (--server)."""
    from medfl.runners import LocalBackend
    from medfl.tuning import FederationTrials, InProcessTrials

    if args.server or args.backend == "local":
        _no_simulation_flags(args)
    elif args.insecure or args.tls_dir:
        raise UsageError("--insecure and --tls-dir apply to --backend local or --server only")
    if args.insecure and args.tls_dir:
        raise UsageError("--insecure and --tls-dir exclude each other")
    if args.server:
        if args.backend == "local":
            raise UsageError("--server submits to a running federation, --backend local "
                             "starts one here: give one of them")  # fmt: skip
        if not (args.insecure or args.tls_dir):
            raise UsageError("--server needs --tls-dir DIR (holding ca.pem) or --insecure")
        warn_insecure(args)
        ca = None if args.insecure else _need(args.tls_dir, "ca.pem")
        return FederationTrials(args.server, ca, round_timeout_s=args.round_timeout)
    if args.backend == "local":
        warn_insecure(args)
        tls = server_tls(args.tls_dir) if args.tls_dir else None
        return LocalBackend(
            insecure=args.insecure, tls=tls, round_timeout_s=args.round_timeout,
            site_policies=site_policies(args, experiment),
        )  # fmt: skip
    return InProcessTrials(args.ray_address, site_policies(args, experiment))


def _no_simulation_flags(args: argparse.Namespace) -> None:
    if args.ray_address:
        raise UsageError("--ray-address: with --backend local or --server the sites train "
                         "the trials, not a Ray cluster")  # fmt: skip
    if args.server and args.site_policy:
        raise UsageError("--site-policy: a federation's sites keep their own policies "
                         "(medfl site --policy FILE)")  # fmt: skip


def _said(args: argparse.Namespace) -> str:
    if args.server:
        return f", each a run on the federation at {args.server}"
    if args.backend == "local":
        return ", each a run on a server and site processes started here"
    return ""


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
