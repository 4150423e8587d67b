"""A readable Markdown report of a run, for the researcher who reads no JSON."""

from __future__ import annotations

from pathlib import Path

from medfl.results._model import Evaluation, RunResult
from medfl.spec import Experiment

SHOWN = ("accuracy", "auc", "sensitivity", "specificity", "f1", "loss")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _table(rows: dict[str, dict[str, float | None]], first: str) -> list[str]:
    lines = [f"| {first} | " + " | ".join(SHOWN) + " |", "|---" * (len(SHOWN) + 1) + "|"]
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(metrics.get(m)) for m in SHOWN) + " |")
    return lines


def _evaluation_rows(label: str, ev: Evaluation) -> dict[str, dict[str, float | None]]:
    rows = {f"{label} (all sites)": ev.metrics, f"{label} (mean over sites)": ev.mean_over_sites}
    return rows


def render_report(result: RunResult, experiment: Experiment, plots: list[Path]) -> str:
    lines = [f"# {result.name}: {result.status}", ""]
    if result.error:
        lines += ["**The run failed:**", "", "```", result.error, "```", ""]
    strategy = experiment.strategy.name
    lines += [
        f"Engine `{result.engine}`, strategy `{strategy}`, model `{experiment.model.type}`, "
        f"{len(result.rounds)} of {experiment.training.rounds} rounds, "
        f"{len(result.sites)} site(s), {len(result.features)} input features.",
        "",
        "## Sites",
        "",
        "| site | rows | positive | negative | without outcome | dropped (missing) "
        "| columns dropped |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rep in result.sites.items():
        lines.append(
            f"| {name} | {rep['rows']} | {rep['positives']} | {rep['negatives']} | "
            f"{rep['rowsWithoutOutcome']} | {rep['rowsDroppedMissing']} | "
            f"{', '.join(rep['droppedColumns']) or '-'} |"
        )
    for name, why in result.excluded_sites.items():
        lines.append(f"| {name} | excluded: {why} | | | | | |")
    if result.final:
        lines += ["", "## Final model on the test splits", ""]
        rows = _evaluation_rows("federated", result.final)
        for kind, ev in result.baselines.items():
            rows |= _evaluation_rows(f"{kind} baseline", ev)
        lines += _table(rows, "model")
        lines += ["", "Per site (federated model):", ""]
        lines += _table({n: s.metrics for n, s in result.final.sites.items()}, "site")
    if result.rounds:
        last = result.rounds[-1]
        lines += ["", f"## Validation, round {last.round}", ""]
        lines += _table(
            {"federation": last.metrics, **{n: s.metrics for n, s in last.sites.items()}}, "site"
        )
        flagged = [
            (r.round, n, s) for r in result.rounds for n, s in r.sites.items() if s.status != "ok"
        ]
        if flagged:
            lines += ["", "## Sites flagged during training", ""]
            lines += [f"- round {r}: `{n}` {s.status}: {s.reason}" for r, n, s in flagged]
    if result.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in result.notes]
    if plots:
        lines += ["", "## Curves", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    lines += [
        "",
        "*All sites*: accuracy, sensitivity, specificity and F1 from the confusion counts "
        "summed over the sites (as if the test splits were pooled); AUC and loss are the "
        "example-weighted mean of the sites'. *Mean over sites*: each site counts once.",
        "",
        "Undefined metrics (for example AUC at a site with one outcome class) show "
        "as n/a and are left out of the federation's figures.",
        "",
    ]
    return "\n".join(lines)
