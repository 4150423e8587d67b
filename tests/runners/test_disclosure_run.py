"""Disclosure limits on the training path: what a site withholds under its policy, and
how the federation's figures and reports say so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from medfl.cli import main
from medfl.errors import DataError
from medfl.runners import FastEngine
from medfl.training import weighted
from tests.helpers import deep_merge, make_sites, read_result

SMALL = (200, 150, 30)  # site-c's 6 test rows cannot hold 5 of each outcome class
TEST_WITHHELD = (
    "site 'site-c' withholds its test metrics: an outcome class under its policy's cell "
    "minimum of 5 in this split"
)


def _policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_a_tiny_test_split_reports_no_metrics_and_the_federation_covers_the_rest(
    tmp_path, run_fast
) -> None:
    spec = make_sites(tmp_path, SMALL, evaluation={"baselines": ["local"]})

    outcome = run_fast(spec, baselines=True)

    final = outcome.result.final
    assert final is not None
    assert final.withheld == {"site-c": TEST_WITHHELD}
    assert sorted(final.sites) == ["site-a", "site-b"]
    expected = weighted([(s.metrics, s.num_examples) for s in final.sites.values()])
    assert final.metrics == expected
    assert outcome.result.baselines["local"].withheld == {"site-c": TEST_WITHHELD}
    assert all(r.sites["site-c"].withheld for r in outcome.result.rounds)
    assert all(r.sites["site-c"].metrics == {} for r in outcome.result.rounds)
    assert (
        "site 'site-c' withholds its test metrics (an outcome class under its policy's cell "
        "minimum of 5 in this split): the federation's test figures cover the other 2 site(s)"
    ) in outcome.result.notes
    report = (outcome.run_dir / "report.md").read_text()
    assert "| federated (2 of 3 sites) |" in report
    assert "| site-c | withheld by the site (its disclosure policy) |" in report
    assert "- `site-c`: cell minimum 5, row minimum 10, at least 2 sites; withheld: its " in report


def test_a_sites_own_policy_may_let_its_metrics_out(tmp_path, run_fast) -> None:
    policy = _policy(tmp_path, "disclosure:\n  minCellCount: 1\n")
    engine = FastEngine(site_policies=(("site-c", policy),))

    outcome = run_fast(make_sites(tmp_path, SMALL), engine=engine)

    final = outcome.result.final
    assert final is not None and final.withheld == {}
    assert sorted(final.sites) == ["site-a", "site-b", "site-c"]
    assert (
        read_result(outcome.run_dir)["sites"]["site-c"]["disclosure"]["limits"]["minCellCount"] == 1
    )


def test_a_site_under_its_row_minimum_takes_no_part(tmp_path, run_fast) -> None:
    policy = _policy(tmp_path, "disclosure: {minRows: 1000}\n")
    spec = make_sites(tmp_path, strategy={"name": "fedavg", "minSites": 2})

    outcome = run_fast(spec, engine=FastEngine(site_policies=(("site-b", policy),)))

    assert outcome.result.excluded_sites == {
        "site-b": "site 'site-b' takes no part: fewer usable rows than its policy's minimum of 1000"
    }
    assert all(set(r.sites) == {"site-a", "site-c"} for r in outcome.result.rounds)


def test_a_site_needing_a_larger_federation_fails_the_run_when_min_sites_needs_it(
    tmp_path, run_fast
) -> None:
    policy = _policy(tmp_path, "disclosure: {minSites: 5}\n")

    with pytest.raises(DataError) as err:
        run_fast(make_sites(tmp_path), engine=FastEngine(site_policies=(("site-a", policy),)))

    assert str(err.value) == (
        "only 2 of 3 site(s) have usable data and minSites is 3: site 'site-a' takes no part: "
        "the experiment lists 3 site(s), its policy needs 5"
    )


def test_run_and_validate_take_site_policies_and_show_what_is_suppressed(tmp_path, capsys) -> None:
    spec = deep_merge(make_sites(tmp_path, SMALL), {"training": {"rounds": 1}})
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    strict = _policy(tmp_path, "disclosure: {minCellCount: 100}\n")  # site-b: 71 and 79

    assert main(["validate", str(spec_file), "--site-policy", f"site-b={strict}", "--json"]) == 0

    sites = {r["site"]: r for r in json.loads(capsys.readouterr().out)["sites"]}
    assert (sites["site-b"]["positives"], sites["site-b"]["negatives"]) == (None, None)
    assert sites["site-a"]["positives"] is not None
    assert sites["site-c"]["disclosure"]["withheld"] == {
        "validation": "an outcome class under its policy's cell minimum of 5 in this split",
        "test": "an outcome class under its policy's cell minimum of 5 in this split",
    }
    out = tmp_path / "run"
    argv = ["run", str(spec_file), "--out", str(out), "--no-baselines", "-q"]
    assert main([*argv, "--site-policy", f"site-b={strict}"]) == 0
    result = read_result(out)
    assert result["sites"]["site-b"]["disclosure"]["limits"]["minCellCount"] == 100
    assert sorted(result["final"]["withheld"]) == ["site-b", "site-c"]


def test_a_mistake_in_a_policy_file_is_named_before_any_work(tmp_path, capsys) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(make_sites(tmp_path)))
    bad = _policy(tmp_path, "disclosure: {minCellCount: 0}\n")

    assert main(["run", str(spec_file), "--site-policy", f"site-a={bad}"]) == 3

    err = capsys.readouterr().err
    assert f"invalid site policy in {bad}:" in err
    assert "disclosure.minCellCount: " in err
    assert not (tmp_path / "runs").exists()
