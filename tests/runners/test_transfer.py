"""Frozen layers, layers kept at the sites (FedBN, personal heads) and per-site
fine-tuning, through whole fast-engine runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from medfl import run
from medfl._seeds import derive_seed
from medfl.errors import SpecError, UsageError
from medfl.spec import FedAvg, parse_experiment
from medfl.training import (
    Checkpoint,
    Federation,
    InProcessTransport,
    SiteWorker,
    evaluate,
    train_local,
)
from medfl.training._local import LocalUpdate
from tests.helpers import deep_merge, make_sites, read_result

BN_MLP = {"type": "mlp", "hidden": [8], "normalization": "batch"}


def _spec(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return deep_merge(make_sites(tmp_path), overrides)


def _saved(run_dir: Path) -> dict[str, np.ndarray]:
    saved = torch.load(run_dir / "model.pt", weights_only=True)
    return {n: p.numpy() for n, p in zip(saved["names"], saved["params"], strict=True)}


class Recorder(InProcessTransport):
    """The in-process transport, recording the shapes of what travels each way."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.sent: list[list[tuple[int, ...]]] = []
        self.returned: list[list[tuple[int, ...]]] = []

    def fit(self, server_round: int, params: list[np.ndarray], sites: list[str]) -> Any:
        self.sent.append([p.shape for p in params])
        answers = super().fit(server_round, params, sites)
        self.returned += [
            [p.shape for p in a.params] for a in answers.values() if isinstance(a, LocalUpdate)
        ]
        return answers


def test_frozen_layers_are_unchanged_bitwise_and_never_travel(tmp_path: Path) -> None:
    torch.manual_seed(11)
    model_spec = {**BN_MLP, "freeze": ["hidden1", "norm1"]}
    doc = _spec(tmp_path, model=model_spec, training={"rounds": 3, "localEpochs": 2})
    experiment = parse_experiment(doc)
    transport = Recorder(experiment)
    fed = Federation(experiment, transport)
    setup = fed.setup()
    start = dict(zip(setup.start.parts.names, setup.start.base, strict=True))

    outcome = run(experiment, out=tmp_path / "run", baselines=False)
    fed.run_rounds(
        setup,
        __import__("medfl.training", fromlist=["Checkpoint"]).Checkpoint(setup.start.initial(), {}),
    )

    after = _saved(outcome.run_dir)
    frozen = [n for n in after if n.startswith(("hidden1.", "norm1."))]
    assert frozen == [
        "hidden1.weight", "hidden1.bias", "norm1.weight", "norm1.bias",
        "norm1.running_mean", "norm1.running_var", "norm1.num_batches_tracked",
    ]  # fmt: skip
    for name in frozen:
        assert after[name].tobytes() == start[name].tobytes(), name
    assert not np.array_equal(after["output.weight"], start["output.weight"])
    assert transport.sent == [[(1, 8), (1,)]] * 3  # server -> sites: the output layer only
    assert transport.returned == [[(1, 8), (1,)]] * 9  # 3 sites x 3 rounds
    info = outcome.result.model
    assert info is not None and (info.values_sent, info.values_total) == (
        9,
        6 * 8 + 8 + 4 * 8 + 1 + 9,
    )
    assert [layer.role for layer in info.layers] == ["frozen"] * 7 + ["sent", "sent"]


def test_fedbn_keeps_each_sites_normalisation_at_the_site(tmp_path: Path) -> None:
    doc = _spec(
        tmp_path,
        model=BN_MLP,
        personalization={"localNormalization": True},
        training={"rounds": 2},
    )
    experiment = parse_experiment(doc)
    transport = Recorder(experiment)
    fed = Federation(experiment, transport)
    setup = fed.setup()
    fed.run_rounds(setup, Checkpoint(setup.start.initial(), {}))

    assert transport.sent[0] == [(8, 6), (8,), (1, 8), (1,)]  # no norm1.* tensors
    local = {n: w.local_params() for n, w in transport.workers.items()}
    assert len(local["site-a"]) == 5  # weight, bias, running mean, var, batches tracked
    assert not np.array_equal(local["site-a"][2], local["site-b"][2])  # own running means
    assert not np.array_equal(local["site-a"][2], setup.start.parts.local_of(setup.start.base)[2])


def test_fedbn_run_says_model_pt_holds_round_0_normalisation(tmp_path: Path, run_fast: Any) -> None:
    doc = _spec(tmp_path, model=BN_MLP, personalization={"localNormalization": True})

    outcome = run_fast(doc)

    assert outcome.result.status == "succeeded"
    assert (
        "the sites kept their own layers (personalization); model.pt holds those layers as "
        "they were at round 0: norm1.bias, norm1.num_batches_tracked, norm1.running_mean, "
        "norm1.running_var, norm1.weight"
    ) in outcome.result.notes


def test_personalised_metrics_are_each_sites_fine_tuned_model_on_its_own_test_split(
    tmp_path: Path, run_fast: Any
) -> None:
    doc = _spec(
        tmp_path,
        model={"type": "mlp", "hidden": [8]},
        personalization={"fineTuneEpochs": 3, "fineTuneLearningRate": 0.05},
    )
    outcome = run_fast(doc)
    experiment = parse_experiment(doc)
    global_model = list(_saved(outcome.run_dir).values())
    personal = outcome.result.personalized
    assert personal is not None and outcome.result.final is not None

    transport = InProcessTransport(experiment)
    Federation(experiment, transport).setup()
    for name, worker in transport.workers.items():
        cfg = experiment.training.model_copy(update={"local_epochs": 3.0, "learning_rate": 0.05})
        tuned = train_local(
            worker._model, global_model, worker._data["train"], cfg, FedAvg(),
            derive_seed(experiment.training.seed, name, "personalize"),
        )  # fmt: skip
        expected = evaluate(worker._model, tuned.params, worker._data["test"], 0.5)
        assert personal.sites[name].metrics == expected
        assert personal.sites[name].num_examples == len(worker._data["test"])
        assert personal.sites[name].num_examples == outcome.result.final.sites[name].num_examples
    assert personal.sites["site-a"].metrics != outcome.result.final.sites["site-a"].metrics
    report = (outcome.run_dir / "report.md").read_text()
    assert "## Personalised models" in report


def test_local_output_layer_is_never_sent(tmp_path: Path) -> None:
    doc = _spec(
        tmp_path, model={"type": "mlp", "hidden": [4]}, personalization={"localLayers": ["output"]}
    )
    experiment = parse_experiment(doc)
    transport = Recorder(experiment)
    fed = Federation(experiment, transport)
    setup = fed.setup()
    fed.run_rounds(setup, Checkpoint(setup.start.initial(), {}))

    assert transport.sent[0] == [(4, 6), (4,)]


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (
            {"model": {"type": "mlp", "hidden": [4], "freeze": ["hidden2"]}},
            ("model.freeze[0]", "'hidden2' matches no layer; the model has: hidden1.weight, "
             "hidden1.bias, output.weight, output.bias"),
        ),
        (
            {"model": {"type": "logistic", "freeze": ["*"]}},
            ("model.freeze", "freezes every layer: nothing is left to train"),
        ),
        (
            {"model": {"type": "mlp", "hidden": [4]},
             "personalization": {"localNormalization": True}},
            ("personalization.localNormalization", "the model has no normalisation layer "
             "(BatchNorm, LayerNorm, GroupNorm); for the MLP set model.normalization"),
        ),
        (
            {"model": {"type": "mlp", "hidden": [4], "freeze": ["output"]},
             "personalization": {"localLayers": ["output.bias"]}},
            ("personalization.localLayers", "also frozen by model.freeze: output.bias"),
        ),
        (
            {"model": {"type": "logistic"}, "personalization": {"localLayers": ["*"]}},
            ("personalization.localLayers", "keeps every layer local: nothing is left to share"),
        ),
    ],
    ids=["no-such-layer", "all-frozen", "no-norm-layer", "frozen-and-local", "all-local"],
)  # fmt: skip
def test_layer_choices_that_cannot_work_fail_before_training_naming_the_field(
    tmp_path: Path, overrides: dict[str, Any], problem: tuple[str, str]
) -> None:
    experiment = parse_experiment(_spec(tmp_path, **overrides))

    with pytest.raises(SpecError) as err:
        run(experiment, out=tmp_path / "run", baselines=False)

    assert err.value.problems == [problem]
    assert read_result(tmp_path / "run")["rounds"] == []


def test_batchnorm_site_whose_last_batch_would_be_one_row_trains(
    tmp_path: Path, run_fast: Any
) -> None:
    # site sizes whose training splits leave n % 16 == 1 somewhere; BatchNorm cannot
    # train on one row, so that row joins the batch before it
    doc = make_sites(tmp_path, sizes=(83, 50, 40))
    doc = deep_merge(doc, {"model": BN_MLP})
    experiment = parse_experiment(doc)
    worker = SiteWorker(experiment, "site-a")
    worker.hello()
    assert len(worker._labels["train"]) % 16 == 1

    outcome = run_fast(doc)

    assert outcome.result.status == "succeeded"
    assert {s.status for r in outcome.result.rounds for s in r.sites.values()} == {"ok"}


def test_resume_refuses_a_changed_pretrained_file(tmp_path: Path) -> None:
    from medfl.models import build_model

    torch.manual_seed(0)
    weights = tmp_path / "w.pt"
    torch.save(build_model(parse_experiment(_spec(tmp_path)).model, 6).state_dict(), weights)
    doc = _spec(tmp_path, model={"type": "logistic", "pretrained": {"path": str(weights)}})
    experiment = parse_experiment(doc)
    first = run(experiment, out=tmp_path / "run", baselines=False)
    torch.save(build_model(experiment.model, 6).state_dict(), weights)  # other weights now

    with pytest.raises(UsageError) as err:
        run(resume=first.run_dir, baselines=False)

    assert str(err.value).startswith(f"cannot resume: {weights} changed since this run began")


def test_spec_checks_personalization_fields() -> None:
    from pydantic import ValidationError

    from medfl.spec._models import Personalization

    with pytest.raises(ValidationError, match="give either 'fineTuneEpochs' or 'fineTuneSteps'"):
        Personalization(fine_tune_epochs=1, fine_tune_steps=3)
    with pytest.raises(ValidationError, match="'fineTuneLearningRate' needs 'fineTuneEpochs'"):
        Personalization(fine_tune_learning_rate=0.1)


def test_freezing_without_pretrained_weights_is_said(tmp_path: Path, run_fast: Any) -> None:
    doc = _spec(tmp_path, model={"type": "mlp", "hidden": [4], "freeze": ["hidden1"]})

    outcome = run_fast(doc)

    assert (
        "model.freeze without model.pretrained: the frozen layers keep their random "
        "starting weights (hidden1)"
    ) in outcome.result.notes


def test_transfer_baselines_without_pretrained_weights_are_refused_naming_the_field(
    tmp_path: Path,
) -> None:
    with pytest.raises(SpecError) as err:
        parse_experiment(_spec(tmp_path, evaluation={"baselines": ["local", "scratch"]}))

    assert err.value.problems == [
        ("", "evaluation.baselines: scratch compare(s) against model.pretrained, which is not set")
    ]
