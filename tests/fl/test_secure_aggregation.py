"""Secure aggregation (SecAgg+, Flower's SecAggPlusWorkflow and secaggplus_mod).

Over the loopback grid (every message through the real ClientApp and Flower's mod, in
this process): the server's unmasked figure equals the sites' example-weighted mean to
within the quantisation's bound, no reply the server receives holds one site's change,
a run equals the plain run to within that bound, rejected and failed sites add nothing,
and central DP with the sites clipping equals the server's own clipping. One test runs
it on Flower's simulation engine (Ray).

Tolerance: each value a site masks is quantised with stochastic rounding to
step = 2 * clippingRange / 2**quantizationBits (1.9e-6 by default), so the unmasked
mean is within step * sites / sum(weight / maxWeight) of the exact one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.supercore.task_identity import TaskIdentity

from medfl import FastEngine, FlowerEngine, run
from medfl.errors import TrainingError, UsageError
from medfl.fl import _secagg
from medfl.fl import _wire as wire
from medfl.runners import default_engine
from medfl.spec import Experiment, parse_experiment
from medfl.training import Federation
from medfl.training._secure import Contribution, SecureRequest
from tests.fl.test_flower_engine import (
    LoopbackGrid,
    _configured,
    _drive_over,
    _experiment,
    _site_frame,
)
from tests.helpers import deep_merge, make_sites, model_arrays
from tests.privacy.helpers import write_policy

SECURE = {"privacy": {"secureAggregation": {"enabled": True}}}
STEP = 2 * 4.0 / 2**22  # the default clippingRange and quantizationBits


@pytest.fixture(autouse=True, scope="module")
def _task_identity() -> None:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1


def _spec(tmp_path: Path, sizes: tuple[int, ...] = (200, 150, 100), **overrides: Any) -> Experiment:
    return parse_experiment(make_sites(tmp_path, sizes, **deep_merge(SECURE, overrides)))


def _plain(experiment: Experiment) -> Experiment:
    doc = experiment.to_wire()
    doc["privacy"]["secureAggregation"]["enabled"] = False
    return parse_experiment(doc)


@pytest.fixture
def contributions(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, Contribution]]:
    """Every (round, contribution) the sites put under the masks, as they computed it."""
    seen: list[tuple[int, Contribution]] = []
    real = _secagg.contribution

    def recording(update: Any, current: Any, request: SecureRequest, secure: Any) -> Contribution:
        part = real(update, current, request, secure)
        seen.append((request.server_round, part))
        return part

    monkeypatch.setattr(_secagg, "contribution", recording)
    return seen


def test_the_server_unmasks_the_weighted_mean_and_no_single_change(
    tmp_path: Path, contributions: list[tuple[int, Contribution]]
) -> None:
    experiment = _spec(tmp_path)
    grid = LoopbackGrid(experiment)
    transport, params = _configured(experiment, grid)
    grid.received.clear()
    request = SecureRequest(server_round=1, max_weight=120.0)

    masked = transport.secure_fit(request, params, ["site-a", "site-b", "site-c"])

    parts = [p for _, p in contributions]
    assert [p.weight for p in parts] == [120, 90, 60]  # the training rows, in plain
    assert masked.weight == 270
    exact = [sum(p.weight * p.vector[i] for p in parts) / 270 for i in range(len(params))]
    bound = STEP * 3 / (270 / 120)
    error = max(float(np.max(np.abs(m - e))) for m, e in zip(masked.mean, exact, strict=True))
    assert 0 < error <= bound
    assert max(float(np.max(np.abs(e))) for e in exact) > 100 * bound  # a real change
    # What the server received: four stages' replies per site, no arrays in any of them,
    # and masked vectors that read as noise, not as the site's change.
    assert len(grid.received) == 4 * 3
    assert all(len(r) == 0 for m in grid.received for r in m.content.array_records.values())
    vectors = [
        m.content.config_records[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS]
        for m in grid.received
        if Key.MASKED_PARAMETERS in m.content.config_records[RECORD_KEY_CONFIGS]
    ]
    assert len(vectors) == 3
    for blobs, part in zip(vectors, parts, strict=True):
        seen = [wire_array(b) for b in blobs[1:]]  # [0]: the masked weight factor
        naive = [(s * (8.0 / 2**22) - 4.0) / (part.weight / 120) for s in seen]  # if unmasked
        assert (
            min(float(np.median(np.abs(n - v))) for n, v in zip(naive, part.vector, strict=True))
            > 1.0
        )


def wire_array(blob: object) -> np.ndarray:
    from flwr.common import bytes_to_ndarray

    return bytes_to_ndarray(blob).astype(np.float64)  # type: ignore[arg-type]


def test_a_secure_run_equals_the_plain_run_within_the_quantisation(tmp_path: Path) -> None:
    experiment = _spec(tmp_path)
    plain = _drive_over(LoopbackGrid(_plain(experiment)), _plain(experiment), tmp_path / "plain")

    secure = _drive_over(LoopbackGrid(experiment), experiment, tmp_path / "secure")

    assert secure.result.status == "succeeded"
    for p, q in zip(model_arrays(plain.run_dir), model_arrays(secure.run_dir), strict=True):
        np.testing.assert_allclose(q, p, rtol=0, atol=1e-5)
    facts = [
        {
            n: (s.status, s.num_examples, s.train_loss, s.steps)
            for n, s in r.result.rounds[0].sites.items()
        }
        for r in (plain, secure)
    ]
    assert facts[0] == facts[1]  # round 1 starts from the same model: the same training
    assert secure.result.final is not None and plain.result.final is not None
    assert secure.result.final.metrics["accuracy"] == plain.result.final.metrics["accuracy"]
    report = secure.result.secure_aggregation
    assert report is not None and plain.result.secure_aggregation is None
    assert report["clippedValues"] == {"site-a": 0, "site-b": 0, "site-c": 0}
    assert (report["sites"], report["quantizationStep"]) == (3, STEP)
    assert (report["shares"], report["threshold"]) == (3, 2)
    from medfl.results import render_report

    text = render_report(secure.result, experiment, [])
    assert "## Secure aggregation" in text and "## Privacy" not in text
    assert "split into 3 shares (one it keeps, one for each neighbour), 2 of them" in text
    assert "Values clipped to the range, over all rounds: none." in text


def _flaky(tmp_path: Path, names: tuple[str, ...], **spec: Any) -> Experiment:
    """Sites of the Flower-engine tests: delta's updates are never finite, epsilon raises."""
    rng = np.random.default_rng(7)
    frames = {
        "alpha": _site_frame(rng, 120),
        "gamma": _site_frame(rng, 140),
        "delta": _site_frame(rng, 40, age_scale=1e30),
        "epsilon": _site_frame(rng, 30).assign(bp=1e25),
    }
    return _experiment(tmp_path, {n: frames[n] for n in names}, **spec)


def test_rejected_and_failed_sites_add_nothing_and_are_reported(tmp_path: Path) -> None:
    names = ("alpha", "gamma", "delta", "epsilon")
    one_round = {"rounds": 1, "localEpochs": 1, "batchSize": 16, "learningRate": 0.01}
    strategy = {"name": "fedavg", "minSites": 2}
    secure = _flaky(tmp_path, names, strategy=strategy, training=one_round, **SECURE)
    plain = _plain(secure)

    over_plain = _drive_over(LoopbackGrid(plain), plain, tmp_path / "plain")
    over_secure = _drive_over(LoopbackGrid(secure), secure, tmp_path / "secure")

    for record in over_secure.result.rounds:
        assert record.sites["delta"].status == "rejected"
        assert record.sites["delta"].reason == "local loss is not finite"
        assert record.sites["epsilon"].status == "failed"
        assert record.sites["epsilon"].reason == "RuntimeError: flaky site crashed"
    for p, q in zip(
        model_arrays(over_plain.run_dir), model_arrays(over_secure.run_dir), strict=True
    ):
        np.testing.assert_allclose(q, p, rtol=0, atol=4 * STEP)  # 4 sites masked; ratios sum ≥ 1


def test_unmasking_is_refused_when_one_site_alone_sent_a_usable_update(tmp_path: Path) -> None:
    experiment = _flaky(
        tmp_path, ("alpha", "epsilon"), strategy={"name": "fedavg", "minSites": 2}, **SECURE
    )

    with pytest.raises(TrainingError) as error:
        _drive_over(LoopbackGrid(experiment), experiment, tmp_path / "run")

    assert str(error.value) == (
        "round 1: secure aggregation stopped before unmasking: only 1 site(s) sent a usable "
        "update, and the sum of fewer than 2 would be one site's own; the server learnt no sum"
    )


@pytest.mark.parametrize("clipping", ["fixed", "adaptive"])
def test_central_dp_with_the_sites_clipping_equals_the_servers_clipping(
    tmp_path: Path, clipping: str
) -> None:
    central = {"mode": "central", "noiseMultiplier": 0.5, "clippingNorm": 0.05, "delta": 1e-5}
    # adaptive: a range of 0.5 (changes are about 0.01): the count's value stays inside it
    secure = {"enabled": True, "clippingRange": 0.5 if clipping == "adaptive" else 4.0}
    privacy = {**central, "clipping": clipping, "secureAggregation": secure}
    experiment = _spec(tmp_path, privacy=privacy, training={"rounds": 4})
    plain = _plain(experiment)

    over_plain = _drive_over(LoopbackGrid(plain), plain, tmp_path / "plain")
    over_secure = _drive_over(LoopbackGrid(experiment), experiment, tmp_path / "secure")

    was, now = over_plain.result.privacy, over_secure.result.privacy
    assert was is not None and now is not None and was.central and now.central
    assert now.central["clippedByRound"] == was.central["clippedByRound"]
    assert sum(now.central["clippedByRound"]) > 0  # the sites did clip
    np.testing.assert_allclose(
        now.central["clippingNormByRound"], was.central["clippingNormByRound"], rtol=1e-6
    )
    assert now.central["epsilon"] == was.central["epsilon"]
    for p, q in zip(
        model_arrays(over_plain.run_dir), model_arrays(over_secure.run_dir), strict=True
    ):
        np.testing.assert_allclose(q, p, rtol=0, atol=1e-5)
    assert (was.secure_aggregation, now.secure_aggregation) == (False, True)
    assert any(
        "secure aggregation (SecAgg+) hides each site's clipped change" in line
        for line in now.scope["doesNotCover"]
    )


# --- a site's policy ---------------------------------------------------------


def _requiring(tmp_path: Path, experiment: Experiment) -> LoopbackGrid:
    policy = write_policy(tmp_path / "policy.yaml", {"requireSecureAggregation": True})
    grid = LoopbackGrid(experiment)
    node = next(n for n, c in grid.contexts.items() if c.node_config["partition-id"] == 1)
    grid.contexts[node].node_config["policy"] = str(policy)  # medfl site --policy FILE
    return grid


def test_a_site_requiring_secure_aggregation_refuses_a_plain_run_before_training(
    tmp_path: Path,
) -> None:
    from medfl.fl import GridTransport

    experiment = _plain(_spec(tmp_path))
    grid = _requiring(tmp_path, experiment)

    answers = GridTransport(grid, experiment).hello(["site-a", "site-b"])  # type: ignore[arg-type]

    assert not isinstance(answers["site-a"], Exception)
    answer = answers["site-b"]
    assert str(answer) == (
        "site 'site-b' takes no part: its policy requires secure aggregation "
        "(requireSecureAggregation), and this experiment sends plain updates "
        "(privacy.secureAggregation.enabled is false)"
    )


def test_a_site_requiring_secure_aggregation_trains_under_it_and_refuses_a_plain_request(
    tmp_path: Path,
) -> None:
    experiment = _spec(tmp_path)
    grid = _requiring(tmp_path, experiment)
    transport, params = _configured(experiment, grid)

    plain = transport.fit(1, params, ["site-a", "site-b"])
    masked = transport.secure_fit(SecureRequest(1, 120.0), params, ["site-a", "site-b", "site-c"])

    assert str(plain["site-b"]) == (
        "site 'site-b' takes no part: its policy requires secure aggregation "
        "(requireSecureAggregation), and the server asked for a plain update"
    )
    assert not isinstance(plain["site-a"], Exception)
    assert masked.weight == 270 and not any(
        isinstance(a, Exception) for a in masked.answers.values()
    )


# --- where it runs --------------------------------------------------------------


def test_engines_without_messages_refuse_it_and_flowers_is_the_default(tmp_path: Path) -> None:
    experiment = _spec(tmp_path)

    with pytest.raises(UsageError) as error:
        run(experiment, engine=FastEngine(), out=tmp_path / "fast")

    assert str(error.value) == (
        "privacy.secureAggregation: the 'fast' engine passes updates in memory, and SecAgg+ "
        "needs Flower's messages: run with --engine flower, --backend local or --backend "
        "kubernetes"
    )
    assert isinstance(default_engine(experiment), FlowerEngine)
    assert not (tmp_path / "fast").exists()


def test_the_in_process_transport_cannot_be_asked_for_it(tmp_path: Path) -> None:
    from medfl.training import InProcessTransport

    experiment = _spec(tmp_path)
    federation = Federation(experiment, InProcessTransport(experiment))
    setup = federation.setup()
    with pytest.raises(TrainingError) as error:
        federation.run_rounds(setup, _start(setup))

    assert str(error.value) == (
        "privacy.secureAggregation needs Flower's messages (SecAgg+): run with --engine "
        "flower, --backend local or --backend kubernetes"
    )


def _start(setup: Any) -> Any:
    from medfl.training import Checkpoint

    return Checkpoint(setup.start.initial(), {})


@pytest.mark.parametrize(
    ("sizes", "overrides", "message"),
    [
        (
            (200, 150, 100),
            {"strategy": {"name": "fedavg", "minSites": 1}},
            "privacy.secureAggregation: strategy.minSites 1 would let a round's sum be one "
            "site's update; set it to at least 2",
        ),
        (
            (200, 150, 100),
            {"privacy": {"secureAggregation": {"quantizationBits": 31}}},
            "privacy.secureAggregation.quantizationBits 31: 3 sites x 2**31 reaches the masks' "
            "modulus 2**32 (the sum would wrap); use fewer bits",
        ),
        (
            (100,),
            {},
            "privacy.secureAggregation: one site's sum is its own update; it needs at least 2 "
            "sites",
        ),
    ],
    ids=["min-sites-1", "sum-would-wrap", "one-site"],
)
def test_spec_refuses_a_secure_aggregation_that_protects_nothing(
    tmp_path: Path, sizes: tuple[int, ...], overrides: dict[str, Any], message: str
) -> None:
    from medfl.errors import SpecError

    with pytest.raises(SpecError) as error:
        _spec(tmp_path, sizes, **overrides)

    assert error.value.problems == [("", message)]


def test_a_search_in_one_process_refuses_it_before_any_trial(tmp_path: Path) -> None:
    from medfl.tuning import tune

    experiment = _spec(tmp_path)

    with pytest.raises(UsageError) as error:
        tune(experiment, out=tmp_path / "search")

    assert str(error.value) == (
        "privacy.secureAggregation: trials in one process pass updates in memory (the fast "
        "engine); search over a federation (--backend local or --server) for SecAgg+"
    )
    assert not (tmp_path / "search").exists()


def test_an_unmasked_sum_the_model_cannot_take_is_named() -> None:
    from medfl.training._secure import SecureSum

    current = [np.zeros((1, 3)), np.zeros(1)]
    wrong_shape = SecureSum([np.zeros((1, 2)), np.zeros(1)], 2, {}, {})
    not_finite = SecureSum([np.array([[0.0, np.inf, 0.0]]), np.zeros(1)], 2, {}, {})
    no_bit = SecureSum([np.zeros((1, 3)), np.zeros(1)], 2, {}, {})

    assert wrong_shape.check(current, 3, bit=False) == (
        "round 3: the unmasked sum does not match the model's shapes"
    )
    assert not_finite.check(current, 3, bit=False) == "round 3: the unmasked sum is not finite"
    assert no_bit.check(current, 3, bit=False) is None
    assert no_bit.check(current, 3, bit=True) == (
        "round 3: the unmasked sum does not match the model's shapes"
    )


def test_masks_need_a_power_of_two_range() -> None:
    with pytest.raises(ValueError) as error:
        _secagg.masks(b"\0" * 32, 3 * 2**20, [(2,)])

    assert str(error.value) == "the masks' range 3145728 is not a power of 2 up to 2**32"


@pytest.mark.ray
def test_secure_aggregation_on_flowers_simulation_engine(tmp_path: Path) -> None:
    experiment = _spec(tmp_path)
    plain = run(_plain(experiment), engine=FastEngine(), out=tmp_path / "fast", baselines=False)

    flower = run(
        experiment, engine=FlowerEngine(num_cpus=2), out=tmp_path / "flower", baselines=False
    )

    assert flower.result.status == "succeeded"
    assert flower.result.secure_aggregation is not None
    for p, q in zip(model_arrays(plain.run_dir), model_arrays(flower.run_dir), strict=True):
        np.testing.assert_allclose(q, p, rtol=0, atol=1e-5)
    assert wire.FIT == "train"  # SecAgg+'s stages share medfl's training message type


class _DropsAtMasking(LoopbackGrid):
    """One node's process dies when asked for its masked vector (after it shared its
    keys), as a hospital's machine might: Flower replies an error for it, or (silent)
    nothing comes back and the site's supervisor reports it lost."""

    def __init__(
        self,
        experiment: Experiment,
        node: int,
        silent: bool = False,
        stage: str = "collect_masked_vectors",
        also: frozenset[int] = frozenset(),
    ) -> None:
        super().__init__(experiment)
        self.nodes, self.dies_silently, self.stage = {node, *also}, silent, stage
        self.lost: dict[str, str] = {}

    def push_messages(self, messages: list[Any]) -> list[str]:
        from flwr.app import Message

        from tests.fl.test_flower_engine import _ACTOR_DIED

        ids = []
        for message in messages:
            configs = message.content.config_records.get(RECORD_KEY_CONFIGS)
            dying = configs is not None and configs.get(Key.STAGE) == self.stage
            node = message.metadata.dst_node_id
            if node not in self.nodes or not dying:
                ids += super().push_messages([message])
                continue
            message.metadata.__dict__["_message_id"] = f"dying-{node}"
            ids.append(f"dying-{node}")
            if self.dies_silently:
                self.lost["site-b"] = "its process exited (code 137)"
            else:
                self.replies[f"dying-{node}"] = Message(_ACTOR_DIED, reply_to=message)
        return ids


def test_a_site_that_dies_after_sharing_its_keys_is_unmasked_from_its_neighbours(
    tmp_path: Path, contributions: list[tuple[int, Contribution]]
) -> None:
    experiment = _spec(tmp_path)
    grid = _DropsAtMasking(experiment, node=893)  # site-b's node
    transport, params = _configured(experiment, grid)

    masked = transport.secure_fit(SecureRequest(1, 120.0), params, ["site-a", "site-b", "site-c"])

    assert str(masked.answers["site-b"]) == "site 'site-b': dropped out of secure aggregation"
    parts = [p for _, p in contributions]  # the two that answered
    assert [p.weight for p in parts] == [120, 60] and masked.weight == 180
    exact = [sum(p.weight * p.vector[i] for p in parts) / 180 for i in range(len(params))]
    bound = STEP * 2 / (180 / 120)
    error = max(float(np.max(np.abs(m - e))) for m, e in zip(masked.mean, exact, strict=True))
    assert error <= bound


def test_a_site_reported_lost_mid_protocol_drops_out_at_once_with_the_reason(
    tmp_path: Path,
) -> None:
    experiment = _spec(tmp_path)
    grid = _DropsAtMasking(experiment, node=893, silent=True)
    transport, params = _configured(experiment, grid, lost=lambda: grid.lost)
    began = time.monotonic()

    masked = transport.secure_fit(SecureRequest(1, 120.0), params, ["site-a", "site-b", "site-c"])

    assert time.monotonic() - began < 5  # not the 60 s reply timeout
    assert str(masked.answers["site-b"]) == "site 'site-b': its process exited (code 137)"
    assert masked.weight == 180


def test_local_dp_updates_masked_cost_what_they_cost_in_plain(tmp_path: Path) -> None:
    local = {"mode": "local", "noiseMultiplier": 3.0, "delta": 1e-5}
    experiment = _spec(tmp_path, privacy=local)
    plain = _plain(experiment)

    over_plain = _drive_over(LoopbackGrid(plain), plain, tmp_path / "plain")
    over_secure = _drive_over(LoopbackGrid(experiment), experiment, tmp_path / "secure")

    was, now = over_plain.result.privacy, over_secure.result.privacy
    assert was is not None and now is not None
    assert {n: (s.epsilon, s.steps) for n, s in now.sites.items()} == {
        n: (s.epsilon, s.steps) for n, s in was.sites.items()
    }
    assert min(s.epsilon for s in now.sites.values()) > 0
    for p, q in zip(
        model_arrays(over_plain.run_dir), model_arrays(over_secure.run_dir), strict=True
    ):
        np.testing.assert_allclose(q, p, rtol=0, atol=1e-5)
    assert now.secure_aggregation and now.scope["assumptions"][-1].startswith(
        "secure aggregation (SecAgg+)"
    )


def test_a_site_masks_nothing_for_an_update_its_own_check_rejects_and_says_why() -> None:
    from medfl.spec import SecureAggregation
    from medfl.training import LocalUpdate
    from medfl.training._secure import contribution, metadata, update_from

    current = [np.zeros((1, 3)), np.zeros(1)]
    update = LocalUpdate([np.array([[0.1, np.nan, 0.2]]), np.ones(1)], 50, 0.7, 4)
    request = SecureRequest(2, 100.0, clipping_norm=1.0)

    part = contribution(update, current, request, SecureAggregation(enabled=True))

    assert part.weight == 0 and part.problem == "update is not finite"
    assert [v.tolist() for v in part.vector] == [[[0.0, 0.0, 0.0]], [0.0], [0.0]]  # + the bit
    said, weight, clipped = update_from(metadata("site-x", update, part)["medfl-update"])
    assert (said.problem, said.num_examples, said.params, weight, clipped) == (
        "update is not finite",
        50,
        [],
        0,
        0,
    )


def test_a_sites_values_beyond_the_range_are_counted() -> None:
    from medfl.spec import SecureAggregation
    from medfl.training import LocalUpdate
    from medfl.training._secure import contribution

    current = [np.zeros(4)]
    update = LocalUpdate([np.array([0.5, -9.0, 3.0, 12.0])], 100, 0.7, 4)

    part = contribution(
        update, current, SecureRequest(1, 100.0), SecureAggregation(clipping_range=4.0)
    )

    assert (part.weight, part.clipped_values) == (100, 2)  # -9 and 12 at weight 100/100


def test_a_round_with_one_site_left_training_is_refused_before_any_message(tmp_path: Path) -> None:
    experiment = _spec(tmp_path)
    grid = LoopbackGrid(experiment)
    transport, params = _configured(experiment, grid)
    grid.received.clear()

    with pytest.raises(TrainingError) as error:
        transport.secure_fit(SecureRequest(4, 120.0), params, ["site-c"])

    assert str(error.value) == (
        "round 4: secure aggregation needs at least 2 sites training, and 1 can (site-c): "
        "one site's sum would be its own update"
    )
    assert grid.received == []


def test_too_few_sites_left_to_rebuild_the_masks_fails_the_round_naming_the_stage(
    tmp_path: Path,
) -> None:
    experiment = _spec(tmp_path)
    grid = _DropsAtMasking(experiment, node=893, stage="share_keys", also=frozenset({886}))
    transport, params = _configured(experiment, grid)

    with pytest.raises(TrainingError) as error:
        transport.secure_fit(SecureRequest(1, 120.0), params, ["site-a", "site-b", "site-c"])

    assert str(error.value) == (
        "round 1: secure aggregation stopped at its share keys stage: 1 of 3 site(s) "
        "answered, and each site needs 2 neighbour(s) answering; the server learnt no sum"
    )


def test_the_cli_refuses_the_fast_engine_in_one_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from medfl.cli import main

    spec = tmp_path / "secure.yaml"
    spec.write_text(yaml.safe_dump(make_sites(tmp_path, **SECURE)))

    code = main(["run", str(spec), "--engine", "fast", "--out", str(tmp_path / "run")])

    assert code == 2
    assert capsys.readouterr().err == (
        "medfl: error: privacy.secureAggregation: the 'fast' engine passes updates in memory, "
        "and SecAgg+ needs Flower's messages: run with --engine flower, --backend local or "
        "--backend kubernetes\n"
    )
    assert not (tmp_path / "run").exists()


def test_masks_come_from_the_whole_seed_at_both_ends() -> None:
    import importlib

    from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen as flowers

    a, flip = bytes(range(32)), b"\x01\x02\x03\x04"
    # the same 4 bytes XORed into two words: the 32-bit fold of b is a's
    b = bytes(x ^ y for x, y in zip(a[:8], flip * 2, strict=True)) + a[8:]
    shapes = [(3, 2), ()]

    same = [
        np.array_equal(x, y)
        for x, y in zip(flowers(a, 2**32, shapes), flowers(b, 2**32, shapes), strict=True)
    ]
    ours = [
        np.array_equal(x, y)
        for x, y in zip(
            _secagg.masks(a, 2**32, shapes), _secagg.masks(b, 2**32, shapes), strict=True
        )
    ]

    assert same == [True, True]  # Flower 1.42's generator sees 32 bits of the seed
    assert ours == [False, False]
    assert [m.shape for m in _secagg.masks(a, 2**32, shapes)] == [(3, 2), ()]
    for module in (
        "flwr.client.mod.secure_aggregation.secaggplus_mod",
        "flwr.server.workflow.secure_aggregation.secaggplus_workflow",
    ):
        assert importlib.import_module(module).pseudo_rand_gen is _secagg.masks


def test_the_weights_are_shares_of_a_power_of_two_and_a_site_refuses_more() -> None:
    from medfl.spec import SecureAggregation
    from medfl.training import LocalUpdate
    from medfl.training._secure import contribution, max_weight

    assert (
        max_weight(120, central=False),
        max_weight(128, central=False),
        max_weight(129, central=False),
    ) == (128.0, 128.0, 256.0)
    assert max_weight(500, central=True) == 1.0
    update = LocalUpdate([np.ones(2)], 300, 0.7, 4)
    with pytest.raises(ValueError) as error:
        contribution(update, [np.zeros(2)], SecureRequest(1, 256.0), SecureAggregation())
    assert (
        str(error.value)
        == "its weight 300 is outside (0, 256], the largest the server allows this round"
    )


def test_a_site_that_does_not_answer_in_time_is_reported_with_the_timeout(tmp_path: Path) -> None:
    from medfl.fl import GridTransport, Timeouts
    from medfl.training import Federation

    experiment = _spec(tmp_path)
    grid = _DropsAtMasking(experiment, node=893, silent=True)  # no one reports it lost
    transport = GridTransport(grid, experiment, Timeouts(startup=5, reply=0.3))  # type: ignore[arg-type]
    params = Federation(experiment, transport).setup().start.initial()

    masked = transport.secure_fit(SecureRequest(1, 128.0), params, ["site-a", "site-b", "site-c"])

    assert str(masked.answers["site-b"]) == "site 'site-b': no reply within 0.3 s"
    assert masked.weight == 180
