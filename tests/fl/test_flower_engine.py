"""The Flower engine computes exactly what the fast engine computes.

Fast tests carry the federation over Flower messages in this process (a loopback
Grid that hands each message to the ClientApp, as a SuperNode would). The tests
marked ``ray`` start Flower's simulation engine for real, twice in all (about 20 s
each on 2 cores): one run that succeeds although one site is empty and another's
updates are rejected, and one that fails on a site's data error.

Tolerance: none. The Flower engine's final weights, per-round metrics and per-site
records are bit-for-bit equal to the fast engine's (compared with ==).
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from uuid import uuid4

import numpy as np
import pandas as pd
import pytest
from flwr.app import Context, Error, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from medfl import Experiment, FastEngine, FlowerEngine, RunOutcome, run
from medfl.data import SiteReport, SiteSummary
from medfl.errors import DataError, TrainingError
from medfl.fl import GridTransport, StopSignal, Timeouts, _client_app, make_client_app
from medfl.fl import _wire as wire
from medfl.fl._simulation import _portable_spec
from medfl.results import RunResult, RunStore
from medfl.runners import _single_thread
from medfl.runners._drive import DriveOptions, drive
from medfl.spec import parse_experiment
from medfl.training import EmptySiteError, LocalUpdate, SiteFailure, SiteHello

# --- an experiment of small CSV sites -----------------------------------------


def _site_frame(rng: np.random.Generator, n: int, age_scale: float = 1.0) -> pd.DataFrame:
    age = rng.normal(55, 10, n)
    bp = rng.normal(130, 15, n)
    sex = rng.choice(["M", "F"], n)
    logit = 0.08 * (age - 55) + 0.03 * (bp - 130) + (sex == "M") * 0.7 - 0.3
    outcome = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"age": age * age_scale, "bp": bp, "sex": sex, "outcome": outcome})


def _experiment(folder: Path, frames: dict[str, pd.DataFrame], **spec: object) -> Experiment:
    for name, frame in frames.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    doc = {
        "name": "tiny",
        "sites": [
            {"name": n, "data": {"source": "csv", "path": str(folder / f"{n}.csv")}} for n in frames
        ],
        "schema": {
            "target": {"column": "outcome"},
            "numeric": ["age", "bp"],
            "categorical": ["sex"],
            # unscaled, so delta's ages of ~5e31 overflow its local training
            "standardize": False,
        },
        "model": {"type": "custom", "importPath": "tests.fl.flaky_site_model:FlakyLogistic"},
        "training": {"rounds": 3, "localEpochs": 1, "batchSize": 16, "learningRate": 0.01},
        "strategy": {"name": "fedadam", "minSites": 3},
        **spec,
    }
    return parse_experiment(doc)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Experiment:
    """Three good sites; delta, whose updates are never finite (rejected); epsilon,
    whose model raises (failed); empty, with no outcome at all (skipped before round 1).
    minSites 3 lets the run go on."""
    rng = np.random.default_rng(7)
    empty = _site_frame(rng, 10)
    empty["outcome"] = None
    frames = {
        "alpha": _site_frame(rng, 120),
        "beta": _site_frame(rng, 45),  # small: its splits withhold their metrics
        "gamma": _site_frame(rng, 140),
        "delta": _site_frame(rng, 40, age_scale=1e30),
        "epsilon": _site_frame(rng, 30).assign(bp=1e25),
        "empty": empty,
    }
    return _experiment(tmp_path_factory.mktemp("sites"), frames)


def _run(experiment: Experiment, engine: FastEngine | FlowerEngine, out: Path) -> RunOutcome:
    return run(experiment, engine=engine, out=out, baselines=False)


@pytest.fixture(scope="module")
def fast(experiment: Experiment, tmp_path_factory: pytest.TempPathFactory) -> RunOutcome:
    return _run(experiment, FastEngine(), tmp_path_factory.mktemp("fast"))


@pytest.fixture(scope="module")
def flower(experiment: Experiment, tmp_path_factory: pytest.TempPathFactory) -> RunOutcome:
    return _run(experiment, FlowerEngine(num_cpus=2), tmp_path_factory.mktemp("flower"))


def _weights(run_dir: Path) -> list[np.ndarray]:
    with np.load(run_dir / "model.npz") as data:
        return [data[f"p{i}"] for i in range(len(data.files))]


def _comparable(result: RunResult) -> dict[str, object]:
    """Everything but timings, the engine's name and the sites' ledger keys (random)."""
    data = result.model_dump(exclude={"timings", "engine"})
    for record in data["rounds"]:
        record.pop("seconds")
    for site in (data["privacy"] or {}).get("sites", {}).values():
        assert len(site.pop("run")) == 32  # a uuid4's hex: each run its own
    return data


def _assert_same_run(a: RunOutcome, b: RunOutcome) -> None:
    for p, q in zip(_weights(a.run_dir), _weights(b.run_dir), strict=True):
        assert p.dtype == q.dtype
        np.testing.assert_array_equal(p, q)  # exact: no tolerance
    assert _comparable(a.result) == _comparable(b.result)


def test_fixture_sites_exercise_rejection_and_exclusion(fast: RunOutcome) -> None:
    assert list(fast.result.excluded_sites) == ["empty"]
    assert {r.sites["delta"].status for r in fast.result.rounds} == {"rejected"}
    assert {r.sites["epsilon"].reason for r in fast.result.rounds} == {
        "RuntimeError: flaky site crashed"
    }
    assert fast.result.status == "succeeded"
    assert fast.result.final is not None
    assert sorted(fast.result.final.withheld) == ["beta", "delta", "epsilon"]  # small splits
    assert fast.result.final.withheld["beta"] == (
        "site 'beta' withholds its test metrics: an outcome class under its "
        "policy's cell minimum of 5 in this split"
    )
    assert all(r.sites["beta"].withheld for r in fast.result.rounds)


# --- the federation over Flower messages, in this process ---------------------


# What Flower's simulation engine replies when a Ray actor dies (abridged).
_ACTOR_DIED = Error(
    0,
    "<class 'ray.exceptions.ActorDiedError'>:<'The actor died unexpectedly before finishing "
    "this task.\n\tclass_name: ClientAppActor\nThe actor is dead because...'>",
)


class LoopbackGrid:
    """What GridTransport uses of a Flower Grid, delivering each message at once to
    the ClientApp here, with one Context per node kept across messages (as a
    SuperNode keeps it). Node ids are unrelated to the sites' order on purpose."""

    def __init__(
        self,
        experiment: Experiment,
        silent: frozenset[int] = frozenset(),
        crashed: frozenset[int] = frozenset(),
        forgetful: bool = False,
        undeliverable: frozenset[int] = frozenset(),
    ) -> None:
        self.app = make_client_app(_portable_spec(experiment))
        count = len(experiment.sites)
        self.contexts = {
            900 - 7 * i: Context(
                run_id=1,
                node_id=900 - 7 * i,
                node_config={"partition-id": i, "num-partitions": count},
                state=RecordDict(),
                run_config={},
            )
            for i in range(count)
        }
        self.silent = silent  # nodes that take messages and never answer
        self.crashed = crashed  # nodes whose ClientApp process dies: Flower replies for them
        self.forgetful = forgetful  # every message meets a fresh process, as Ray may arrange
        self.undeliverable = undeliverable  # nodes gone from the server: push gives no id
        self.replies: dict[str, Message] = {}
        self.received: list[Message] = []  # every reply the server pulled, in order

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def push_messages(self, messages: list[Message]) -> list[str]:
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = str(uuid4())  # as Flower's grids do
            node = message.metadata.dst_node_id
            if node in self.undeliverable:
                ids.append("")
                continue
            if node in self.crashed:
                self.replies[message.metadata.message_id] = Message(_ACTOR_DIED, reply_to=message)
            elif node not in self.silent:
                if self.forgetful:
                    _client_app._SITES.clear()
                    _client_app._STATS_SITES.clear()
                # a copy, as over the wire: one content object may go to many nodes
                delivered = copy.deepcopy(message)
                self.replies[message.metadata.message_id] = self.app(delivered, self.contexts[node])
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: list[str]) -> list[Message]:
        pulled = [self.replies.pop(i) for i in message_ids if i in self.replies]
        self.received += pulled
        return pulled


@pytest.fixture(autouse=True, scope="module")
def _task_identity() -> None:
    """Messages take their run and sender from here; Flower's engines set it."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1


def _drive_over(grid: LoopbackGrid, experiment: Experiment, out: Path) -> RunOutcome:
    store = RunStore(out)
    store.create(experiment)
    with _single_thread():
        transport = GridTransport(grid, experiment)  # type: ignore[arg-type]
        result = drive(experiment, transport, store, DriveOptions("flower", baselines=False))
    return RunOutcome(result, out)


@pytest.mark.parametrize("forgetful", [False, True], ids=["kept-workers", "fresh-processes"])
def test_messages_carry_the_same_federation_as_the_fast_engine(
    experiment: Experiment, fast: RunOutcome, tmp_path: Path, forgetful: bool
) -> None:
    grid = LoopbackGrid(experiment, forgetful=forgetful)
    outcome = _drive_over(grid, experiment, tmp_path)
    _assert_same_run(outcome, fast)


def test_a_deployed_sites_own_policy_file_withholds_as_in_the_fast_engine(
    experiment: Experiment, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("disclosure: {minCellCount: 25}\n")  # gamma's splits are smaller
    fast = _run(experiment, FastEngine(site_policies=(("gamma", policy),)), tmp_path / "fast")
    grid = LoopbackGrid(experiment, forgetful=True)
    node = next(n for n, c in grid.contexts.items() if c.node_config["partition-id"] == 2)
    grid.contexts[node].node_config["policy"] = str(policy)  # medfl site --policy FILE

    outcome = _drive_over(grid, experiment, tmp_path / "grid")

    assert fast.result.final is not None
    assert "gamma" in fast.result.final.withheld
    assert fast.result.sites["gamma"]["disclosure"]["limits"]["minCellCount"] == 25
    _assert_same_run(outcome, fast)


@pytest.fixture(scope="module")
def transfer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Experiment, RunOutcome]:
    """Pretrained weights with the first layer frozen, FedBN (each site's BatchNorm stays
    home) and fine-tuning per site: every message kind a transfer run adds."""
    import torch

    from medfl.models import build_model
    from tests.helpers import make_sites

    folder = tmp_path_factory.mktemp("transfer")
    model = {"type": "mlp", "hidden": [8], "normalization": "batch"}
    torch.manual_seed(3)
    weights = folder / "weights.pt"
    torch.save(
        build_model(parse_experiment(make_sites(folder, model=model)).model, 6).state_dict(),
        weights,
    )
    doc = make_sites(
        folder,
        model={**model, "pretrained": {"path": str(weights)}, "freeze": ["hidden1"]},
        personalization={"localNormalization": True, "fineTuneEpochs": 1},
    )
    experiment = parse_experiment(doc)
    return experiment, _run(experiment, FastEngine(), folder / "fast")


@pytest.mark.parametrize("forgetful", [False, True], ids=["kept-workers", "fresh-processes"])
def test_transfer_run_over_messages_equals_the_fast_engine(
    transfer: tuple[Experiment, RunOutcome], tmp_path: Path, forgetful: bool
) -> None:
    experiment, fast = transfer
    grid = LoopbackGrid(experiment, forgetful=forgetful)

    outcome = _drive_over(grid, experiment, tmp_path)

    _assert_same_run(outcome, fast)
    assert fast.result.personalized is not None
    assert sorted(fast.result.personalized.sites) == ["site-a", "site-b", "site-c"]


def test_silent_site_fails_within_the_timeout_and_minsites_decides(
    experiment: Experiment, tmp_path: Path
) -> None:
    grid = LoopbackGrid(experiment, silent=frozenset({900}))  # alpha's node
    transport = GridTransport(grid, experiment, Timeouts(startup=0.3, reply=0.3))  # type: ignore[arg-type]
    answers = transport.hello(["alpha", "beta"])
    assert isinstance(answers["alpha"], SiteFailure)
    assert "no reply within 0.3 s" in str(answers["alpha"])
    assert isinstance(answers["beta"], SiteHello)


def test_site_whose_process_died_fails_with_a_one_line_reason(experiment: Experiment) -> None:
    grid = LoopbackGrid(experiment, crashed=frozenset({893}))  # beta's node
    answers = GridTransport(grid, experiment).hello(["alpha", "beta"])  # type: ignore[arg-type]
    assert isinstance(answers["alpha"], SiteHello)
    assert str(answers["beta"]) == (
        "site 'beta': its ClientApp failed: ray.exceptions.ActorDiedError: "
        "The actor died unexpectedly before finishing this task."
    )


def _configured(
    experiment: Experiment, grid: LoopbackGrid, **kwargs: object
) -> tuple[GridTransport, list[np.ndarray]]:
    """A transport past hello and configure, and the round-0 weights."""
    from medfl.training import Federation

    transport = GridTransport(grid, experiment, Timeouts(startup=5, reply=60), **kwargs)  # type: ignore[arg-type]
    federation = Federation(experiment, transport)
    setup = federation.setup()
    return transport, setup.start.initial()


def test_request_the_server_cannot_deliver_fails_that_site_after_a_grace(
    experiment: Experiment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("medfl.fl._transport._UNDELIVERED_GRACE_SECONDS", 0.2)
    grid = LoopbackGrid(experiment)
    transport, params = _configured(experiment, grid)
    grid.undeliverable = frozenset({893})  # beta's node left after hello
    started = time.monotonic()

    answers = transport.evaluate(params, "validation", ["alpha", "beta"])

    assert time.monotonic() - started < 5  # the grace, not the 60 s reply timeout
    assert str(answers["beta"]) == (
        "site 'beta': the server could not deliver the request: not connected"
    )
    assert not isinstance(answers["alpha"], Exception)


def test_a_lost_sites_reason_from_its_supervisor_beats_the_generic_one(
    experiment: Experiment,
) -> None:
    lost: dict[str, str] = {}
    grid = LoopbackGrid(experiment)
    transport, params = _configured(experiment, grid, lost=lambda: lost)
    grid.undeliverable = frozenset({893})
    lost["beta"] = "its process exited with code -9 (killed by SIGKILL)"

    answers = transport.evaluate(params, "validation", ["alpha", "beta"])

    assert (
        str(answers["beta"]) == "site 'beta': its process exited with code -9 (killed by SIGKILL)"
    )


def test_stop_signal_ends_a_wait_at_once_with_its_reason(experiment: Experiment) -> None:
    grid = LoopbackGrid(experiment, silent=frozenset(LoopbackGrid(experiment).contexts))
    stop = StopSignal()
    stop.set("engine crashed")
    transport = GridTransport(grid, experiment, Timeouts(startup=60, reply=60), stop)  # type: ignore[arg-type]
    with pytest.raises(TrainingError, match="engine crashed"):
        transport.hello(["alpha"])


# --- what travels: round trips of the wire format -----------------------------


@pytest.mark.parametrize(
    "update",
    [
        LocalUpdate([np.ones((1, 3), np.float32), np.zeros(1, np.float32)], 12, 0.25, 2),
        LocalUpdate([np.full(2, np.nan, np.float32)], 5, math.inf, 0, "local loss is not finite"),
        LocalUpdate([np.arange(3, dtype=np.float64) / 3], 7, 1 / 3, 1),
    ],
)
def test_local_update_round_trips_exactly(update: LocalUpdate) -> None:
    back = wire.update_of(wire.update_reply("alpha", update))
    assert (back.num_examples, back.steps, back.problem) == (
        update.num_examples,
        update.steps,
        update.problem,
    )
    assert back.loss == update.loss or (math.isnan(back.loss) and math.isnan(update.loss))
    for p, q in zip(back.params, update.params, strict=True):
        assert p.dtype == q.dtype
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize(
    "metrics",
    [
        {"loss": 0.1, "accuracy": 2 / 3, "auc": None, "sensitivity": None, "f1": 0.0},
        {},  # an empty split has no metrics at all
    ],
)
def test_metrics_round_trip_with_undefined_ones_as_none(metrics: dict[str, float | None]) -> None:
    back = wire.evaluation_of(wire.evaluation_reply("alpha", metrics, 9))
    assert back == (metrics, 9)
    assert list(back[0]) == list(metrics)


def test_hello_round_trips(experiment: Experiment) -> None:
    summary = SiteSummary("alpha", 3, {"age": (3, 1.5, 0.1)}, {"sex": {"F": 1, "M": 2}})
    report = SiteReport("alpha", rows_read=4, rows_without_outcome=1, rows=3, positives=1)
    report.missing, report.unknown_levels = {"bp": 1}, {"sex": ["X"]}
    back = wire.hello_of(wire.hello_reply("alpha", SiteHello(summary, report)))
    assert back.summary == summary
    assert back.report.to_dict() == report.to_dict()


@pytest.mark.parametrize(
    ("raised", "expected_type"),
    [
        (EmptySiteError("site 'x': no training rows", site="x"), EmptySiteError),
        (DataError("site 'x': column 'bp' is odd", site="x", column="bp"), DataError),
        (KeyError("bp"), SiteFailure),
    ],
)
def test_site_errors_keep_type_and_message(raised: Exception, expected_type: type) -> None:
    back = wire.error_of("x", wire.error_reply("x", raised))
    assert type(back) is expected_type
    if isinstance(raised, DataError):
        assert (str(back), back.site, back.column) == (str(raised), raised.site, raised.column)
    else:
        assert str(back) == "site 'x': KeyError: 'bp'"  # as the in-process engine says it


# --- Flower's simulation engine on Ray -----------------------------------------


@pytest.mark.ray
def test_flower_engine_equals_fast_engine_exactly(flower: RunOutcome, fast: RunOutcome) -> None:
    _assert_same_run(flower, fast)


@pytest.mark.ray
def test_flower_run_directory_records_success_and_the_sites_that_failed(flower: RunOutcome) -> None:
    saved = json.loads((flower.run_dir / "result.json").read_text())
    assert saved["status"] == "succeeded"
    assert saved["engine"] == "flower"
    assert [r["sites"]["delta"]["reason"] for r in saved["rounds"]] == [
        "local loss is not finite"
    ] * 3
    assert [r["sites"]["epsilon"]["status"] for r in saved["rounds"]] == ["failed"] * 3
    assert "no training rows" in saved["excludedSites"]["empty"]


@pytest.mark.ray
def test_site_data_error_fails_flower_run_with_the_same_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    broken = _site_frame(rng, 30).drop(columns=["bp"])
    frames = {"alpha": _site_frame(rng, 30), "beta": broken, "gamma": _site_frame(rng, 30)}
    experiment = _experiment(tmp_path, frames)

    with pytest.raises(DataError) as fast_error:
        _run(experiment, FastEngine(), tmp_path / "fast")
    with pytest.raises(DataError) as flower_error:
        _run(experiment, FlowerEngine(num_cpus=2), tmp_path / "flower")

    assert str(flower_error.value) == str(fast_error.value)
    assert (flower_error.value.site, flower_error.value.column) == ("beta", "bp")
    saved = json.loads((tmp_path / "flower" / "result.json").read_text())
    assert (saved["status"], saved["error"]) == ("failed", str(fast_error.value))
    import ray

    assert not ray.is_initialized()


@pytest.mark.ray
def test_transfer_run_on_flowers_simulation_engine_equals_the_fast_engine(
    transfer: tuple[Experiment, RunOutcome], tmp_path: Path
) -> None:
    experiment, fast = transfer

    flower = _run(experiment, FlowerEngine(num_cpus=2), tmp_path / "flower")

    _assert_same_run(flower, fast)


# --- a federated GLM over Flower messages ------------------------------------


def _glm_experiment(tmp_path: Path) -> Experiment:
    from tests.helpers import deep_merge, make_sites

    doc = make_sites(tmp_path, (80, 60, 70))
    return parse_experiment(
        deep_merge(
            doc, {"glm": {"formula": "outcome ~ age + bp + sex + C(smoker)", "siteEffect": True}}
        )
    )


@pytest.mark.parametrize("forgetful", [False, True], ids=["kept-workers", "fresh-processes"])
def test_glm_over_messages_equals_the_in_process_fit_exactly(
    tmp_path: Path, forgetful: bool
) -> None:
    from medfl.stats import glm_dict
    from medfl.stats._federated import InProcessStats, fit_glm

    experiment = _glm_experiment(tmp_path)
    grid = LoopbackGrid(experiment, forgetful=forgetful)

    over_flower = fit_glm(experiment, GridTransport(grid, experiment))  # type: ignore[arg-type]
    in_process = fit_glm(experiment, InProcessStats(experiment))

    assert glm_dict(over_flower) == glm_dict(in_process)  # exact: no tolerance


def test_glm_site_whose_policy_file_refuses_is_named_over_messages(tmp_path: Path) -> None:
    from medfl.stats._federated import fit_glm

    experiment = _glm_experiment(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text("disclosure: {minRows: 1000}\n")
    grid = LoopbackGrid(experiment)
    node = next(n for n, c in grid.contexts.items() if c.node_config["partition-id"] == 1)
    grid.contexts[node].node_config["policy"] = str(policy)
    _client_app._STATS_SITES.clear()

    with pytest.raises(DataError) as err:
        fit_glm(experiment, GridTransport(grid, experiment))  # type: ignore[arg-type]

    assert str(err.value) == (
        "site 'site-b' refuses the GLM: fewer usable rows than its policy's minimum of 1000"
    )


@pytest.mark.parametrize("forgetful", [False, True], ids=["kept-workers", "fresh-processes"])
def test_statistics_over_messages_equal_the_in_process_ones_exactly(
    tmp_path: Path, forgetful: bool
) -> None:
    from medfl.stats._federated import InProcessStats, describe_federation

    experiment = _glm_experiment(tmp_path)
    grid = LoopbackGrid(experiment, forgetful=forgetful)

    over_flower = describe_federation(experiment, GridTransport(grid, experiment))  # type: ignore[arg-type]
    in_process = describe_federation(experiment, InProcessStats(experiment))

    assert over_flower.to_dict() == in_process.to_dict()
    assert over_flower.overall["all"].suppressed  # the default policy withheld something
