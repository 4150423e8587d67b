"""What a search writes: the trials table, the best configuration as a ready-to-run
spec, plots, tuning.json and a report."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import yaml

from medfl.results import RunResult
from medfl.spec import Experiment
from medfl.tuning._search import SearchResult, TrialRow

TRIALS_FILE = "trials.csv"
BEST_FILE = "best.yaml"
TUNING_FILE = "tuning.json"
REPORT_FILE = "report.md"


def write_trials(result: SearchResult, path: Path) -> None:
    names = list(result.tuning.space)
    with path.open("w", newline="", encoding="utf-8") as out:
        table = csv.writer(out)
        table.writerow(
            ["trial", "status", result.tuning.metric, "rounds", "seconds", *names, "reason"]
        )
        for r in result.rows:
            params = [json.dumps(r.params.get(n)) for n in names]
            value = "" if r.value is None else f"{r.value:.6g}"
            table.writerow(
                [r.number, r.status, value, r.rounds, f"{r.seconds:.2f}", *params, r.reason]
            )


def best_spec_text(best: Experiment, row: TrialRow, source: str) -> str:
    """The best trial's experiment as YAML (``medfl run`` it as it is)."""
    doc = {k: v for k, v in best.to_wire().items() if k != "tuning"}
    said = ", ".join(f"{k}: {json.dumps(v)}" for k, v in row.params.items())
    head = f"# The best configuration of the search over {source} (trial {row.number}: {said}).\n"
    return head + yaml.safe_dump(doc, sort_keys=False)


def summary(result: SearchResult, best: TrialRow, final: RunResult) -> dict[str, Any]:
    default = next((r for r in result.rows if result.default and r.params == result.default), None)
    return {
        "metric": result.tuning.metric,
        "direction": result.tuning.direction,
        "seconds": result.seconds,
        "trialsPerMinute": 60 * len(result.rows) / result.seconds if result.seconds else None,
        "trials": [_row_dict(r) for r in result.rows],
        "best": _row_dict(best),
        "default": None if default is None else _row_dict(default),
        "testReads": {"trials": sum(r.test_reads for r in result.rows), "bestRun": "once"},
        "test": None if final.final is None else final.final.metrics,
        "notes": result.notes,
    }


def _row_dict(r: TrialRow) -> dict[str, Any]:
    return {
        "trial": r.number, "status": r.status, "value": r.value, "rounds": r.rounds,
        "seconds": r.seconds, "params": r.params, "testReads": r.test_reads, "reason": r.reason,
    }  # fmt: skip


def plot(result: SearchResult, folder: Path) -> list[Path]:
    """The metric per trial, and each parameter's importance (Optuna's fANOVA)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [folder / "trials.png"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for status, marker in (("completed", "o"), ("pruned", "x"), ("failed", "s")):
        shown = [(r.number, r.value) for r in result.rows if r.status == status and r.value]
        ax.scatter([n for n, _ in shown], [v for _, v in shown], marker=marker, label=status)
    ax.set(xlabel="trial", ylabel=f"validation {result.tuning.metric}", title="trials")
    ax.legend()
    fig.tight_layout()
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)
    importance = _importance(result)
    if importance:
        paths.append(folder / "importance.png")
        fig, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * len(importance)))
        ax.barh(list(importance), list(importance.values()))
        ax.set(xlabel="importance (fANOVA)", title="parameters")
        fig.tight_layout()
        fig.savefig(paths[1], dpi=100)
        plt.close(fig)
    return paths


def _importance(result: SearchResult) -> dict[str, float]:
    """Optuna's parameter importances over the completed trials (needs two or more)."""
    import optuna

    from medfl.tuning._space import encoded, optuna_space

    done = [r for r in result.rows if r.status == "completed" and r.value is not None]
    if len(done) < 2 or len(result.tuning.space) < 2:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize" if result.tuning.direction == "max" else "minimize"
    )
    space = optuna_space(result.tuning)
    for r in done:
        params = encoded(result.tuning, r.params)
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=space, value=r.value)
        )
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    try:
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except (RuntimeError, ValueError):  # e.g. every trial scored the same
        return {}


def report(result: SearchResult, best: TrialRow, final: RunResult, plots: list[Path]) -> str:
    metric, space = result.tuning.metric, list(result.tuning.space)
    counts = {s: sum(r.status == s for r in result.rows) for s in ("completed", "pruned", "failed")}
    lines = [
        f"# {final.name}: hyperparameter search",
        "",
        f"{len(result.rows)} trials in {result.seconds:.0f} s ({counts['completed']} completed, "
        f"{counts['pruned']} stopped early, {counts['failed']} failed), scored by the "
        f"federation's validation {metric} ({result.tuning.direction}); no trial read a "
        "test split.",
        "",
        f"**Best:** trial {best.number}, validation {metric} {best.value:.3f}: "
        + ", ".join(f"`{k}` = {_shown(v)}" for k, v in best.params.items()),
    ]
    default = next((r for r in result.rows if result.default and r.params == result.default), None)
    if default is not None and default.value is not None:
        lines.append(f"(the configuration as written, trial {default.number}: {default.value:.3f})")
    if final.final is not None:
        shown = ", ".join(
            f"{m} {final.final.metrics.get(m) or float('nan'):.3f}" for m in ("accuracy", "auc")
        )
        lines += ["", f"Trained once more and evaluated on the test splits, once: {shown} "
                  f"([report](best/report.md), spec: `{BEST_FILE}`)."]  # fmt: skip
    lines += [
        "",
        "## Trials",
        "",
        f"| trial | status | {metric} | rounds | " + " | ".join(space) + " |",
    ]
    lines.append("|---" * (4 + len(space)) + "|")
    for r in result.rows:
        value = "" if r.value is None else f"{r.value:.3f}"
        params = " | ".join(_shown(r.params.get(n)) for n in space)
        lines.append(f"| {r.number} | {r.status} | {value} | {r.rounds} | {params} |")
    failed = [r for r in result.rows if r.status == "failed"]
    if failed:
        lines += ["", "Failed trials:", ""] + [f"- trial {r.number}: {r.reason}" for r in failed]
    lines += [""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return "\n".join(lines)


def _shown(value: Any) -> str:
    """A value as the report shows it: floats to 4 significant digits (trials.csv and
    best.yaml keep them whole)."""
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)
