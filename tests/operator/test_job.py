"""The submission Job's summary for the operator: rounds, rates (no counts), error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from medfl_operator._job import (
    TERMINATION_ENV,
    Progress,
    _out_folder,
    print_result,
    ray_argv,
    summary,
    write_summary,
)

from medfl.k8s._joblog import last_progress, read_result

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


def test_progress_lines_carry_rounds_rates_and_privacy_and_say_each_change_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    progress = Progress(tmp_path)
    progress.check()  # no result.json yet: nothing said
    result = dict(RESULT, privacy={"sites": {"hungary": {"epsilon": 0.5, "delta": 1e-5}}})
    (tmp_path / "result.json").write_text(json.dumps(result))
    progress.check()
    progress.check()  # unchanged: said once
    (tmp_path / "result.json").write_text("{half writ")  # mid-write: skipped
    progress.check()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert last_progress("INFO x\n" + lines[0] + "\nINFO y\n") == {
        "rounds": 2,
        "metrics": {"accuracy": 0.65, "auc": 0.7},
        "privacySpent": {"hungary": {"delta": 1e-05, "epsilon": 0.5}},
    }


def test_result_json_goes_through_the_log_in_short_lines_and_comes_back_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = dict(RESULT, notes=[f"note {i} " + "x" * 50 for i in range(2000)])
    (tmp_path / "result.json").write_text(json.dumps(big))
    print_result(tmp_path)
    log = "INFO before\n" + capsys.readouterr().out + "INFO after\n"
    lines = [line for line in log.splitlines() if line.startswith("medfl-result ")]
    assert len(lines) > 1 and max(len(line) for line in lines) < 16 * 1024
    assert read_result(log) == big
    torn = "\n".join(line for line in log.splitlines() if not line.startswith("medfl-result 1/"))
    assert read_result(torn) is None
    assert read_result("INFO nothing here\n") is None


def test_a_rayjobs_entry_point_tunes_the_spec_from_its_environment(tmp_path: Path) -> None:
    spec = {"name": "x", "sites": [], "schema": {}}
    argv = ray_argv({"MEDFL_EXPERIMENT": json.dumps(spec)}, tmp_path)

    assert argv == [
        "tune", str(tmp_path / "experiment.json"),
        "--ray-address", "auto", "--out", str(tmp_path / "search"),
    ]  # fmt: skip
    assert json.loads((tmp_path / "experiment.json").read_text()) == spec
    assert _out_folder(argv) == tmp_path / "search" / "best"  # the summary: the best run's
