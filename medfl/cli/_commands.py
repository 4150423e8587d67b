"""What each ``medfl`` sub-command does; printing only, the work is in the library."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from medfl.cli._deploy import site_policies
from medfl.errors import DataError, MedflError, SiteExcluded, UsageError
from medfl.results import REPORT_FILE, RoundRecord, RunResult, RunStore
from medfl.results._report import count_text
from medfl.spec import Experiment, load_experiment
from medfl.spec._policy import load_policies

if TYPE_CHECKING:  # torch loads only where a command needs it
    from medfl.training import SiteWorker

HEADLINE = ("accuracy", "auc", "sensitivity", "specificity", "f1")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _overrides(experiment: Experiment, args: argparse.Namespace) -> Experiment:
    changes = {}
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.rounds is not None:
        changes["rounds"] = args.rounds
    if not changes:
        return experiment
    training = experiment.training.model_copy(update=changes)
    return experiment.model_copy(update={"training": training})


def _summary(result: RunResult, run_dir: Path, console: Console) -> None:
    table = Table(title=f"{result.name}: test-split metrics", title_justify="left")
    table.add_column("model")
    for name in HEADLINE:
        table.add_column(name, justify="right")
    for label, ev in result.comparisons():
        table.add_row(label, *(_fmt(ev.metrics.get(m)) for m in HEADLINE))
    console.print(table)
    scored = len(result.final.sites) if result.final else 0
    console.print(
        f"[dim]the test splits of {scored} of {len(result.sites)} site(s): accuracy, "
        "sensitivity, specificity, F1 from the summed confusion counts; AUC "
        "example-weighted over sites[/]"
    )
    for note in result.notes:
        console.print(f"[dim]note: {note}[/]")
    console.print(f"report: {run_dir / REPORT_FILE}\nresults: {run_dir}")


def _experiment_for(args: argparse.Namespace) -> Experiment:
    """The spec to run: from FILE with overrides, or the resumed run's own. A resumed
    run may be given more rounds; its seed is part of what it already computed."""
    if args.resume is None:
        return _overrides(load_experiment(args.file), args)
    if args.seed is not None or args.out is not None:
        raise UsageError("--resume continues a run as it was: --seed and --out do not apply")
    store = RunStore(args.resume)
    experiment = store.experiment()
    finished = store.load_result()
    done = len(finished.rounds)
    if finished.status == "succeeded" and (args.rounds or done) <= done:
        raise UsageError(
            f"{args.resume} already finished ({done} rounds); to train it longer: "
            f"medfl run --resume {args.resume} --rounds N"
        )
    if args.rounds is not None:
        if args.rounds < done:
            raise UsageError(f"--rounds {args.rounds}: {args.resume} already has {done} rounds")
        experiment = _overrides(experiment, args)
    return experiment


@contextmanager
def _extended(args: argparse.Namespace, experiment: Experiment) -> Iterator[None]:
    """A resumed run given more rounds: its spec asks for the new total while it runs,
    and again says the old one if the run is refused before any new round (a site that
    cannot continue its DP plan), so the run can still be resumed as it was."""
    if args.resume is None or args.rounds is None:
        yield
        return
    store = RunStore(args.resume)
    before, done = store.experiment(), len(store.load_result().rounds)
    store.create(experiment)
    try:
        yield
    except MedflError:
        if len(store.load_result().rounds) == done:
            store.create(before)
        raise


def _progress_bar(console: Console) -> Progress:
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[metrics]}"),
        TimeElapsedColumn(),
    ]
    return Progress(*columns, console=console, transient=False)


def _engine(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from medfl.cli._deploy import server_tls, warn_insecure
    from medfl.runners import BatchedEngine, FastEngine, FlowerEngine, LocalBackend

    if args.device is not None and args.engine not in (None, "batched"):
        raise UsageError("--device applies to --engine batched only")
    if args.backend != "local":
        if args.insecure or args.tls_dir:
            raise UsageError("--insecure and --tls-dir apply to --backend local only")
        if args.engine == "batched":
            return BatchedEngine(device=args.device)
        return FlowerEngine() if args.engine == "flower" else FastEngine()
    if args.engine not in (None, "fast"):
        raise UsageError("--engine chooses a simulation engine: not with --backend local")
    if args.insecure and args.tls_dir:
        raise UsageError("--insecure and --tls-dir exclude each other")
    warn_insecure(args)
    tls = server_tls(args.tls_dir) if args.tls_dir else None
    return LocalBackend(insecure=args.insecure, tls=tls, round_timeout_s=args.round_timeout)


def _default_engine(experiment, device: str | None):  # type: ignore[no-untyped-def]
    """The spec's engine (batched for virtual sites); --device only where it is batched."""
    from medfl.runners import BatchedEngine, default_engine

    engine = default_engine(experiment)
    if device is None:
        return engine
    if not isinstance(engine, BatchedEngine):
        raise UsageError(
            "--device applies to --engine batched only (this spec has no virtual sites)"
        )
    return dataclasses.replace(engine, device=device)  # type: ignore[arg-type]  # argparse choices


def round_progress(bar: Progress, task: TaskID) -> Callable[[RoundRecord], None]:
    """Moves the bar to a finished round, with its validation metrics and flagged sites."""

    def progress(record: RoundRecord) -> None:
        shown = ", ".join(f"{m} {_fmt(record.metrics.get(m))}" for m in ("accuracy", "auc"))
        flagged = [n for n, s in record.sites.items() if s.status != "ok"]
        note = f" [yellow]flagged: {', '.join(flagged)}[/]" if flagged else ""
        bar.update(task, completed=record.round, metrics=f"validation {shown}{note}")

    return progress


def cmd_run(args: argparse.Namespace) -> int:
    from medfl.runners import check_engine, run

    if args.backend == "kubernetes":
        from medfl.cli._kubernetes import check_args, run_on_kubernetes

        check_args(args)
        return run_on_kubernetes(args, _experiment_for(args))
    console = Console(stderr=True, quiet=args.quiet)
    engine = _engine(args)  # the options before any file is read
    experiment = _experiment_for(args)
    if args.engine is None and args.backend != "local":
        engine = _default_engine(experiment, args.device)
    engine = dataclasses.replace(engine, site_policies=site_policies(args, experiment))
    if not args.resume:
        check_engine(experiment, engine)  # before the progress bar: a refusal is one line
    if args.backend == "local":
        security = "no TLS" if args.insecure else "TLS on, sites authenticated"
        console.print(
            f"starting a server and {len(experiment.sites)} site processes on this machine "
            f"({security}); round 1 starts once every site has read its data"
        )
    with _extended(args, experiment), _progress_bar(console) as bar:
        done = len(RunStore(args.resume).load_result().rounds) if args.resume else 0
        task = bar.add_task("rounds", total=experiment.training.rounds, completed=done, metrics="")

        progress = round_progress(bar, task)
        try:
            outcome = run(
                None if args.resume else experiment,
                engine=engine,
                out=args.out,
                resume=args.resume,
                progress=progress,
                baselines=not args.no_baselines,
            )
        except MedflError as exc:
            if args.json and exc.run_dir and (exc.run_dir / "result.json").is_file():
                print((exc.run_dir / "result.json").read_text())
            raise
    if args.json:
        print(outcome.result.to_json())
    _summary(outcome.result, outcome.run_dir, console)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Every site's data report; empty sites are warnings while minSites still holds."""
    from medfl.training import SiteWorker

    experiment = load_experiment(args.file)
    if experiment.tuning is not None:
        from medfl.tuning import check_space

        check_space(experiment, experiment.tuning)  # every trial's spec, before any data
    policies = load_policies(site_policies(args, experiment))
    workers = {
        s.name: SiteWorker(experiment, s.name, policy=policies.get(s.name))
        for s in experiment.sites
    }
    reports, errors, empty, plans = [], [], [], {}
    for name, worker in workers.items():
        try:
            hello = worker.hello()
            reports.append(hello.report.to_dict())
            if hello.privacy is not None:
                plans[name] = hello.privacy.to_dict()
        except SiteExcluded as exc:
            empty.append(str(exc))
        except DataError as exc:
            errors.append(str(exc))
    if len(reports) < experiment.min_sites:
        errors += empty
        empty = []
    if errors:
        _show(args, {"sites": reports, "skipped": [], "errors": errors})
        raise DataError("\n".join(errors))
    model = _starting_model(experiment, workers)  # pretrained weights, frozen, local layers
    found = {"sites": reports, "skipped": empty, "errors": [], "model": model}
    if experiment.privacy.local:
        found["privacy"] = {"sites": plans, "repairs": model.pop("repairs")}
    if experiment.privacy.secure:
        from medfl.training._secure import plan

        found["secureAggregation"] = plan(experiment.privacy.secure_aggregation, len(reports))
    _show(args, found)
    for note in empty:
        print(
            f"medfl: warning: skipped (minSites {experiment.min_sites} allows it): {note}",
            file=sys.stderr,
        )
    print(f"{args.file}: valid ({len(reports)} site(s) ready)", file=sys.stderr)
    return 0


def _show(args: argparse.Namespace, found: dict) -> None:
    if args.json:
        print(json.dumps(found, indent=2))
        return
    _print_reports(found["sites"])
    if "model" in found:
        _print_model(found["model"])
    if "privacy" in found:
        _print_privacy(found["privacy"])
    if "secureAggregation" in found:
        secure = found["secureAggregation"]
        print(
            f"secure aggregation (SecAgg+): {secure['sites']} sites; each site's secrets in "
            f"{secure['shares']} shares, {secure['threshold']} rebuild them; masked values "
            f"within ±{secure['clippingRange']:g}, quantised to {secure['quantizationStep']:.3g}; "
            "runs over Flower's messages (engine flower, --backend local or kubernetes)"
        )


def _print_privacy(privacy: dict) -> None:
    """The privacy plan: each site's noise (chosen for the target, or given) and the ε
    it expects to have spent after the last round."""
    table = Table(title="privacy plan (DP-SGD at each site)", title_justify="left")
    columns = ("site", "noise multiplier", "clipping", "sample rate", "steps/round")
    for column in (*columns, "steps", "expected ε", "δ", "accountant"):
        table.add_column(column, justify="left" if column == "site" else "right")
    for name, plan in privacy["sites"].items():
        sigma = f"{plan['noise_multiplier']:.4g}" + (
            " (for target)" if plan["target_epsilon"] else ""
        )
        table.add_row(
            name,
            sigma,
            f"{plan['max_grad_norm']:g}",
            f"{plan['sample_rate']:.4f}",
            str(plan["steps_per_round"]),
            str(plan["steps_per_round"] * plan["rounds"]),
            f"{plan['planned_epsilon']:.3f}",
            f"{plan['delta']:g}",
            plan["accountant"],
        )
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    for change in privacy["repairs"]:
        console.print(f"privacy.repairModel: {change}")


def _starting_model(experiment: Experiment, workers: dict[str, SiteWorker]) -> dict:
    """The round-0 model as the server would build it, from the sites' aggregates (the
    workers keep the data they read for the site reports)."""
    from medfl.training import Federation, InProcessTransport

    setup = Federation(experiment, InProcessTransport(experiment, workers)).setup()
    model = setup.start.info.model_dump(mode="json", by_alias=True)
    features = setup.preprocessor.feature_names
    return {**model, "features": features, "notes": setup.notes, "repairs": setup.start.repairs}


def _print_model(model: dict) -> None:
    table = Table(title="model", title_justify="left")
    for column in ("tensor", "shape", "role"):
        table.add_column(column)
    for layer in model["layers"]:
        table.add_row(layer["name"], str(layer["shape"]), layer["role"])
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    console.print(
        f"{len(model['features'])} input features; "
        f"{model['valuesSent']} of {model['valuesTotal']} values sent each round"
    )
    source = model["pretrained"]
    if source:
        console.print(
            f"pretrained: {source['path']} ({source['kind']}, input encoding "
            f"{source['preprocessing']}); loaded: {', '.join(source['loaded']) or '-'}; "
            f"freshly initialised: {', '.join(source['reinitialized']) or '-'}"
        )
    for note in model["notes"]:
        console.print(f"note: {note}")


def _print_reports(reports: list[dict]) -> None:
    table = Table(title="sites", title_justify="left")
    for column in (
        "site",
        "rows",
        "positive",
        "negative",
        "no outcome",
        "dropped (missing)",
        "missing values",
        "columns dropped",
        "metrics withheld",
    ):
        table.add_column(column)
    for r in reports:
        missing = ", ".join(f"{c} {count_text(n)}" for c, n in r["missing"].items()) or "-"
        table.add_row(
            r["site"],
            str(r["rows"]),
            count_text(r["positives"]),
            count_text(r["negatives"]),
            count_text(r["rowsWithoutOutcome"]),
            count_text(r["rowsDroppedMissing"]),
            missing,
            ", ".join(r["droppedColumns"]) or "-",
            ", ".join(r["disclosure"]["withheld"]) or "-",
        )
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    if any(r["disclosure"]["suppressed"] or r["disclosure"]["withheld"] for r in reports):
        console.print(
            "[dim]suppressed: a count under the site's cell minimum (its policy), or one "
            "that would give it away; metrics withheld: splits with an outcome class that "
            "small report no metrics[/]"
        )


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str)
    except (OSError, ValueError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"cannot read {path} ({type(exc).__name__})") from None


def cmd_predict(args: argparse.Namespace) -> int:
    from medfl.predict import predict, site_kept_layers

    table = _read_table(args.file)
    kept = site_kept_layers(args.run_dir)
    if kept:
        print(
            "medfl: warning: in this run each site kept its own "
            f"{', '.join(kept)} (personalization); model.pt holds them as they were at "
            "round 0, so these scores are not any site's model",
            file=sys.stderr,
        )
    scores = predict(args.run_dir, table, site=args.site)
    if args.id_column:
        if args.id_column not in table.columns:
            raise DataError(f"--id-column: {args.file} has no column {args.id_column!r}")
        scores.insert(0, args.id_column, table[args.id_column].to_numpy())
    if args.out:
        scores.to_csv(args.out, index_label="row")
        print(f"{len(scores)} prediction(s) written to {args.out}", file=sys.stderr)
    else:
        scores.to_csv(sys.stdout, index_label="row")
    return 0
