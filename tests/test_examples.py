"""Every YAML under examples/ loads, validates against its data, and runs (one round)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medfl import load_experiment, run
from medfl.data import prepare_sites
from medfl.spec import KIND

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
YAML = sorted([*EXAMPLES.rglob("*.yaml"), *EXAMPLES.rglob("*.yml")])
POLICIES = [p for p in YAML if p.stem.endswith("policy")]  # a site's own file, not a spec
FILES = [p for p in YAML if p not in POLICIES]
IDS = [str(p.relative_to(EXAMPLES)) for p in FILES]


def test_there_are_examples() -> None:
    assert FILES
    assert POLICIES


@pytest.mark.parametrize("path", POLICIES, ids=[p.name for p in POLICIES])
def test_example_site_policy_loads(path: Path) -> None:
    from medfl.spec._policy import load_policy

    assert load_policy(path).disclosure.min_cell_count == 1


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_example_loads_and_its_sites_validate(path: Path) -> None:
    experiment = load_experiment(path)
    tables = prepare_sites(experiment)
    assert [t.site for t in tables] == [s.name for s in experiment.sites]
    for table in tables:
        assert table.report.rows > 0, table.site
        assert table.report.positives > 0, table.site


def _needs_an_earlier_run(path: Path) -> bool:
    """A transfer example starts from a run its own script makes first (tested below)."""
    pretrained = load_experiment(path).model.pretrained
    return pretrained is not None and not Path(pretrained.path).exists()


STANDALONE = [p for p in FILES if not _needs_an_earlier_run(p)]


def _one_round_case(path: Path) -> object:
    """Secure aggregation's example runs on Flower's simulation engine: it starts Ray."""
    secure = load_experiment(path).privacy.secure
    return pytest.param(path, marks=pytest.mark.ray) if secure else path


@pytest.mark.parametrize(
    "path",
    [_one_round_case(p) for p in STANDALONE],
    ids=[str(p.relative_to(EXAMPLES)) for p in STANDALONE],
)
def test_example_runs_one_round(path: Path, tmp_path: Path) -> None:
    experiment = load_experiment(path)
    short = experiment.model_copy(
        update={"training": experiment.training.model_copy(update={"rounds": 1})}
    )
    outcome = run(short, out=tmp_path / "run", baselines=False)
    assert outcome.result.status == "succeeded"
    assert outcome.result.final is not None
    assert outcome.result.final.metrics["auc"] is not None


def _is_manifest(path: Path) -> bool:
    return f"kind: {KIND}" in path.read_text()


PAIRS = [  # X.yaml and its Kubernetes twin federatedX.yaml
    (bare, manifest)
    for bare in FILES
    if not _is_manifest(bare)
    for manifest in FILES
    if manifest.parent == bare.parent
    and _is_manifest(manifest)
    and manifest.name == f"federated{bare.name}"
]


@pytest.mark.parametrize(
    ("bare", "manifest"), PAIRS, ids=[str(m.relative_to(EXAMPLES)) for _, m in PAIRS]
)
def test_manifest_example_equals_its_bare_twin(bare: Path, manifest: Path) -> None:
    assert load_experiment(manifest) == load_experiment(bare)


def test_transfer_learning_example_runs_end_to_end_and_reports_the_comparison(
    tmp_path: Path,
) -> None:
    """Its one command, on a copy of its folder (the script writes next to its files)."""
    import os
    import shutil
    import subprocess
    import sys

    folder = shutil.copytree(
        EXAMPLES / "transfer-learning",
        tmp_path / "example",
        ignore=shutil.ignore_patterns("source-run"),
    )
    env = {**os.environ, "MEDFL": f"{sys.executable} -m medfl", "FLWR_TELEMETRY_ENABLED": "0"}

    done = subprocess.run(
        ["bash", str(folder / "run.sh"), "--out", str(tmp_path / "transfer")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-2000:]
    source = json.loads((folder / "source-run" / "result.json").read_text())
    result = json.loads((tmp_path / "transfer" / "result.json").read_text())
    assert source["status"] == result["status"] == "succeeded"
    assert sorted(source["sites"]) == ["cleveland", "hungary"]
    assert sorted(result["sites"]) == ["switzerland", "va-long-beach"]
    assert result["model"]["pretrained"]["path"] == str(folder / "source-run")
    assert result["model"]["pretrained"]["loaded"] == [
        "hidden1.weight", "hidden1.bias", "output.weight", "output.bias",
    ]  # fmt: skip
    assert sorted(result["baselines"]) == ["local", "pooled", "pretrained", "scratch"]
    assert sorted(result["personalized"]["sites"]) == ["switzerland", "va-long-beach"]
    report = (tmp_path / "transfer" / "report.md").read_text()
    assert "| from scratch (all sites) |" in report
    assert "**Transfer:** from the pretrained weights auc" in report
    assert "## Personalised models" in report


GLMS = [p for p in FILES if load_experiment(p).glm.formula is not None]


@pytest.mark.parametrize("path", GLMS, ids=[str(p.relative_to(EXAMPLES)) for p in GLMS])
def test_glm_example_fits_and_converges(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medfl.cli import main

    assert main(["glm", str(path), "--json"]) == 0

    fit = json.loads(capsys.readouterr().out)
    assert fit["converged"] and fit["warnings"] == []
    assert fit["coefficients"][0]["term"] == "Intercept"
    assert fit["observations"] == 857
