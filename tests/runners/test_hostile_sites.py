"""Sites that break: named before round 1, skipped when minSites allows, never poisoning
the global model; a failed run keeps its finished rounds and the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medfl.errors import DataError, TrainingError
from medfl.training import SiteWorker
from medfl.training._local import LocalUpdate
from tests.helpers import (
    assert_same_arrays,
    make_frames,
    make_sites,
    model_arrays,
    read_result,
    site_entry,
)


def break_site_b(tmp_path: Path, kind: str, **overrides) -> dict:
    """The toy spec with site-b's data broken in one way."""
    frames = make_frames()
    b = frames["site-b"]
    if kind == "no rows":
        frames["site-b"] = b.iloc[:0]  # the header alone
    elif kind == "no outcome":
        frames["site-b"] = b.assign(outcome=None)
    elif kind == "all rows dropped for missing values":
        frames["site-b"] = b.assign(bp=None)
        overrides.setdefault("schema", {})["missing"] = {"numeric": "drop"}
    spec = make_sites(tmp_path, frames=frames, **overrides)
    path = Path(site_entry(spec, "site-b")["data"]["path"])
    if kind == "missing file":
        path.unlink()
    elif kind == "empty file":
        path.write_bytes(b"")
    elif kind == "not utf-8":
        path.write_bytes(b"age,bp,sex,smoker,outcome\n\xff\xfe,1,2,3,4\n")
    elif kind == "corrupt parquet":
        site_entry(spec, "site-b")["data"] = {"source": "parquet", "path": str(path)}
        path.write_bytes(b"PAR1 not really")
    return spec


HOSTILE = {
    "missing file": "data file not found: ",
    "empty file": "data file is empty: ",
    "not utf-8": "cannot read ",
    "corrupt parquet": "cannot read ",
    "no rows": "no training rows (0 read, 0 without outcome, 0 dropped for missing values)",
    "no outcome": "no training rows (150 read, 150 without outcome, 0 dropped for missing values)",
    "all rows dropped for missing values": (
        "no training rows (150 read, 0 without outcome, 150 dropped for missing values)"
    ),
}


@pytest.mark.parametrize(("kind", "fragment"), HOSTILE.items(), ids=HOSTILE.keys())
def test_hostile_site_is_named_before_round_1(tmp_path, run_fast, kind, fragment) -> None:
    spec = break_site_b(tmp_path, kind)
    with pytest.raises(DataError) as exc:
        run_fast(spec)
    assert f"site 'site-b': {fragment}" in str(exc.value)
    result = read_result(tmp_path / "run")
    assert result["status"] == "failed"
    assert result["rounds"] == []
    assert f"site 'site-b': {fragment}" in result["error"]
    assert not (tmp_path / "run" / "model.npz").exists()
    assert "The run failed" in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.parametrize(
    "kind", ["empty file", "no rows", "no outcome", "all rows dropped for missing values"]
)
def test_empty_site_is_skipped_when_min_sites_allows(tmp_path, run_fast, kind) -> None:
    spec = break_site_b(tmp_path / "three", kind, strategy={"name": "fedavg", "minSites": 2})
    outcome = run_fast(spec, out="three")
    result = read_result(outcome.run_dir)
    assert result["status"] == "succeeded"
    assert list(result["excludedSites"]) == ["site-b"]
    assert result["excludedSites"]["site-b"].startswith(f"site 'site-b': {HOSTILE[kind]}")
    assert all(set(r["sites"]) == {"site-a", "site-c"} for r in result["rounds"])
    assert set(result["final"]["sites"]) == {"site-a", "site-c"}
    # the others train exactly as a federation without site-b would
    frames = make_frames()
    del frames["site-b"]
    two = run_fast(make_sites(tmp_path / "two", frames=frames), out="two")
    assert_same_arrays(model_arrays(outcome.run_dir), model_arrays(two.run_dir))
    assert result["rounds"][0]["sites"]["site-a"]["numExamples"] == 120  # 200 - 40 - 40


def test_empty_site_fails_when_min_sites_needs_it(tmp_path, run_fast) -> None:
    spec = break_site_b(tmp_path, "no rows", strategy={"name": "fedavg", "minSites": 3})
    with pytest.raises(DataError) as exc:
        run_fast(spec)
    assert str(exc.value).startswith(
        "only 2 of 3 site(s) have usable data and minSites is 3: site 'site-b': no training rows"
    )


def test_unreadable_site_fails_even_when_min_sites_allows(tmp_path, run_fast) -> None:
    spec = break_site_b(tmp_path, "missing file", strategy={"name": "fedavg", "minSites": 1})
    with pytest.raises(DataError, match="site 'site-b': data file not found"):
        run_fast(spec)


def test_two_hostile_sites_are_both_named(tmp_path, run_fast) -> None:
    spec = break_site_b(tmp_path, "missing file")
    Path(site_entry(spec, "site-c")["data"]["path"]).write_bytes(b"a,b\n\xff\xfe,1\n")
    with pytest.raises(DataError) as exc:
        run_fast(spec)
    assert "site 'site-b': data file not found" in str(exc.value)
    assert "site 'site-c': cannot read " in str(exc.value)


# --- failures during training ----------------------------------------------


def patch_fit(monkeypatch, site: str, rounds: set[int], behaviour) -> None:
    """Make one site's fit misbehave in the given rounds."""
    real = SiteWorker.fit

    def fit(self, server_round, params):
        update = real(self, server_round, params)
        if self.name == site and server_round in rounds:
            return behaviour(update)
        return update

    monkeypatch.setattr(SiteWorker, "fit", fit)


def nan_update(update: LocalUpdate) -> LocalUpdate:
    """An update a site claims is fine but that holds NaN and inf."""
    params = [np.full_like(p, np.nan) for p in update.params]
    params[-1][...] = np.inf
    return LocalUpdate(params, update.num_examples, update.loss, update.steps)


def disk_on_fire(update: LocalUpdate) -> LocalUpdate:
    raise RuntimeError("disk on fire")


def test_non_finite_update_is_rejected_and_never_reaches_the_global_model(
    tmp_path, run_fast, monkeypatch
) -> None:
    patch_fit(monkeypatch, "site-b", {1, 2, 3}, nan_update)
    spec = make_sites(tmp_path, strategy={"name": "fedavg", "minSites": 2})
    outcome = run_fast(spec, out="nan")
    result = read_result(outcome.run_dir)
    assert result["status"] == "succeeded"
    for record in result["rounds"]:
        site = record["sites"]["site-b"]
        assert (site["status"], site["reason"]) == ("rejected", "update is not finite")
        assert record["sites"]["site-a"]["status"] == "ok"
    assert all(np.isfinite(p).all() for p in model_arrays(outcome.run_dir))
    # the same global model as when site-b fails outright: its update is left out
    monkeypatch.undo()
    patch_fit(monkeypatch, "site-b", {1, 2, 3}, disk_on_fire)
    failed = run_fast(spec, out="failed")
    assert_same_arrays(model_arrays(outcome.run_dir), model_arrays(failed.run_dir))


def wrong_shapes(update: LocalUpdate) -> LocalUpdate:
    params = [np.zeros((*p.shape, 2), p.dtype) for p in update.params]
    return LocalUpdate(params, update.num_examples, update.loss, update.steps)


def no_examples(update: LocalUpdate) -> LocalUpdate:
    return LocalUpdate(update.params, 0, update.loss, update.steps)


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        (wrong_shapes, "update does not match the model's shapes"),
        (no_examples, "update reports no training examples"),
    ],
)
def test_malformed_update_is_rejected_by_the_server(
    tmp_path, run_fast, monkeypatch, behaviour, reason
) -> None:
    patch_fit(monkeypatch, "site-b", {1}, behaviour)
    result = read_result(
        run_fast(make_sites(tmp_path, strategy={"name": "fedavg", "minSites": 2})).run_dir
    )
    site = result["rounds"][0]["sites"]["site-b"]
    assert (site["status"], site["reason"]) == ("rejected", reason)
    assert result["rounds"][1]["sites"]["site-b"]["status"] == "ok"


def test_non_finite_update_fails_the_round_when_min_sites_needs_it(
    tmp_path, run_fast, monkeypatch
) -> None:
    patch_fit(monkeypatch, "site-b", {2}, nan_update)
    with pytest.raises(TrainingError, match=r"site-b: update is not finite"):
        run_fast(make_sites(tmp_path))
    result = read_result(tmp_path / "run")
    assert [r["round"] for r in result["rounds"]] == [1]


def test_site_whose_model_goes_non_finite_is_rejected(tmp_path, run_fast) -> None:
    frames = make_frames()
    for name, frame in frames.items():
        frame["poison"] = "yes" if name == "site-c" else "no"
    spec = make_sites(
        tmp_path,
        frames=frames,
        schema={"categorical": ["sex", "smoker", "poison"]},
        model={"type": "custom", "importPath": "tests.helpers_models:PoisonedLogistic"},
        strategy={"name": "fedavg", "minSites": 2},
        evaluation={"baselines": ["local", "pooled"]},
    )
    outcome = run_fast(spec, baselines=True)
    result = read_result(outcome.run_dir)
    assert result["status"] == "succeeded"
    # site-c cannot train alone, nor can the pooled rows that include it: left out
    assert set(result["baselines"]) == {"local"}
    assert set(result["baselines"]["local"]["sites"]) == {"site-a", "site-b"}
    statuses = {r["sites"]["site-c"]["status"] for r in result["rounds"]}
    assert statuses == {"rejected"}
    assert result["rounds"][0]["sites"]["site-c"]["reason"] == "local loss is not finite"
    assert all(np.isfinite(p).all() for p in model_arrays(outcome.run_dir))
    assert result["final"]["metrics"]["auc"] is not None
    assert np.isfinite(result["final"]["metrics"]["auc"])


def test_site_raising_in_a_round_is_left_out_when_min_sites_allows(
    tmp_path, run_fast, monkeypatch
) -> None:
    patch_fit(monkeypatch, "site-b", {2}, disk_on_fire)
    outcome = run_fast(make_sites(tmp_path, strategy={"name": "fedavg", "minSites": 2}))
    result = read_result(outcome.run_dir)
    assert result["status"] == "succeeded"
    round_2 = result["rounds"][1]["sites"]["site-b"]
    assert (round_2["status"], round_2["reason"]) == ("failed", "RuntimeError: disk on fire")
    assert round_2["metrics"]["auc"] is not None  # it still evaluates the new global model
    assert result["rounds"][2]["sites"]["site-b"]["status"] == "ok"
    assert "round 2: `site-b` failed: RuntimeError: disk on fire" in (
        (outcome.run_dir / "report.md").read_text()
    )


def test_site_raising_in_a_round_ends_the_run_naming_site_and_reason(
    tmp_path, run_fast, monkeypatch
) -> None:
    patch_fit(monkeypatch, "site-b", {2}, disk_on_fire)
    with pytest.raises(TrainingError) as exc:
        run_fast(make_sites(tmp_path))
    message = str(exc.value)
    assert message == (
        "round 2: only 2 site(s) returned a usable update and minSites is 3 "
        "(site-b: RuntimeError: disk on fire)"
    )
    result = read_result(tmp_path / "run")
    assert result["status"] == "failed"
    assert result["error"] == message
    assert [r["round"] for r in result["rounds"]] == [1]
    assert result["rounds"][0]["sites"]["site-b"]["status"] == "ok"
    assert (tmp_path / "run" / "checkpoint.npz").exists()


def test_single_class_site_trains_and_has_no_auc(tmp_path, run_fast) -> None:
    frames = make_frames()
    frames["site-c"] = frames["site-c"].assign(outcome=1)
    outcome = run_fast(make_sites(tmp_path, frames=frames))
    result = read_result(outcome.run_dir)
    assert result["status"] == "succeeded"
    final = result["final"]
    assert final["sites"]["site-c"]["metrics"]["auc"] is None
    assert final["sites"]["site-c"]["metrics"]["specificity"] is None
    assert final["sites"]["site-c"]["metrics"]["accuracy"] is not None
    assert '"auc": null' in (outcome.run_dir / "result.json").read_text()
    others = [final["sites"][s] for s in ("site-a", "site-b")]
    expected = sum(s["metrics"]["auc"] * s["numExamples"] for s in others) / sum(
        s["numExamples"] for s in others
    )
    assert final["metrics"]["auc"] == pytest.approx(expected, rel=1e-12)
    assert all(r["sites"]["site-c"]["status"] == "ok" for r in result["rounds"])
