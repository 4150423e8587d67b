"""The FederatedExperiment CRD generated from the spec: fresh in the chart, accepted by
Kubernetes' own schemas, structural, and in agreement with pydantic on sample CRs."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from medfl.k8s import (
    CRD_TEMPLATE,
    Condition,
    ExperimentStatus,
    SiteStatus,
    crd_chart_template,
    crd_manifest,
    crd_yaml,
)
from medfl.k8s.__main__ import main as crds_main
from medfl.spec import parse_experiment
from tests.helpers import deep_merge
from tests.k8s.schemas import problems, structural_violations

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "medfl"
EXAMPLE = ROOT / "examples" / "heart-disease" / "federatedexperiment.yaml"
K8S_VERSION = "1.35"  # the newest minor the helm we carry (kubectl v35 layer) speaks

SCHEMA = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

PLACEMENT = {
    "nodeSelector": {"topology.kubernetes.io/zone": "cleveland"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "resources": {"requests": {"cpu": 2, "memory": "4Gi"}, "limits": {"memory": "6Gi"}},
    "gpus": 1,
    "volume": {"claimName": "cleveland-data", "mountPath": "/data"},
}


def example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


def with_placement() -> dict[str, Any]:
    cr = example()
    cr["spec"]["sites"][0]["placement"] = PLACEMENT
    cr["spec"]["sites"][1]["placement"] = {"volume": {"hostPath": "/srv/hungary"}}
    cr["spec"]["runtime"] = {"image": "registry.local/medfl/runtime:dev"}
    return cr


def test_the_charts_crd_is_what_the_spec_generates() -> None:
    committed = (CHART / CRD_TEMPLATE).read_text()
    assert committed == crd_chart_template(), "stale CRD: run `make crds`"


def test_make_crds_writes_the_chart_template(tmp_path: Path) -> None:
    assert crds_main(["--out", str(tmp_path)]) == 0
    assert (tmp_path / CRD_TEMPLATE).read_text() == crd_chart_template()


def test_crd_passes_kubernetes_validate_strict() -> None:
    kubernetes_validate.validate(crd_manifest(), K8S_VERSION, strict=True)


def test_crd_names_scope_and_subresources() -> None:
    crd = yaml.safe_load(crd_yaml())
    assert crd["metadata"]["name"] == "federatedexperiments.medfl.io"
    spec = crd["spec"]
    assert (spec["group"], spec["scope"]) == ("medfl.io", "Namespaced")
    assert spec["names"]["kind"] == "FederatedExperiment"
    assert spec["names"]["plural"] == "federatedexperiments"
    assert spec["names"]["shortNames"] == ["fedexp"]
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Phase": ".status.phase",
        "Round": ".status.round",
        "Sites Ready": ".status.sitesReady",
        "Age": ".metadata.creationTimestamp",
    }


def test_printer_columns_read_declared_status_fields() -> None:
    declared = SCHEMA["properties"]["status"]["properties"]
    for column in crd_manifest()["spec"]["versions"][0]["additionalPrinterColumns"]:
        path = column["jsonPath"].split(".")
        if path[1] == "status":
            assert path[2] in declared, column


def test_the_schema_is_structural() -> None:
    assert structural_violations(SCHEMA) == []


def test_the_structural_check_catches_a_breach() -> None:
    bad = {"type": "object", "properties": {"a": {"title": "A"}}, "oneOf": [{"type": "object"}]}
    assert structural_violations(bad) == [".a: no type", ".a: title", ".oneOf: type"]


def test_unions_become_an_enum_on_their_tag() -> None:
    model = SCHEMA["properties"]["spec"]["properties"]["model"]
    assert model["properties"]["type"] == {"type": "string", "enum": ["logistic", "mlp", "custom"]}
    assert model["required"] == ["type"]
    strategy = SCHEMA["properties"]["spec"]["properties"]["strategy"]
    assert strategy["properties"]["name"]["enum"] == [
        "fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad"
    ]  # fmt: skip
    assert "default" not in strategy["properties"]["serverLearningRate"]  # differs by variant


def test_only_custom_model_kwargs_and_tuning_choices_keep_unknown_fields() -> None:
    text = crd_yaml()
    assert text.count("x-kubernetes-preserve-unknown-fields") == 2
    spec = SCHEMA["properties"]["spec"]["properties"]
    kwargs = spec["model"]["properties"]["kwargs"]
    assert kwargs == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    param = spec["tuning"]["properties"]["space"]["additionalProperties"]
    # a choice is any value the searched field takes: a number, a text, a list of widths
    assert param["properties"]["choices"]["items"] == {"x-kubernetes-preserve-unknown-fields": True}


@pytest.mark.parametrize("make", [example, with_placement], ids=["example", "with-placement"])
def test_sample_custom_resources_validate(make) -> None:
    cr = make()
    assert problems(cr, SCHEMA) == []
    parse_experiment(cr)  # and pydantic agrees


def test_a_full_dump_of_the_spec_is_a_valid_custom_resource() -> None:
    """What `medfl run --backend kubernetes` may send: every default written out."""
    cr = with_placement()
    cr["spec"] = parse_experiment(cr).to_wire()
    assert problems(cr, SCHEMA) == []


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        (
            {"spec": {"training": {"rounds": 0}}},
            [("spec.training.rounds", "0 is less than the minimum of 1")],
        ),
        (
            {"spec": {"training": {"epochs": 2}}},
            [
                (
                    "spec.training",
                    "Additional properties are not allowed ('epochs' was unexpected)",
                )
            ],
        ),
        (
            {"spec": {"model": {"type": "mlp", "dropout": 1.0}}},
            [("spec.model.dropout", "1.0 is greater than or equal to the maximum of 1.0")],
        ),
        (
            {"spec": {"model": {"type": "logistic", "hidden": [8]}}},
            [
                (
                    "spec.model",
                    "{'type': 'logistic', 'hidden': [8]} is not valid under any of the given "
                    "schemas",
                )
            ],
        ),
        (
            {"spec": {"strategy": {"name": "fedsgd"}}},
            [
                ("spec.strategy", "{'name': 'fedsgd'} is not valid under any of the given schemas"),
                (
                    "spec.strategy.name",
                    "'fedsgd' is not one of "
                    "['fedavg', 'fedprox', 'fedadam', 'fedyogi', 'fedadagrad']",
                ),
            ],
        ),
        (
            {"spec": {"schema": {"missing": {"numeric": "median"}}}},
            [("spec.schema.missing.numeric", "'median' is not one of ['mean', 'drop', 'error']")],
        ),
    ],
)
def test_bad_custom_resource_is_rejected_at_its_path(patch: dict[str, Any], expected) -> None:
    cr = deep_merge(example(), patch)
    assert problems(cr, SCHEMA) == expected


@pytest.mark.parametrize(
    ("placement", "expected"),
    [
        ({"gpus": -1}, [("spec.sites[0].placement.gpus", "-1 is less than the minimum of 0")]),
        (
            {"volume": {"claimName": "data", "hostPath": "/srv"}},
            [
                (
                    "spec.sites[0].placement.volume",
                    "{'claimName': 'data', 'hostPath': '/srv'} is valid under each of "
                    "{'required': ['hostPath']}, {'required': ['claimName']}",
                )
            ],
        ),
        (
            {"resources": {"limits": {"memory": "lots"}}},
            [
                (
                    "spec.sites[0].placement.resources.limits.memory",
                    "'lots' does not match '^[+-]?([0-9]+(\\\\.[0-9]*)?|\\\\.[0-9]+)"
                    "(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?$'",
                )
            ],
        ),
        (
            {"tolerations": [{"key": "gpu", "effect": "Sometimes"}]},
            [
                (
                    "spec.sites[0].placement.tolerations[0].effect",
                    "'Sometimes' is not one of ['NoSchedule', 'PreferNoSchedule', 'NoExecute']",
                )
            ],
        ),
    ],
)
def test_bad_placement_is_rejected_by_the_crd(placement: dict[str, Any], expected) -> None:
    cr = example()
    cr["spec"]["sites"][0]["placement"] = placement
    assert problems(cr, SCHEMA) == expected


def _one_site(**extra: Any) -> dict[str, Any]:
    site = {"name": "a", "data": {"source": "demo", "hospital": "Hungary"}}
    return {"sites": [deep_merge(site, extra)]}


SPECS_BOTH_JUDGE = [  # (id, patch of the example's spec, valid?)
    ("mlp", {"model": {"type": "mlp", "hidden": [16, 8], "dropout": 0.2}}, True),
    ("custom-needs-import-path", {"model": {"type": "custom"}}, False),
    ("custom-kwargs", {"model": {"type": "custom", "importPath": "m:N", "kwargs": {"a": 1}}}, True),
    ("fedprox-mu-on-fedavg", {"strategy": {"name": "fedavg", "proximalMu": 0.1}}, False),
    ("fedyogi", {"strategy": {"name": "fedyogi", "tau": 0.01, "minSites": 2}}, True),
    ("csv-delimiter-on-demo", _one_site(data={"delimiter": ";"}), False),
    ("integer-levels", _one_site(naValues=[-9], levels={"cp": {"1": 2}}), True),
    ("bad-site-name", _one_site(name="Site_A"), False),
    ("split-bounds", {"evaluation": {"split": {"validation": 1.0}}}, False),
    ("runtime-pull-policy", {"runtime": {"imagePullPolicy": "Sometimes"}}, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("patch", "valid"), [c[1:] for c in SPECS_BOTH_JUDGE], ids=[c[0] for c in SPECS_BOTH_JUDGE]
)
def test_crd_and_pydantic_agree(patch: dict[str, Any], valid: bool) -> None:
    cr = example()
    cr["spec"].update(patch)
    try:
        parse_experiment(cr)
        pydantic_valid = True
    except Exception:
        pydantic_valid = False
    assert (problems(cr, SCHEMA) == [], pydantic_valid) == (valid, valid)


def _status() -> ExperimentStatus:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    return ExperimentStatus(
        phase="Running",
        conditions=[
            Condition(
                type="Valid", status="True", last_transition_time=now, reason="Parsed", message=""
            )
        ],
        observed_generation=2,
        current_round=3,
        total_rounds=15,
        sites={"cleveland": SiteStatus(state="Online"), "hungary": SiteStatus(state="Starting")},
        metrics={"auc": 0.81},
        start_time=now,
    )


def test_status_as_the_operator_writes_it_is_declared() -> None:
    wire = _status().to_wire()
    assert wire["round"] == "3/15"
    assert wire["sitesReady"] == "1/2"
    cr = {**example(), "status": wire}
    assert problems(cr, SCHEMA) == []


def test_an_undeclared_status_field_is_caught() -> None:
    cr = {**example(), "status": {**_status().to_wire(), "bestRound": 2}}
    assert problems(cr, SCHEMA) == [
        ("status", "Additional properties are not allowed ('bestRound' was unexpected)")
    ]


def test_conditions_are_a_map_keyed_by_type() -> None:
    conditions = SCHEMA["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert conditions["items"]["required"] == [
        "type", "status", "lastTransitionTime", "reason", "message"
    ]  # fmt: skip


def test_medfl_k8s_loads_neither_torch_nor_flwr() -> None:
    code = (
        "import sys, medfl.k8s; medfl.k8s.crd_yaml();"
        "print(sorted(m for m in ('torch', 'flwr', 'ray', 'kubernetes') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
