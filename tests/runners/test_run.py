"""A whole run with the fast engine: the run directory, result.json, resuming, the example."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medfl import load_experiment, run
from medfl.errors import DataError, RunNotFoundError, SpecError
from medfl.results import RunStore
from medfl.spec import parse_experiment
from tests.helpers import (
    assert_same_arrays,
    cut_before_round_2_checkpoint,
    interrupt_after,
    make_sites,
    model_arrays,
    read_result,
)

ROOT = Path(__file__).resolve().parents[2]
METRIC_NAMES = {
    "loss",
    "accuracy",
    "auc",
    "sensitivity",
    "specificity",
    "f1",
    "tp",
    "fp",
    "tn",
    "fn",
}


def test_run_directory_holds_spec_result_model_plots_and_report(tmp_path, run_fast) -> None:
    outcome = run_fast(make_sites(tmp_path))
    files = {p.name for p in outcome.run_dir.iterdir()}
    assert files >= {
        "experiment.yaml",
        "result.json",
        "checkpoint.npz",
        "model.pt",
        "model.npz",
        "preprocessing.json",
        "report.md",
        "curves.png",
    }
    assert load_experiment(outcome.run_dir / "experiment.yaml") == parse_experiment(
        make_sites(tmp_path)
    )
    preprocessing = json.loads((outcome.run_dir / "preprocessing.json").read_text())
    assert preprocessing["preprocessing"]["vocabulary"] == {
        "sex": ["female", "male"],
        "smoker": ["no", "yes"],
    }
    weights = model_arrays(outcome.run_dir)
    assert [w.shape for w in weights] == [(1, 6), (1,)]


def test_result_json_has_rounds_final_metrics_and_timings(tmp_path, run_fast) -> None:
    outcome = run_fast(make_sites(tmp_path))
    result = read_result(outcome.run_dir)
    assert result["schemaVersion"] == 1
    assert (result["name"], result["status"], result["error"], result["engine"]) == (
        "toy",
        "succeeded",
        None,
        "fast",
    )
    assert [r["round"] for r in result["rounds"]] == [1, 2, 3]
    for record in result["rounds"]:
        assert set(record["metrics"]) == METRIC_NAMES
        assert set(record["sites"]) == {"site-a", "site-b", "site-c"}
        site = record["sites"]["site-a"]
        assert (site["status"], site["numExamples"], site["steps"]) == ("ok", 120, 8)
        assert site["validationExamples"] == 40
        assert set(site["metrics"]) == METRIC_NAMES
    final = result["final"]
    assert {"accuracy", "auc", "loss"} <= set(final["metrics"])
    assert all(final["metrics"][m] is not None for m in ("accuracy", "auc", "loss"))
    assert {n: s["numExamples"] for n, s in final["sites"].items()} == {
        "site-a": 40,
        "site-b": 30,
        "site-c": 20,
    }
    assert final["metrics"]["accuracy"] == pytest.approx(
        sum(s["metrics"]["accuracy"] * s["numExamples"] for s in final["sites"].values()) / 90
    )
    assert result["baselines"] == {}
    assert set(result["timings"]) == {"setupSeconds", "trainingSeconds", "totalSeconds"}
    assert result["sites"]["site-a"]["rows"] == 200
    assert result["features"] == ["age", "bp", "sex=female", "sex=male", "smoker=no", "smoker=yes"]


def test_baselines_local_and_pooled_when_enabled(tmp_path, run_fast) -> None:
    spec = make_sites(tmp_path, evaluation={"baselines": ["local", "pooled"]})
    result = read_result(run_fast(spec, baselines=True).run_dir)
    assert set(result["baselines"]) == {"local", "pooled"}
    for kind in ("local", "pooled"):
        baseline = result["baselines"][kind]
        assert set(baseline["sites"]) == {"site-a", "site-b", "site-c"}
        assert baseline["metrics"]["auc"] is not None
    assert "baselineSeconds" in result["timings"]
    # the baselines train other models than the federation
    fed = result["final"]["sites"]["site-c"]["metrics"]["loss"]
    assert result["baselines"]["local"]["sites"]["site-c"]["metrics"]["loss"] != fed


def test_baselines_the_spec_asks_for_are_the_ones_computed(tmp_path, run_fast) -> None:
    spec = make_sites(tmp_path, evaluation={"baselines": ["pooled"]})
    assert set(read_result(run_fast(spec, baselines=True).run_dir)["baselines"]) == {"pooled"}


def test_runs_are_reproducible(tmp_path, run_fast) -> None:
    spec = make_sites(tmp_path, model={"type": "mlp", "hidden": [8], "dropout": 0.1})
    first = run_fast(spec, out="first")
    second = run_fast(spec, out="second")
    assert_same_arrays(model_arrays(first.run_dir), model_arrays(second.run_dir))
    changed = make_sites(tmp_path, training={"seed": 8})
    third = run_fast(changed, out="third")
    assert not np.array_equal(model_arrays(first.run_dir)[0], model_arrays(third.run_dir)[0])


def test_custom_model_by_import_path_trains(tmp_path, run_fast) -> None:
    spec = make_sites(
        tmp_path,
        model={
            "type": "custom",
            "importPath": "tests.helpers_models:TinyMlp",
            "kwargs": {"width": 3},
        },
    )
    outcome = run_fast(spec)
    assert [w.shape for w in model_arrays(outcome.run_dir)] == [(3, 6), (3,), (1, 3), (1,)]


@pytest.mark.parametrize(
    ("model", "path", "fragment"),
    [
        ({"importPath": "tests.nowhere:Model"}, "model.importPath", "cannot import"),
        ({"importPath": "tests.helpers_models:Missing"}, "model.importPath", "cannot import"),
        ({"importPath": "tests.helpers_models:NotAModule"}, "model.importPath", "torch.nn.Module"),
        (
            {"importPath": "tests.helpers_models:TinyMlp", "kwargs": {"depth": 2}},
            "model.kwargs",
            "rejected its arguments",
        ),
    ],
)
def test_bad_custom_model_is_a_spec_error(tmp_path, run_fast, model, path, fragment) -> None:
    spec = make_sites(tmp_path, model={"type": "custom", **model})
    with pytest.raises(SpecError) as exc:
        run_fast(spec)
    [(where, message)] = exc.value.problems
    assert where == path
    assert fragment in message


# --- resume --------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["fedavg", "fedadam", "fedprox"])
def test_resumed_run_reaches_the_same_weights_as_an_uninterrupted_one(
    tmp_path, run_fast, strategy
) -> None:
    spec = make_sites(tmp_path, training={"rounds": 4}, strategy={"name": strategy})
    whole = run_fast(spec, out="whole")
    with pytest.raises(KeyboardInterrupt):
        run_fast(spec, out="cut", progress=interrupt_after(2))
    cut = tmp_path / "cut"
    stopped = read_result(cut)
    assert (stopped["status"], stopped["error"]) == ("failed", "interrupted")
    assert [r["round"] for r in stopped["rounds"]] == [1, 2]
    assert "interrupted" in (cut / "report.md").read_text()
    resumed = run(resume=cut, baselines=False)
    assert resumed.run_dir == cut
    assert_same_arrays(model_arrays(whole.run_dir), model_arrays(cut))
    result = read_result(cut)
    assert (result["status"], result["error"]) == ("succeeded", None)
    assert [r["round"] for r in result["rounds"]] == [1, 2, 3, 4]
    assert result["rounds"][:2] == stopped["rounds"]
    assert result["final"] == read_result(whole.run_dir)["final"]


def test_resume_when_the_checkpoint_lags_result_json(tmp_path, run_fast) -> None:
    # killed after result.json recorded round 2 but before the round-2 checkpoint landed
    spec = make_sites(tmp_path, training={"rounds": 3}, strategy={"name": "fedadam"})
    whole = run_fast(spec, out="whole")
    cut = tmp_path / "cut"
    cut_before_round_2_checkpoint(run_fast, spec, cut)
    run(resume=cut, baselines=False)
    assert_same_arrays(model_arrays(whole.run_dir), model_arrays(cut))
    assert [r["round"] for r in read_result(cut)["rounds"]] == [1, 2, 3]


def test_resume_keeps_using_the_data_the_run_started_with(tmp_path, run_fast, monkeypatch) -> None:
    # relative paths in an Experiment built in Python are relative to the working directory
    monkeypatch.chdir(tmp_path)
    spec = make_sites(tmp_path, training={"rounds": 3})
    for site in spec["sites"]:
        site["data"]["path"] = str(Path(site["data"]["path"]).relative_to(tmp_path))
    whole = run_fast(spec, out="whole")
    with pytest.raises(KeyboardInterrupt):
        run_fast(spec, out="cut", progress=interrupt_after(1))
    run(resume=tmp_path / "cut", baselines=False)
    assert_same_arrays(model_arrays(whole.run_dir), model_arrays(tmp_path / "cut"))


def test_resume_without_a_checkpoint_says_so(tmp_path, run_fast) -> None:
    spec = make_sites(tmp_path)
    data = Path(spec["sites"][0]["data"]["path"])
    data.rename(data.with_suffix(".away"))
    with pytest.raises(DataError, match="data file not found"):
        run_fast(spec)  # fails before round 1: no checkpoint
    data.with_suffix(".away").rename(data)
    with pytest.raises(RunNotFoundError, match="has no checkpoint to resume from"):
        run(resume=tmp_path / "run", baselines=False)


def test_resume_of_a_folder_that_is_no_run_says_so(tmp_path) -> None:
    with pytest.raises(RunNotFoundError, match="is not a medfl run directory"):
        run(resume=tmp_path, baselines=False)


def test_run_needs_an_experiment_or_a_run_to_resume() -> None:
    with pytest.raises(ValueError, match="give an experiment or a run directory to resume"):
        run()


def test_store_reads_back_what_it_wrote(tmp_path, run_fast) -> None:
    outcome = run_fast(make_sites(tmp_path))
    store = RunStore(outcome.run_dir)
    assert store.load_result() == outcome.result
    params, optimizer, rounds = store.load_checkpoint()
    assert_same_arrays(params, model_arrays(outcome.run_dir))
    assert optimizer["step"] == 3
    assert rounds == outcome.result.rounds


# --- the heart-disease example ------------------------------------------------


def test_heart_disease_example_beats_chance_and_reports_baselines(tmp_path) -> None:
    experiment = load_experiment(ROOT / "examples" / "heart-disease" / "experiment.yaml")
    outcome = run(experiment, out=tmp_path / "hd")
    result = read_result(outcome.run_dir)
    assert result["status"] == "succeeded"
    assert {n: r["rows"] for n, r in result["sites"].items()} == {
        "cleveland": 303,
        "hungary": 294,
        "switzerland": 123,
        "va-long-beach": 200,
    }
    final = result["final"]["metrics"]
    assert final["auc"] > 0.78  # measured 0.84; pooled and local baselines 0.83
    positives = sum(r["positives"] for r in result["sites"].values())
    majority = max(positives, 920 - positives) / 920
    assert final["accuracy"] > majority + 0.1
    assert set(result["baselines"]) == {"local", "pooled"}
    assert result["baselines"]["pooled"]["metrics"]["auc"] > 0.75
    assert len(result["rounds"]) == experiment.training.rounds


def test_a_local_dp_resume_whose_site_data_changed_is_refused_naming_the_site(
    tmp_path, run_fast
) -> None:
    spec = make_sites(
        tmp_path,
        training={"rounds": 3},
        privacy={"mode": "local", "noiseMultiplier": 2.0, "delta": 1e-5},
    )
    with pytest.raises(KeyboardInterrupt):
        run_fast(spec, out="cut", progress=interrupt_after(2))
    cut = tmp_path / "cut"
    stopped = read_result(cut)
    was = stopped["privacy"]["sites"]["site-c"]["sampleRate"]
    data = Path(spec["sites"][2]["data"]["path"])
    original = data.read_text()
    data.write_text("".join(original.splitlines(keepends=True)[:-30]))  # 30 rows fewer

    with pytest.raises(DataError) as refused:
        run(resume=cut, baselines=False)

    message = str(refused.value)
    assert refused.value.site == "site-c"
    assert message.startswith(
        "site 'site-c': cannot resume this run: its DP plan differs from the one the run "
        f"began with (noise multiplier 2.0 then, 2.0 now; sample rate {was!r} then, "
    )
    assert message.endswith(
        "training rows now): its data or the experiment changed since (more rounds "
        "change a noise calibrated for targetEpsilon); start a new run"
    )
    kept = read_result(cut)  # the refusal keeps what the run did, and the ε it spent
    assert (kept["status"], kept["errorKind"]) == ("failed", "DataError")
    assert kept["rounds"] == stopped["rounds"] and kept["privacy"] == stopped["privacy"]
    data.write_text(original)
    assert run(resume=cut, baselines=False).result.status == "succeeded"
