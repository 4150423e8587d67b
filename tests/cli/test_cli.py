"""The `medfl` command: exit codes, output, and no traceback for a user's mistake."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from medfl.cli import main
from medfl.training import SiteWorker


def _site_frame(seed: int, n: int = 80) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.normal(55, 9, n).round(0)
    smoker = rng.choice(["yes", "no"], n)
    logit = 0.08 * (age - 55) + np.where(smoker == "yes", 1.0, -1.0)
    outcome = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"age": age, "smoker": smoker, "outcome": outcome})


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    sites = []
    for i, name in enumerate(["north", "south", "east"]):
        _site_frame(i).to_csv(tmp_path / f"{name}.csv", index=False)
        sites.append({"name": name, "data": {"source": "csv", "path": f"{name}.csv"}})
    spec = {
        "name": "cli-test",
        "sites": sites,
        "schema": {"target": {"column": "outcome"}, "numeric": ["age"], "categorical": ["smoker"]},
        "training": {"rounds": 3, "batchSize": 16, "learningRate": 0.1, "seed": 7},
        "evaluation": {"baselines": []},
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_run_succeeds_and_json_prints_result(spec_file, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", str(spec_file), "--out", str(out), "--json", "--quiet"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result["status"] == "succeeded"
    assert [r["round"] for r in result["rounds"]] == [1, 2, 3]
    assert json.loads((out / "result.json").read_text()) == result
    assert (out / "report.md").is_file() and (out / "curves.png").is_file()


def test_rounds_and_seed_override_the_spec(spec_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(["run", str(spec_file), "--out", str(out), "--rounds", "2", "--seed", "3", "--quiet"])
        == 0
    )
    assert len(json.loads((out / "result.json").read_text())["rounds"]) == 2
    assert yaml.safe_load((out / "experiment.yaml").read_text())["training"]["seed"] == 3


def test_invalid_spec_exits_3_naming_the_path(spec_file, capsys):
    spec = yaml.safe_load(spec_file.read_text())
    spec["sites"][1]["data"]["pth"] = spec["sites"][1]["data"].pop("path")
    spec_file.write_text(yaml.safe_dump(spec))
    code = main(["run", str(spec_file), "--quiet"])
    err = capsys.readouterr().err
    assert code == 3
    assert "sites[1].data.path: required field is missing" in err
    assert "sites[1].data.pth: unknown field" in err
    assert "Traceback" not in err


def test_missing_column_exits_3_naming_site_and_column(spec_file, tmp_path, capsys):
    _site_frame(1).drop(columns=["smoker"]).to_csv(tmp_path / "south.csv", index=False)
    code = main(["run", str(spec_file), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 3
    assert "site 'south': required column(s) missing: 'smoker'" in err
    assert json.loads((tmp_path / "run" / "result.json").read_text())["rounds"] == []


def test_site_failing_mid_run_exits_4_and_keeps_finished_rounds(
    spec_file, tmp_path, capsys, monkeypatch
):
    real_fit = SiteWorker.fit

    def flaky(self, server_round, params):
        if self.name == "east" and server_round == 3:
            raise RuntimeError("disk unplugged")
        return real_fit(self, server_round, params)

    monkeypatch.setattr(SiteWorker, "fit", flaky)
    out = tmp_path / "run"
    code = main(["run", str(spec_file), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    assert code == 4
    assert "east: RuntimeError: disk unplugged" in err
    assert result["status"] == "failed"
    assert "minSites is 3" in result["error"]
    assert [r["round"] for r in result["rounds"]] == [1, 2]


def test_interrupt_exits_130(spec_file, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("medfl.runners.run", interrupted)
    assert main(["run", str(spec_file), "--quiet"]) == 130
    assert "interrupted" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["run"],
        ["run", "a.yaml", "--engine", "warp"],
        ["run", "a.yaml", "--rounds", "0"],
        ["frobnicate"],
        ["predict", "only-one-arg"],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_validate_prints_a_table_per_site(spec_file, capsys):
    assert main(["validate", str(spec_file), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["site"] for s in report["sites"]] == ["north", "south", "east"]
    assert all(s["rows"] == 80 for s in report["sites"])


def test_predict_scores_new_patients_like_the_sites(spec_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(spec_file), "--out", str(out), "--quiet"]) == 0
    patients = _site_frame(9, n=5).drop(columns=["outcome"])[["smoker", "age"]]  # other order
    patients.to_csv(tmp_path / "new.csv", index=False)
    capsys.readouterr()
    assert main(["predict", str(out), str(tmp_path / "new.csv")]) == 0
    scores = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert list(scores.columns) == ["row", "probability", "prediction"]
    assert len(scores) == 5
    assert scores["probability"].between(0, 1).all()
    assert (scores["prediction"] == (scores["probability"] >= 0.5)).all()


def test_predict_names_a_missing_column(spec_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(spec_file), "--out", str(out), "--quiet"]) == 0
    _site_frame(9, n=5)[["age"]].to_csv(tmp_path / "new.csv", index=False)
    assert main(["predict", str(out), str(tmp_path / "new.csv")]) == 3
    assert "required column(s) missing: 'smoker'" in capsys.readouterr().err


def test_the_installed_command_reports_its_version():
    done = subprocess.run(
        [sys.executable, "-m", "medfl", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert done.stdout.strip() == "medfl 0.1.0"


def test_validate_names_every_bad_site_and_exits_3(spec_file, tmp_path, capsys):
    (tmp_path / "south.csv").write_text("")
    (tmp_path / "east.csv").unlink()
    assert main(["validate", str(spec_file)]) == 3
    err = capsys.readouterr().err
    assert "site 'south': data file is empty" in err
    assert "site 'east': data file not found" in err


def test_validate_warns_about_an_empty_site_that_min_sites_allows(spec_file, tmp_path, capsys):
    spec = yaml.safe_load(spec_file.read_text())
    spec["strategy"] = {"name": "fedavg", "minSites": 2}
    spec_file.write_text(yaml.safe_dump(spec))
    (tmp_path / "south.csv").write_text("")
    assert main(["validate", str(spec_file)]) == 0
    err = capsys.readouterr().err
    assert "warning: skipped (minSites 2 allows it): site 'south': data file is empty" in err
    assert "valid (2 site(s) ready)" in err


def test_predict_with_site_applies_its_missing_spellings(spec_file, tmp_path, capsys):
    spec = yaml.safe_load(spec_file.read_text())
    spec["sites"][0]["naValues"] = ["-999"]
    spec_file.write_text(yaml.safe_dump(spec))
    out = tmp_path / "run"
    assert main(["run", str(spec_file), "--out", str(out), "--quiet"]) == 0
    pd.DataFrame({"age": ["-999", ""], "smoker": ["yes", "yes"]}).to_csv(
        tmp_path / "new.csv", index=False
    )
    capsys.readouterr()
    assert main(["predict", str(out), str(tmp_path / "new.csv"), "--site", "north"]) == 0
    scores = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert scores["probability"][0] == scores["probability"][1]  # both imputed the same way


def test_out_folder_holding_a_run_is_refused(spec_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(spec_file), "--out", str(out), "--quiet"]) == 0
    assert main(["run", str(spec_file), "--out", str(out), "--quiet", "--seed", "9"]) == 2
    assert f"{out} already holds a run: continue it with --resume {out}" in capsys.readouterr().err
    assert yaml.safe_load((out / "experiment.yaml").read_text())["training"]["seed"] == 7


def test_out_that_is_a_file_is_a_usage_error_not_a_traceback(spec_file, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(["run", str(spec_file), "--out", str(tmp_path / "afile"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot create the run directory" in err and "Traceback" not in err


def test_resume_takes_more_rounds_but_not_another_seed(spec_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(spec_file), "--out", str(out), "--quiet"]) == 0
    assert main(["run", "--resume", str(out), "--seed", "1", "--quiet"]) == 2
    assert main(["run", "--resume", str(out), "--rounds", "5", "--quiet"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert [r["round"] for r in result["rounds"]] == [1, 2, 3, 4, 5]
    assert main(["run", "--resume", str(out), "--rounds", "2", "--quiet"]) == 2
    assert "already finished (5 rounds)" in capsys.readouterr().err


def test_json_prints_the_failed_result_too(spec_file, tmp_path, capsys):
    (tmp_path / "east.csv").unlink()
    assert main(["run", str(spec_file), "--out", str(tmp_path / "run"), "--json", "-q"]) == 3
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "failed"
    assert "site 'east': data file not found" in result["error"]


def test_a_bad_seed_names_the_option(capsys):
    with pytest.raises(SystemExit):
        main(["run", "a.yaml", "--seed", "abc"])
    assert "argument --seed: invalid seed value: 'abc'" in capsys.readouterr().err


def test_predict_can_carry_an_id_column(spec_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(spec_file), "--out", str(out), "--quiet"]) == 0
    patients = _site_frame(9, n=3).drop(columns=["outcome"]).assign(pid=["p7", "p8", "p9"])
    patients.to_csv(tmp_path / "new.csv", index=False)
    capsys.readouterr()
    assert main(["predict", str(out), str(tmp_path / "new.csv"), "--id-column", "pid"]) == 0
    scores = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert list(scores.columns) == ["row", "pid", "probability", "prediction"]
    assert list(scores["pid"]) == ["p7", "p8", "p9"]


def test_resuming_a_finished_run_says_so(spec_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(spec_file), "--out", str(out), "--quiet"]) == 0
    assert main(["run", "--resume", str(out), "--quiet"]) == 2
    assert f"{out} already finished (3 rounds)" in capsys.readouterr().err


def test_validate_lists_the_models_tensors_and_what_each_does(spec_file, capsys):
    spec = yaml.safe_load(spec_file.read_text())
    spec["model"] = {"type": "mlp", "hidden": [4], "freeze": ["hidden1"]}
    spec_file.write_text(yaml.safe_dump(spec))

    assert main(["validate", str(spec_file), "--json"]) == 0

    model = json.loads(capsys.readouterr().out)["model"]
    assert [(la["name"], la["role"]) for la in model["layers"]] == [
        ("hidden1.weight", "frozen"),
        ("hidden1.bias", "frozen"),
        ("output.weight", "sent"),
        ("output.bias", "sent"),
    ]
    assert (model["valuesSent"], model["valuesTotal"]) == (
        5,
        4 * model["layers"][0]["shape"][1] + 9,
    )


def test_validate_names_a_pretrained_layer_that_does_not_fit(spec_file, tmp_path, capsys):
    import torch

    torch.save({"weight": torch.zeros(1, 99), "bias": torch.zeros(1)}, tmp_path / "w.pt")
    spec = yaml.safe_load(spec_file.read_text())
    spec["model"] = {"type": "logistic", "pretrained": {"path": "w.pt"}}
    spec_file.write_text(yaml.safe_dump(spec))

    assert main(["validate", str(spec_file)]) == 3

    err = capsys.readouterr().err
    assert "model.pretrained.path: layer 'weight' is [1, 99] in the file but [1, " in err


def test_out_folder_of_a_run_that_failed_before_round_1_is_reused(spec_file, tmp_path, capsys):
    out = tmp_path / "run"
    spec = yaml.safe_load(spec_file.read_text())
    good = spec["schema"]["numeric"]
    spec["schema"]["numeric"] = ["no_such_column"]
    spec_file.write_text(yaml.safe_dump(spec))
    assert main(["run", str(spec_file), "--out", str(out), "--quiet"]) == 3
    spec["schema"]["numeric"] = good
    spec_file.write_text(yaml.safe_dump(spec))

    assert main(["run", str(spec_file), "--out", str(out), "--quiet"]) == 0

    assert json.loads((out / "result.json").read_text())["status"] == "succeeded"
    assert yaml.safe_load((out / "experiment.yaml").read_text())["schema"]["numeric"] == good


def test_predict_warns_when_the_sites_kept_layers_of_their_own(spec_file, tmp_path, capsys):
    spec = yaml.safe_load(spec_file.read_text())
    spec["model"] = {"type": "mlp", "hidden": [4]}
    spec["personalization"] = {"localLayers": ["output"]}
    spec_file.write_text(yaml.safe_dump(spec))
    out = tmp_path / "run"
    assert main(["run", str(spec_file), "--out", str(out), "--quiet"]) == 0
    _site_frame(9, n=3).drop(columns=["outcome"]).to_csv(tmp_path / "new.csv", index=False)
    capsys.readouterr()

    assert main(["predict", str(out), str(tmp_path / "new.csv")]) == 0

    assert capsys.readouterr().err.startswith(
        "medfl: warning: in this run each site kept its own output.weight, output.bias "
        "(personalization); model.pt holds them as they were at round 0"
    )


def test_glm_prints_the_fit_and_takes_formula_and_family_overrides(spec_file, capsys):
    assert main(["glm", str(spec_file), "--formula", "age ~ smoker", "--family", "gaussian",
                 "--json"]) == 0  # fmt: skip

    fit = json.loads(capsys.readouterr().out)
    assert (fit["family"], fit["formula"]) == ("gaussian", "age ~ smoker")
    assert [c["term"] for c in fit["coefficients"]] == ["Intercept", "smoker[T.yes]"]
    assert fit["observations"] == 240 and fit["converged"]


def test_glm_site_policy_must_name_a_site(spec_file, capsys):
    assert main(["glm", str(spec_file), "--site-policy", "nowhere=p.yaml"]) == 2

    assert "--site-policy 'nowhere=p.yaml': expected SITE=FILE with SITE one of" in (
        capsys.readouterr().err
    )


def test_stats_prints_table_1_and_json(spec_file, capsys):
    assert main(["stats", str(spec_file)]) == 0
    text = capsys.readouterr().out
    assert "Table 1" in text and "age, mean (SD)" in text and "smoker, n (%)" in text

    assert main(["stats", str(spec_file), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["overall"]["all"]["rows"] == 240
    assert sorted(report["sites"]) == ["east", "north", "south"]


def test_glm_site_policy_given_twice_is_refused(spec_file, tmp_path, capsys):
    (tmp_path / "p.yaml").write_text("disclosure: {minCellCount: 3}\n")
    argv = ["glm", str(spec_file), "--site-policy", f"north={tmp_path / 'p.yaml'}"]

    assert main([*argv, "--site-policy", f"north={tmp_path / 'p.yaml'}"]) == 2

    assert "--site-policy: site 'north' is given twice" in capsys.readouterr().err


def test_glm_on_the_deployment_refuses_an_out_folder_that_holds_a_run(spec_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(spec_file), "--out", str(out), "--quiet"]) == 0

    assert main(["glm", str(spec_file), "--backend", "local", "--out", str(out)]) == 2

    assert f"{out} already holds a run: choose another --out folder" in capsys.readouterr().err


def _with_privacy(spec_file: Path, **privacy: object) -> Path:
    spec = yaml.safe_load(spec_file.read_text())
    spec["privacy"] = {"mode": "local", "delta": 1e-5, **privacy}
    spec_file.write_text(yaml.safe_dump(spec))
    return spec_file


def test_a_local_dp_run_given_more_rounds_counts_every_step(spec_file, tmp_path, capsys):
    from medfl.privacy._accountant import epsilon_of

    out = tmp_path / "run"
    _with_privacy(spec_file, noiseMultiplier=2.0)
    assert main(["run", str(spec_file), "--out", str(out), "--quiet"]) == 0
    assert main(["run", "--resume", str(out), "--rounds", "5", "--quiet"]) == 0
    result = json.loads((out / "result.json").read_text())
    for site in result["privacy"]["sites"].values():
        per_round = site["plannedSteps"] // 5  # the plan is now for 5 rounds
        assert site["steps"] == 5 * per_round and site["roundsContributed"] == 5
        offline = epsilon_of("rdp", [(2.0, site["sampleRate"], 5 * per_round)], 1e-5)
        assert site["epsilon"] == pytest.approx(offline, abs=1e-9)


def test_more_rounds_for_a_target_epsilon_run_are_refused_naming_the_sites(
    spec_file, tmp_path, capsys
):
    out = tmp_path / "run"
    _with_privacy(spec_file, targetEpsilon=2.0)
    assert main(["run", str(spec_file), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["run", "--resume", str(out), "--rounds", "5", "--quiet"]) == 3
    err = capsys.readouterr().err
    for site in ("north", "south", "east"):
        assert f"site {site!r}: cannot resume this run: its DP plan differs" in err
    assert "Traceback" not in err
    # the refusal leaves the run as it was: its spec still asks for its own rounds
    assert yaml.safe_load((out / "experiment.yaml").read_text())["training"]["rounds"] == 3
