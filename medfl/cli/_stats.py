"""``medfl glm``: a federated GLM, printed like statsmodels' summary."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from medfl.cli._deploy import add_backend, add_site_policy, site_policies
from medfl.errors import UsageError
from medfl.spec import Experiment, load_experiment
from medfl.spec._policy import PolicyFiles, SitePolicy, load_policies
from medfl.stats import glm_dict


def _common(parser: argparse.ArgumentParser) -> None:
    add_site_policy(parser)
    add_backend(parser)
    parser.add_argument("--out", type=Path, help="--backend local: the run directory")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    glm = sub.add_parser("glm", help="fit a federated GLM (exact, with standard errors)")
    glm.add_argument("file", type=Path, help="experiment YAML; its glm: section, if any")
    glm.add_argument("--formula", help="override glm.formula, e.g. 'num ~ age + sex + C(cp)'")
    glm.add_argument("--family", choices=["binomial", "poisson", "gaussian"])
    _common(glm)
    glm.set_defaults(handler=cmd_glm)
    stats = sub.add_parser("stats", help="describe the cohort (Table 1), by site and overall")
    stats.add_argument("file", type=Path, help="experiment YAML; its statistics: section, if any")
    _common(stats)
    stats.set_defaults(handler=cmd_stats)


def _with_overrides(experiment: Experiment, args: argparse.Namespace) -> Experiment:
    changes = {k: v for k, v in (("formula", args.formula), ("family", args.family)) if v}
    if not changes:
        return experiment
    return experiment.model_copy(update={"glm": experiment.glm.model_copy(update=changes)})


def cmd_glm(args: argparse.Namespace) -> int:
    experiment = _with_overrides(load_experiment(args.file), args)
    policies = site_policies(args, experiment)
    if args.backend == "local":
        fit = _deployed(experiment, args, "glm", policies)
    else:
        fit = _fit_here(experiment, load_policies(policies))
    fit = {"formula": experiment.glm.formula, "sites": [s.name for s in experiment.sites], **fit}
    if args.json:
        print(json.dumps(fit, indent=2))
    else:
        _print(fit, experiment)
    for warning in fit["warnings"]:
        print(f"medfl: warning: {warning}", file=sys.stderr)
    return 0


def _fit_here(experiment: Experiment, policies: dict[str, SitePolicy]) -> dict:
    from medfl.stats._federated import InProcessStats, fit_glm

    return glm_dict(fit_glm(experiment, InProcessStats(experiment, policies)))


def _deployed(
    experiment: Experiment, args: argparse.Namespace, job: str, policies: PolicyFiles
) -> dict:
    """Over Flower's deployment engine; the ServerApp writes glm.json or stats.json in
    the run folder."""
    from medfl.results import RunStore, new_run_dir
    from medfl.runners import LocalBackend
    from medfl.runners._local import run_local
    from medfl.stats._federated import GLM_FILE, STATS_FILE

    store = RunStore(args.out or new_run_dir(experiment.name))
    if (store.path / "result.json").exists():
        raise UsageError(f"{store.path} already holds a run: choose another --out folder")
    store.create(experiment)
    backend = LocalBackend(insecure=args.insecure, site_policies=policies)
    run_local(experiment, backend, store, False, None, job=job)
    print(f"medfl: run directory: {store.path}", file=sys.stderr)
    return json.loads((store.path / (GLM_FILE if job == "glm" else STATS_FILE)).read_text())


def cmd_stats(args: argparse.Namespace) -> int:
    from medfl.stats._federated import InProcessStats, StatsReport, describe_federation
    from medfl.stats._table1 import table1

    experiment = load_experiment(args.file)
    policies = site_policies(args, experiment)
    if args.backend == "local":
        report = StatsReport.from_dict(_deployed(experiment, args, "stats", policies))
    else:
        transport = InProcessStats(experiment, load_policies(policies))
        report = describe_federation(experiment, transport)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    header, rows = table1(report)
    out = Table(title=f"{experiment.name}: Table 1", title_justify="left")
    for i, column in enumerate(header):
        out.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        out.add_row(*row)
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(out)
    _print_correlation(report, console)
    notes = report.overall["all"].suppressed
    if notes:
        console.print(
            f"[dim]{len(notes)} suppression(s) by the sites' policies (--json lists them); "
            "≥: a site withheld its count; medians and IQRs from histograms on shared bins[/]"
        )
    if report.privacy:
        console.print(
            f"[dim]noised: each site added Laplace noise, epsilon {report.privacy['epsilon']:g} "
            f"per patient over {report.privacy['queries']} queries; figures are not exact, "
            "ranges are to a bin (--json has the plan and what epsilon covers)[/]"
        )
    return 0


def _print(fit: dict, experiment: Experiment) -> None:
    rows = fit["coefficients"]
    out = Table(
        title=f"{experiment.name}: {fit['family']} GLM, {fit['observations']} rows at "
        f"{len(experiment.sites)} sites",
        title_justify="left",
    )
    columns = [c for c in rows[0] if c != "term"]
    out.add_column("term")
    for column in columns:
        out.add_column(column, justify="right")
    for row in rows:
        out.add_row(row["term"], *(_cell(c, row[c]) for c in columns))
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(out)
    console.print(
        f"deviance {fit['deviance']:.4f}, log-likelihood {fit['logLikelihood']:.4f}, AIC "
        f"{fit['aic']:.4f}, scale {fit['scale']:.4g}; {fit['iterations']} IRLS iterations, "
        f"{'converged' if fit['converged'] else 'NOT converged'}"
    )


def _cell(column: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if column == "p":
        return "<0.0001" if value < 1e-4 else f"{value:.4f}"
    return f"{value:.4f}"


def _print_correlation(report, console: Console) -> None:  # type: ignore[no-untyped-def]
    comoments = report.overall["all"].comoments
    if comoments is None or comoments.n < 2:
        return
    out = Table(title=f"correlation (Pearson), {comoments.n} complete rows", title_justify="left")
    out.add_column("")
    for column in comoments.columns:
        out.add_column(column, justify="right")
    for column, row in comoments.correlation.iterrows():
        out.add_row(str(column), *(f"{v:.3f}" for v in row))
    console.print(out)
