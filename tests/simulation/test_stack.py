"""A stack of one site is that site's train_local: the stacked models and optimisers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medfl.models import initial_model
from medfl.simulation import train_stack
from medfl.simulation._stack import Batches
from medfl.spec import LogisticModel, MlpModel, Training, parse_experiment
from medfl.spec._models import FedAvg, FedProx
from medfl.training import LocalData, get_params, train_local
from medfl.training._local import _batches, local_steps

SPEC = {
    "name": "stack",
    "sites": [{"name": "a", "data": {"source": "demo", "hospital": "Cleveland"}}],
    "schema": {"target": {"column": "num", "positiveAbove": 0}, "numeric": ["age"]},
}


def stack_of_one(rows: int, cfg: Training, seed: int) -> Batches:
    drawn = _batches(rows, local_steps(rows, cfg), cfg.batch_size, seed)
    grid = torch.nn.utils.rnn.pad_sequence(drawn, batch_first=True, padding_value=-1)
    grid = grid.unsqueeze(0)
    return Batches(grid.clamp(min=0), (grid >= 0).float(), torch.tensor([len(drawn)]))


@pytest.mark.parametrize(
    ("model", "training", "strategy"),
    [
        (LogisticModel(), {"learningRate": 0.3}, FedAvg()),
        (
            MlpModel(hidden=[6], normalization="layer", activation="gelu"),
            {"optimizer": "adam", "learningRate": 0.05, "weightDecay": 0.01},
            FedProx(proximalMu=0.5),
        ),
        (MlpModel(hidden=[5, 3]), {"momentum": 0.8, "localEpochs": 2.5}, FedAvg()),
    ],
    ids=["logistic-sgd", "mlp-layernorm-adam-fedprox", "mlp-momentum"],
)
def test_a_stack_of_one_is_one_sites_train_local(model, training, strategy) -> None:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(37, 4, generator=generator)
    y = (torch.rand(37, generator=generator) < 0.4).float()
    cfg = Training(batchSize=8, **training)
    experiment = parse_experiment(
        SPEC
        | {"model": model.model_dump(by_alias=True), "training": cfg.model_dump(by_alias=True)}
        | {"strategy": strategy.model_dump(by_alias=True)}
    )
    net = initial_model(model, 4, seed=1)
    start = get_params(net)
    reference = train_local(net, start, LocalData(x, y), cfg, strategy, seed=11)
    update = train_stack(
        experiment, [torch.from_numpy(p) for p in start], x, y, stack_of_one(37, cfg, 11)
    )
    for ours, theirs in zip(update.params, reference.params, strict=True):
        np.testing.assert_allclose(ours[0].numpy(), theirs, rtol=0, atol=2e-6)
    assert float(update.loss[0]) == pytest.approx(reference.loss, abs=1e-6)
    assert bool(update.finite[0])
