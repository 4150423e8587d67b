"""Every YAML under examples/ loads, validates against its data, and runs (one round)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medfl import load_experiment, run
from medfl.data import prepare_sites
from medfl.spec import KIND

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FILES = sorted([*EXAMPLES.rglob("*.yaml"), *EXAMPLES.rglob("*.yml")])
IDS = [str(p.relative_to(EXAMPLES)) for p in FILES]


def test_there_are_examples() -> None:
    assert FILES


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_example_loads_and_its_sites_validate(path: Path) -> None:
    experiment = load_experiment(path)
    tables = prepare_sites(experiment)
    assert [t.site for t in tables] == [s.name for s in experiment.sites]
    for table in tables:
        assert table.report.rows > 0, table.site
        assert table.report.positives > 0, table.site


@pytest.mark.parametrize("path", FILES, ids=IDS)
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


PAIRS = [
    (bare, manifest)
    for bare in FILES
    if not _is_manifest(bare)
    for manifest in FILES
    if manifest.parent == bare.parent and _is_manifest(manifest)
]


@pytest.mark.parametrize(
    ("bare", "manifest"), PAIRS, ids=[str(m.relative_to(EXAMPLES)) for _, m in PAIRS]
)
def test_manifest_example_equals_its_bare_twin(bare: Path, manifest: Path) -> None:
    assert load_experiment(manifest) == load_experiment(bare)
