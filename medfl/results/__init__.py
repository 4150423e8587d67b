"""Run results: result.json's model, the run directory, plots and the report."""

from __future__ import annotations

from medfl.results._model import (
    SCHEMA_VERSION,
    Evaluation,
    RoundRecord,
    RunResult,
    SiteEvaluation,
    SiteRound,
)
from medfl.results._plots import plot_rounds
from medfl.results._report import render_report
from medfl.results._store import RunStore, new_run_dir
from medfl.spec import Experiment

REPORT_FILE = "report.md"


def write_outputs(store: RunStore, experiment: Experiment) -> None:
    """Plots and the report from whatever result.json holds (also for a failed run)."""
    result = store.load_result()
    plots = plot_rounds(result, store.path)
    (store.path / REPORT_FILE).write_text(render_report(result, experiment, plots))


__all__ = [
    "REPORT_FILE",
    "SCHEMA_VERSION",
    "Evaluation",
    "RoundRecord",
    "RunResult",
    "RunStore",
    "SiteEvaluation",
    "SiteRound",
    "new_run_dir",
    "plot_rounds",
    "render_report",
    "write_outputs",
]
