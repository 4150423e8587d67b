"""A federated GLM over sites that each enforce their own disclosure policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from medfl.errors import DataError, SpecError
from medfl.spec import parse_experiment
from medfl.spec._policy import Disclosure, SitePolicy, load_policy
from medfl.stats._federated import InProcessStats, fit_glm
from tests.helpers import deep_merge, heart_spec, make_sites


def _heart(**glm: Any):
    return parse_experiment(heart_spec(["age", "thalch", "oldpeak"], ["sex", "exang"], glm=glm))


def test_federated_fit_with_site_effect_equals_statsmodels_on_the_pooled_rows() -> None:
    experiment = _heart(formula="num ~ age + sex + thalch + exang + oldpeak", siteEffect=True)

    ours = fit_glm(experiment, InProcessStats(experiment))

    from medfl.data import prepare_site

    frames = []
    for i, site in enumerate(experiment.sites):
        table = prepare_site(site, experiment.data_schema)
        frame = table.features.assign(num=table.y, site=i)
        frames.append(frame.dropna(subset=["age", "sex", "thalch", "exang", "oldpeak"]))
    pooled = pd.concat(frames, ignore_index=True)
    x = np.column_stack(
        [
            np.ones(len(pooled)),
            pooled["age"], pooled["sex"] == "Male", pooled["thalch"],
            pooled["exang"] == "TRUE", pooled["oldpeak"],
            *[pooled["site"] == i for i in (1, 2, 3)],
        ]
    ).astype(float)  # fmt: skip
    theirs = sm.GLM(pooled["num"].to_numpy(float), x, family=sm.families.Binomial()).fit()
    np.testing.assert_allclose(ours.params_, theirs.params, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours.bse_, theirs.bse, rtol=0, atol=1e-8)
    assert ours.names[-3:] == ["site[T.hungary]", "site[T.switzerland]", "site[T.va-long-beach]"]
    assert ours.nobs_ == len(pooled)


def test_small_category_cells_make_the_site_refuse_naming_them() -> None:
    # the reference level counts too: its count is the rows minus the indicators'
    experiment = _heart(formula="thalch ~ age + C(sex)", family="gaussian")
    strict = SitePolicy(disclosure=Disclosure(min_cell_count=30))

    with pytest.raises(DataError) as err:
        fit_glm(experiment, InProcessStats(experiment, {"switzerland": strict}))

    assert str(err.value) == (
        "site 'switzerland' refuses the GLM: fewer than 30 rows (its policy's minimum cell) "
        "in: sex=Female"
    )


@pytest.mark.parametrize(
    ("disclosure", "message"),
    [
        ({"min_rows": 500}, "fewer usable rows than its policy's minimum of 500"),
        ({"max_parameters_per_row": 0.01},
         "4 parameters need at least 400 usable rows here (its policy: at most 0.01 "
         "parameters per row)"),
        ({"min_sites": 5}, "the federation has 4 site(s), its policy needs 5"),
    ],
    ids=["rows", "parameters-per-row", "sites"],
)  # fmt: skip
def test_site_policy_limits_refuse_before_any_sum_leaves(disclosure: dict, message: str) -> None:
    experiment = _heart(formula="num ~ age + thalch + oldpeak")
    policy = SitePolicy(disclosure=Disclosure(**disclosure))
    transport = InProcessStats(experiment, {"switzerland": policy})

    with pytest.raises(DataError) as err:
        fit_glm(experiment, transport)

    assert str(err.value) == f"site 'switzerland' refuses the GLM: {message}"
    assert not transport.sites["switzerland"].prepared


def test_outcome_classes_below_the_cell_minimum_are_refused(tmp_path: Path) -> None:
    doc = make_sites(tmp_path, sizes=(60, 40))
    path = Path(doc["sites"][1]["data"]["path"])
    frame = pd.read_csv(path)
    frame["outcome"] = 0
    frame.loc[:2, "outcome"] = 1  # three positives at site-b
    frame.to_csv(path, index=False)
    experiment = parse_experiment(deep_merge(doc, {"glm": {"formula": "outcome ~ age + bp"}}))

    with pytest.raises(DataError) as err:
        fit_glm(experiment, InProcessStats(experiment))

    assert str(err.value) == (
        "site 'site-b' refuses the GLM: fewer than 5 rows (its policy's minimum cell) in: "
        "the positive outcome"
    )


def test_outcome_that_is_no_schema_column_is_named(tmp_path: Path) -> None:
    experiment = parse_experiment(
        deep_merge(make_sites(tmp_path), {"glm": {"formula": "sex ~ age", "family": "binomial"}})
    )

    with pytest.raises(SpecError) as err:
        fit_glm(experiment, InProcessStats(experiment))

    assert err.value.problems == [
        (
            "glm.formula",
            "the outcome 'sex' is neither the schema's target ('outcome') nor one of its "
            "numeric columns",
        )
    ]


def test_policy_file_is_read_and_its_mistakes_are_named(tmp_path: Path) -> None:
    good = tmp_path / "policy.yaml"
    good.write_text("disclosure: {minCellCount: 10, releaseExtremes: true}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("disclosure: {minCellCount: 0, minRow: 3}\n")

    assert load_policy(good).disclosure.min_cell_count == 10
    with pytest.raises(SpecError) as err:
        load_policy(bad)
    assert err.value.problems == [
        ("disclosure.minCellCount", "Input should be greater than or equal to 1"),
        ("disclosure.minRow", "unknown field"),
    ]


def test_no_intercept_gives_the_first_categorical_term_every_level_as_patsy_does() -> None:
    import statsmodels.formula.api as smf

    from medfl.data import prepare_site

    experiment = _heart(formula="num ~ age + sex + thalch - 1")
    ours = fit_glm(experiment, InProcessStats(experiment))
    frames = []
    for site in experiment.sites:
        table = prepare_site(site, experiment.data_schema)
        frames.append(table.features.assign(num=table.y.astype(float)))
    pooled = pd.concat(frames, ignore_index=True).dropna(subset=["age", "sex", "thalch"])

    theirs = smf.glm("num ~ age + C(sex) + thalch - 1", pooled, family=sm.families.Binomial()).fit()

    assert ours.names == ["age", "sex[Female]", "sex[Male]", "thalch"]
    patsy = ["age", "C(sex)[Female]", "C(sex)[Male]", "thalch"]  # patsy orders terms otherwise
    np.testing.assert_allclose(ours.params_, theirs.params[patsy].to_numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours.bse_, theirs.bse[patsy].to_numpy(), rtol=0, atol=1e-8)
    assert ours.aic_ == pytest.approx(theirs.aic, abs=1e-6)


@pytest.mark.parametrize(
    ("formula", "family", "message"),
    [
        ("oldpeak ~ age", "poisson",
         "site 'cleveland': the Poisson family needs counts (whole numbers >= 0), and "
         "'oldpeak' has other values here"),
        ("thalch ~ age", "binomial",
         "site 'cleveland': the binomial family needs a 0/1 outcome, and 'thalch' has other "
         "values here (the schema's target is 0/1)"),
    ],
)  # fmt: skip
def test_an_outcome_the_family_cannot_model_is_named(formula: str, family: str, message: str):
    experiment = _heart(formula=formula, family=family)

    with pytest.raises(DataError) as err:
        fit_glm(experiment, InProcessStats(experiment))

    assert str(err.value).splitlines()[0] == message


def test_offset_or_weights_that_are_no_numeric_column_are_named() -> None:
    experiment = _heart(formula="num ~ age", offset="sex", weights="height")

    with pytest.raises(SpecError) as err:
        fit_glm(experiment, InProcessStats(experiment))

    assert err.value.problems == [
        ("glm.offset", "'sex' is not one of the schema's numeric columns"),
        ("glm.weights", "'height' is not one of the schema's numeric columns"),
    ]


def test_unreadable_policy_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("disclosure: [unclosed\n")

    with pytest.raises(SpecError) as missing:
        load_policy(tmp_path / "none.yaml")
    with pytest.raises(SpecError) as broken:
        load_policy(tmp_path / "bad.yaml")

    assert str(missing.value) == (
        f"invalid site policy in {tmp_path / 'none.yaml'}:\n"
        "  cannot read the policy file: No such file or directory"
    )
    assert str(broken.value) == f"invalid site policy in {tmp_path / 'bad.yaml'}:\n  not valid YAML"
