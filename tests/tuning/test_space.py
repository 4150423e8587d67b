"""The search space: spec paths, distributions, and a trial scored without Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from medfl.errors import SpecError, TrainingError
from medfl.spec import parse_experiment
from medfl.tuning._space import check_space, decoded, default_point, encoded, with_params
from medfl.tuning._trial import score_rounds
from tests.helpers import deep_merge, make_sites


def _experiment(tmp_path: Path, space: dict[str, Any], **tuning: Any) -> Any:
    return parse_experiment(
        deep_merge(make_sites(tmp_path), {"tuning": {"space": space, "trials": 4, **tuning}})
    )


LR = {"training.learningRate": {"type": "float", "low": 0.01, "high": 1.0, "log": True}}


def test_a_trial_is_the_experiment_with_its_parameters_set(tmp_path) -> None:
    experiment = _experiment(tmp_path, LR)

    trial = with_params(
        experiment, {"training.learningRate": 0.3, "model": {"type": "mlp", "hidden": [8]}}
    )

    assert trial.training.learning_rate == 0.3
    assert trial.model.type == "mlp" and trial.model.hidden == [8]  # type: ignore[union-attr]
    assert trial.tuning is None and experiment.training.learning_rate == 0.1


@pytest.mark.parametrize(
    ("space", "problem"),
    [
        ({"strategy.mu": {"type": "float", "low": 0.0, "high": 1.0}},
         ("tuning.space.strategy.mu", "with 0.0: strategy.mu: unknown field")),
        ({"training.batchSize": {"type": "categorical", "choices": [16, 0]}},
         ("tuning.space.training.batchSize", "with 0: training.batchSize: Input should be greater "
          "than or equal to 1")),
        ({"trainin.learningRate": {"type": "float", "low": 0.1, "high": 0.2}},
         ("tuning.space.trainin.learningRate", "the spec has no section 'trainin' here")),
    ],
)  # fmt: skip
def test_a_parameter_the_spec_cannot_take_is_named_before_any_trial(
    tmp_path, space: dict[str, Any], problem: tuple[str, str]
) -> None:
    experiment = _experiment(tmp_path, space)

    with pytest.raises(SpecError) as err:
        check_space(experiment, experiment.tuning)  # type: ignore[arg-type]

    assert err.value.problems == [problem]


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True},
         "a log scale needs 'low' > 0, got 0"),
        ({"type": "int", "low": 5, "high": 5}, "'low' (5) must be below 'high' (5)"),
        ({"type": "categorical", "choices": [16]}, "List should have at least 2 items"),
    ],
)  # fmt: skip
def test_a_bad_distribution_is_named(tmp_path, param: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as err:
        _experiment(tmp_path, {"training.localEpochs": param})

    (path, said), *_ = err.value.problems
    assert path.startswith("tuning.space.training.localEpochs")
    assert message in said


def test_the_configuration_as_written_is_the_first_point_when_it_lies_in_the_space(
    tmp_path,
) -> None:
    space = {
        **LR,
        "training.batchSize": {"type": "categorical", "choices": [8, 16]},
        "model.hidden": {"type": "categorical", "choices": [[8], [16, 8]]},
    }
    inside = _experiment(tmp_path, {k: v for k, v in space.items() if k != "model.hidden"})
    outside = _experiment(tmp_path, space)  # the logistic model has no hidden layers

    assert default_point(inside, inside.tuning) == {  # type: ignore[arg-type]
        "training.learningRate": 0.1,
        "training.batchSize": 16,
    }
    assert default_point(outside, outside.tuning) is None  # type: ignore[arg-type]


def test_categorical_choices_travel_as_json_and_ints_come_back_as_ints(tmp_path) -> None:
    experiment = _experiment(
        tmp_path,
        {
            "model.hidden": {"type": "categorical", "choices": [[8], [16, 8]]},
            "training.localEpochs": {"type": "int", "low": 1, "high": 3},
        },
    )
    tuning = experiment.tuning
    assert tuning is not None

    sent = encoded(tuning, {"model.hidden": [16, 8], "training.localEpochs": 2})
    back = decoded(tuning, {**sent, "training.localEpochs": 2.0, "other": 1})

    assert sent["model.hidden"] == "[16, 8]"
    assert back == {"model.hidden": [16, 8], "training.localEpochs": 2}
    assert isinstance(back["training.localEpochs"], int)


def test_a_trial_reports_each_rounds_validation_score_and_reads_no_test_split(
    tmp_path,
) -> None:
    experiment = _experiment(tmp_path, LR, gracePeriod=1)  # ASHA's rungs: rounds 1 and 2
    reports: list[dict[str, Any]] = []

    transport = score_rounds(with_params(experiment, {}), experiment.tuning, reports.append)  # type: ignore[arg-type]

    assert [r["round"] for r in reports] == [1, 2, 3]
    assert all(0.0 <= r["auc"] <= 1.0 for r in reports)
    assert transport.reads == {"validation": 3, "test": 0}
    assert all(r["testReads"] == 0 for r in reports)


def test_a_diverging_trial_fails_with_the_federations_reason(tmp_path) -> None:
    experiment = _experiment(tmp_path, LR)
    huge = with_params(experiment, {"training.learningRate": 1e38})

    with pytest.raises(TrainingError) as err:
        score_rounds(huge, experiment.tuning, lambda _: None)  # type: ignore[arg-type]

    assert "returned a usable update" in str(err.value)


def test_tune_without_a_tuning_section_or_with_no_trials_is_a_usage_error(tmp_path, capsys) -> None:
    from medfl.cli import main

    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(make_sites(tmp_path)))
    searched = tmp_path / "search.yaml"
    searched.write_text(yaml.safe_dump(deep_merge(make_sites(tmp_path), {"tuning": {"space": LR}})))

    assert main(["tune", str(plain)]) == 2
    assert f"{plain} has no tuning: section (what to search, and how)" in capsys.readouterr().err
    assert main(["tune", str(searched), "--trials", "0"]) == 2
    assert "--trials 0: give at least 1" in capsys.readouterr().err


def test_validate_checks_the_search_space_too(tmp_path, capsys) -> None:
    from medfl.cli import main

    bad = {"strategy.mu": {"type": "float", "low": 0.0, "high": 1.0}}
    spec = tmp_path / "search.yaml"
    spec.write_text(yaml.safe_dump(deep_merge(make_sites(tmp_path), {"tuning": {"space": bad}})))

    assert main(["validate", str(spec)]) == 3
    assert "tuning.space.strategy.mu: with 0.0: strategy.mu: unknown field" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("tuning", "rounds", "reported"),
    [
        ({"gracePeriod": 5, "reductionFactor": 2}, 15, {5, 10, 15}),
        ({"gracePeriod": 3, "reductionFactor": 3}, 15, {3, 9, 15}),
        ({"scheduler": "none"}, 15, {15}),
        ({"gracePeriod": 20}, 15, {15}),
    ],
)
def test_a_trial_reports_at_ashas_rungs_and_its_last_round(
    tmp_path, tuning: dict[str, Any], rounds: int, reported: set[int]
) -> None:
    experiment = _experiment(tmp_path, LR, **tuning)

    assert experiment.tuning.report_rounds(rounds) == reported  # type: ignore[union-attr]


def test_every_trial_is_counted_in_a_dp_sites_ledger(tmp_path) -> None:
    """The trial function Ray runs uses the sites' own code: with DP on, each trial is
    an entry in the site's privacy ledger, like any run."""
    import json

    from medfl.spec._policy import load_policy
    from tests.privacy.helpers import dp_spec, write_policy

    doc = deep_merge(dp_spec(tmp_path), {"tuning": {"space": LR, "scheduler": "none"}})
    experiment = parse_experiment(doc)
    policy = write_policy(
        tmp_path / "site-a" / "policy.yaml", {"maxEpsilon": 100, "ledger": "l.json"}
    )
    policies = {"site-a": load_policy(policy)}

    for rate in (0.05, 0.2):
        trial = with_params(experiment, {"training.learningRate": rate})
        score_rounds(trial, experiment.tuning, lambda _: None, policies)  # type: ignore[arg-type]

    entries = json.loads((tmp_path / "site-a" / "l.json").read_text())["entries"]
    assert len(entries) == 2
    assert all(e["epsilon"] > 0 for e in entries)
