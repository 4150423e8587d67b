"""The submission Job's summary for the operator: rounds, rates (no counts), error."""

from __future__ import annotations

import json
from pathlib import Path

from medfl_operator._job import TERMINATION_ENV, _out_folder, summary, write_summary

RESULT = {
    "status": "failed",
    "error": "site hungary stopped answering",
    "rounds": [
        {"round": 1, "metrics": {"auc": 0.6}},
        {"round": 2, "metrics": {"auc": 0.7, "accuracy": 0.65, "tp": 13.0, "fn": 4.0}},
    ],
}


def test_the_summary_holds_rounds_rates_and_the_error_but_no_counts() -> None:
    assert summary(RESULT) == {
        "medflSummary": 1,
        "rounds": 2,
        "status": "failed",
        "metrics": {"accuracy": 0.65, "auc": 0.7},
        "error": "site hungary stopped answering",
    }


def test_the_summary_is_written_where_the_kubelet_reads_it(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "result.json").write_text(json.dumps(RESULT))
    log = tmp_path / "termination-log"
    args = ["submit", "spec.yaml", "--server", "s:9091", "--out", str(tmp_path / "run")]
    write_summary(_out_folder(args), {TERMINATION_ENV: str(log)})
    assert json.loads(log.read_text())["rounds"] == 2


def test_without_a_result_nothing_is_written_so_the_logs_speak(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    write_summary(tmp_path / "never-started", {TERMINATION_ENV: str(log)})
    assert not log.exists()


def test_a_search_summarises_its_best_run(tmp_path: Path) -> None:
    (tmp_path / "search" / "best").mkdir(parents=True)
    (tmp_path / "search" / "best" / "result.json").write_text(json.dumps(RESULT))
    log = tmp_path / "termination-log"
    args = ["tune", "spec.yaml", "--server", "s:9091", "--out", str(tmp_path / "search")]

    assert _out_folder(args) == tmp_path / "search" / "best"
    write_summary(_out_folder(args), {TERMINATION_ENV: str(log)})
    assert json.loads(log.read_text())["rounds"] == 2
