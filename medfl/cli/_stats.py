"""``medfl glm``: a federated GLM, printed like statsmodels' summary."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from medfl.errors import UsageError
from medfl.spec import Experiment, load_experiment
from medfl.spec._policy import SitePolicy, load_policy
from medfl.stats import GlmResult


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    glm = sub.add_parser("glm", help="fit a federated GLM (exact, with standard errors)")
    glm.add_argument("file", type=Path, help="experiment YAML; its glm: section, if any")
    glm.add_argument("--formula", help="override glm.formula, e.g. 'num ~ age + sex + C(cp)'")
    glm.add_argument("--family", choices=["binomial", "poisson", "gaussian"])
    glm.add_argument(
        "--site-policy",
        action="append",
        default=[],
        metavar="SITE=FILE",
        help="a simulated site's own policy file (repeatable); default limits otherwise",
    )
    glm.add_argument("--json", action="store_true", help="print the fit as JSON")
    glm.set_defaults(handler=cmd_glm)


def _policies(pairs: list[str], experiment: Experiment) -> dict[str, SitePolicy]:
    names = [s.name for s in experiment.sites]
    out = {}
    for pair in pairs:
        site, sep, path = pair.partition("=")
        if not sep or site not in names:
            raise UsageError(f"--site-policy {pair!r}: expected SITE=FILE with SITE one of {names}")
        out[site] = load_policy(path)
    return out


def _with_overrides(experiment: Experiment, args: argparse.Namespace) -> Experiment:
    changes = {k: v for k, v in (("formula", args.formula), ("family", args.family)) if v}
    if not changes:
        return experiment
    return experiment.model_copy(update={"glm": experiment.glm.model_copy(update=changes)})


def cmd_glm(args: argparse.Namespace) -> int:
    from medfl.stats._federated import InProcessStats, fit_glm

    experiment = _with_overrides(load_experiment(args.file), args)
    policies = _policies(args.site_policy, experiment)
    result = fit_glm(experiment, InProcessStats(experiment, policies))
    if args.json:
        print(json.dumps(glm_json(result, experiment), indent=2))
    else:
        _print(result, experiment)
    for warning in result.warnings_:
        print(f"medfl: warning: {warning}", file=sys.stderr)
    return 0


def _number(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else float(value)


def glm_json(result: GlmResult, experiment: Experiment) -> dict:
    table = result.summary
    values = table.to_numpy(dtype=float)
    rows = [
        {"term": name, **{col: _number(v) for col, v in zip(table.columns, row, strict=True)}}
        for name, row in zip(result.names, values, strict=True)
    ]
    return {
        "family": result.family,
        "formula": experiment.glm.formula,
        "sites": [s.name for s in experiment.sites],
        "coefficients": rows,
        "deviance": result.deviance_,
        "logLikelihood": result.loglik_,
        "aic": result.aic_,
        "scale": result.scale_,
        "observations": result.nobs_,
        "iterations": result.iterations_,
        "converged": result.converged_,
        "warnings": result.warnings_,
    }


def _print(result: GlmResult, experiment: Experiment) -> None:
    table = result.summary
    out = Table(
        title=f"{experiment.name}: {result.family} GLM, {result.nobs_} rows at "
        f"{len(experiment.sites)} sites",
        title_justify="left",
    )
    for column in ["term", *table.columns]:
        out.add_column(column, justify="left" if column == "term" else "right")
    for name, row in zip(result.names, table.to_numpy(dtype=float), strict=True):
        out.add_row(name, *(_cell(c, v) for c, v in zip(table.columns, row, strict=True)))
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(out)
    console.print(
        f"deviance {result.deviance_:.4f}, log-likelihood {result.loglik_:.4f}, AIC "
        f"{result.aic_:.4f}, scale {result.scale_:.4g}; {result.iterations_} IRLS iterations, "
        f"{'converged' if result.converged_ else 'NOT converged'}"
    )


def _cell(column: str, value: float) -> str:
    if column == "p":
        return "<0.0001" if value < 1e-4 else f"{value:.4f}"
    return f"{value:.4f}"
