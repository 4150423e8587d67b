"""Local training at a site: seeded, FedProx's pull toward the global model, bad updates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medfl.models import build_model, initial_model
from medfl.spec import FedAvg, FedProx, LogisticModel, MlpModel, Training
from medfl.training import LocalData, evaluate, get_params, set_params, train_local
from medfl.training._local import local_steps

CFG = Training(rounds=1, local_epochs=5, batch_size=8, learning_rate=0.1, seed=0)


def data(n: int = 64, seed: int = 0) -> LocalData:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = (x @ np.array([2.0, -1.0, 0.5, 0.0]) + rng.normal(size=n) > 0).astype(np.float32)
    return LocalData.from_numpy(x, y)


def distance(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.sqrt(sum(((p - q) ** 2).sum() for p, q in zip(a, b, strict=True))))


def test_fedprox_large_mu_keeps_the_update_near_the_global_model() -> None:
    model = build_model(LogisticModel(), 4)
    start = get_params(initial_model(LogisticModel(), 4, seed=1))
    local = data()
    plain = train_local(model, start, local, CFG, FedAvg(), seed=5)
    prox = train_local(model, start, local, CFG, FedProx(proximal_mu=5.0), seed=5)
    weak = train_local(model, start, local, CFG, FedProx(proximal_mu=1e-4), seed=5)
    d_plain, d_prox, d_weak = (distance(u.params, start) for u in (plain, prox, weak))
    assert d_prox < 0.5 * d_plain
    assert d_weak == pytest.approx(d_plain, rel=1e-3)
    assert d_weak != d_plain  # the proximal term is in the loss, however small
    assert prox.loss > 0  # the reported loss includes the proximal term


def test_training_is_determined_by_the_seed() -> None:
    model = build_model(MlpModel(hidden=[8], dropout=0.2), 4)
    start = get_params(initial_model(MlpModel(hidden=[8], dropout=0.2), 4, seed=1))
    a = train_local(model, start, data(), CFG, FedAvg(), seed=11)
    b = train_local(model, start, data(), CFG, FedAvg(), seed=11)
    c = train_local(model, start, data(), CFG, FedAvg(), seed=12)
    assert all(np.array_equal(p, q) for p, q in zip(a.params, b.params, strict=True))
    assert not all(np.array_equal(p, q) for p, q in zip(a.params, c.params, strict=True))


def test_update_reports_examples_steps_and_does_not_touch_the_global_params() -> None:
    start = get_params(initial_model(LogisticModel(), 4, seed=1))
    kept = [p.copy() for p in start]
    update = train_local(build_model(LogisticModel(), 4), start, data(50), CFG, FedAvg(), seed=1)
    assert (update.num_examples, update.steps, update.problem) == (50, 32, None)  # ceil(5*50/8)
    assert all(np.array_equal(p, q) for p, q in zip(start, kept, strict=True))


@pytest.mark.parametrize(
    ("cfg", "n", "steps"),
    [
        (Training(local_epochs=1, batch_size=16), 50, 4),
        (Training(local_epochs=0.5, batch_size=10), 50, 3),
        (Training(local_steps=7, batch_size=16), 50, 7),
        (Training(batch_size=100), 5, 1),
    ],
)
def test_local_steps(cfg: Training, n: int, steps: int) -> None:
    assert local_steps(n, cfg) == steps


def test_non_finite_loss_is_reported_and_the_global_params_returned() -> None:
    start = get_params(initial_model(LogisticModel(), 4, seed=1))
    start[0][0, 0] = np.inf
    update = train_local(build_model(LogisticModel(), 4), start, data(), CFG, FedAvg(), seed=1)
    assert update.problem == "local loss is not finite"
    assert update.steps == 0


def test_evaluate_an_empty_split_gives_no_metrics() -> None:
    model = build_model(LogisticModel(), 4)
    empty = LocalData(torch.zeros((0, 4)), torch.zeros(0))
    assert evaluate(model, get_params(model), empty, 0.5) == {}


def test_set_params_rejects_the_wrong_number_of_tensors() -> None:
    model = build_model(LogisticModel(), 4)
    with pytest.raises(ValueError, match="model has 2 tensors, got 1"):
        set_params(model, get_params(model)[:1])
