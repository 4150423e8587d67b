"""Server maths: example-weighted averaging and the FedOpt server steps, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from medfl.spec import FedAdagrad, FedAdam, FedAvg, FedProx, FedYogi
from medfl.training import ServerOptimizer, weighted_average


def test_weighted_average_weights_by_examples() -> None:
    a = [np.array([1.0, 2.0], np.float32), np.array([[0.0]], np.float32)]
    b = [np.array([3.0, 6.0], np.float32), np.array([[4.0]], np.float32)]
    out = weighted_average([(a, 10), (b, 30)])
    # (10 * 1 + 30 * 3) / 40 = 2.5 ; (10 * 2 + 30 * 6) / 40 = 5 ; 30 * 4 / 40 = 3
    assert out[0].tolist() == [2.5, 5.0]
    assert out[1].tolist() == [[3.0]]
    assert [p.dtype for p in out] == [np.float32, np.float32]


def test_weighted_average_of_one_site_is_that_site() -> None:
    a = [np.array([0.1, -7.25], np.float32)]
    assert np.array_equal(weighted_average([(a, 3)])[0], a[0])


def test_weighted_average_without_examples_is_an_error() -> None:
    with pytest.raises(ValueError, match="no training examples"):
        weighted_average([([np.zeros(2)], 0)])


@pytest.mark.parametrize("strategy", [FedAvg(), FedProx()])
def test_fedavg_and_fedprox_take_the_average(strategy) -> None:
    opt = ServerOptimizer(strategy)
    average = [np.array([0.5, 1.5])]
    out = opt.apply([np.zeros(2)], average)
    assert out[0].tolist() == [0.5, 1.5]
    assert out[0] is not average[0]


CURRENT = [np.array([1.0, -2.0, 0.0])]
AVG_1 = [np.array([1.5, -4.0, 0.0])]  # delta_1 = [0.5, -2, 0]
AVG_2 = [np.array([0.5, -4.0, 1.0])]  # delta_2 from the new current, worked out below


def test_fedadam_two_steps_match_a_hand_computation() -> None:
    s = FedAdam(server_learning_rate=0.1, beta1=0.9, beta2=0.99, tau=1e-9)
    opt = ServerOptimizer(s)
    d1 = np.array([0.5, -2.0, 0.0])
    m1, v1 = 0.1 * d1, 0.01 * d1**2
    m_hat, v_hat = m1 / (1 - 0.9), v1 / (1 - 0.99)
    x1 = CURRENT[0] + 0.1 * m_hat / (np.sqrt(v_hat) + 1e-9)
    # step 1 of bias-corrected Adam moves each weight by lr * sign(delta)
    np.testing.assert_allclose(x1, [1.1, -2.1, 0.0], rtol=1e-7)
    out1 = opt.apply(CURRENT, AVG_1)
    np.testing.assert_allclose(out1[0], x1, rtol=1e-12)
    d2 = AVG_2[0] - x1
    m2, v2 = 0.9 * m1 + 0.1 * d2, 0.99 * v1 + 0.01 * d2**2
    x2 = x1 + 0.1 * (m2 / (1 - 0.9**2)) / (np.sqrt(v2 / (1 - 0.99**2)) + 1e-9)
    out2 = opt.apply(out1, AVG_2)
    np.testing.assert_allclose(out2[0], x2, rtol=1e-12)
    assert opt.state()["step"] == 2


def test_fedyogi_step_matches_a_hand_computation() -> None:
    s = FedYogi(server_learning_rate=0.01, beta1=0.9, beta2=0.99, tau=1e-3)
    opt = ServerOptimizer(s)
    d1 = np.array([0.5, -2.0, 0.0])
    m1 = 0.1 * d1
    v1 = 0.0 - 0.01 * d1**2 * np.sign(0.0 - d1**2)  # = 0.01 * d1**2 (v starts at 0)
    x1 = CURRENT[0] + 0.01 * m1 / (np.sqrt(v1) + 1e-3)
    # numbers: m1 = [0.05, -0.2, 0], sqrt(v1) = [0.05, 0.2, 0]
    np.testing.assert_allclose(
        x1, [1.0 + 0.01 * 0.05 / 0.051, -2.0 - 0.01 * 0.2 / 0.201, 0.0], rtol=1e-12
    )
    out1 = opt.apply(CURRENT, AVG_1)
    np.testing.assert_allclose(out1[0], x1, rtol=1e-12)
    d2 = AVG_2[0] - x1
    v2 = v1 - 0.01 * d2**2 * np.sign(v1 - d2**2)
    m2 = 0.9 * m1 + 0.1 * d2
    x2 = x1 + 0.01 * m2 / (np.sqrt(v2) + 1e-3)
    np.testing.assert_allclose(opt.apply(out1, AVG_2)[0], x2, rtol=1e-12)


def test_fedadagrad_step_matches_a_hand_computation() -> None:
    s = FedAdagrad(server_learning_rate=0.1, beta1=0.9, tau=1e-9)
    opt = ServerOptimizer(s)
    d1 = np.array([0.5, -2.0, 0.0])
    m1, v1 = 0.1 * d1, d1**2
    x1 = CURRENT[0] + 0.1 * m1 / (np.sqrt(v1) + 1e-9)
    np.testing.assert_allclose(x1, [1.01, -2.01, 0.0], rtol=1e-7)
    out1 = opt.apply(CURRENT, AVG_1)
    np.testing.assert_allclose(out1[0], x1, rtol=1e-12)
    d2 = AVG_2[0] - x1
    m2, v2 = 0.9 * m1 + 0.1 * d2, v1 + d2**2
    x2 = x1 + 0.1 * m2 / (np.sqrt(v2) + 1e-9)
    np.testing.assert_allclose(opt.apply(out1, AVG_2)[0], x2, rtol=1e-12)


def test_server_optimizer_keeps_the_parameter_dtype() -> None:
    opt = ServerOptimizer(FedAdam())
    out = opt.apply([np.zeros(3, np.float32)], [np.ones(3, np.float32)])
    assert out[0].dtype == np.float32


def test_server_optimizer_state_restores_the_same_next_step() -> None:
    first = ServerOptimizer(FedAdam())
    x1 = first.apply(CURRENT, AVG_1)
    second = ServerOptimizer(FedAdam())
    second.load_state(first.state())
    assert np.array_equal(first.apply(x1, AVG_2)[0], second.apply(x1, AVG_2)[0])
