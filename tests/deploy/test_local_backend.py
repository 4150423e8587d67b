"""``--backend local`` for real: a Flower SuperLink and one SuperNode process per site
on 127.0.0.1 (random free ports), TLS on and every site's key registered, the run
submitted with ``flwr run``. Starting a dozen Python processes costs 10-15 s on 2
cores, so the runs here are kept small. Every test checks that no process is left.

Tolerance against the simulation: none — the deployed run's final metrics, per-round
records and model are bit-for-bit the fast engine's (compared with ==).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medfl import FastEngine, run
from medfl.deploy import FlowerCli, SiteCommand, make_server_tls
from medfl.errors import TrainingError
from medfl.results import RoundRecord
from medfl.runners import LocalBackend
from medfl.spec import load_experiment, parse_experiment
from tests.deploy.flower_processes import kill_site
from tests.helpers import assert_same_arrays, make_sites, model_arrays, read_result

pytestmark = pytest.mark.deploy


def _no_private_key_in(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            assert b"PRIVATE KEY" not in path.read_bytes(), path


def test_example_on_the_deployment_engine_equals_the_simulation(tmp_path: Path):
    experiment = load_experiment("examples/heart-disease/experiment.yaml")
    training = experiment.training.model_copy(update={"rounds": 2})
    experiment = experiment.model_copy(update={"training": training})
    seen: list[int] = []

    deployed = run(
        experiment,
        engine=LocalBackend(),
        out=tmp_path / "local",
        baselines=False,
        progress=lambda r: seen.append(r.round),
    )
    simulated = run(experiment, engine=FastEngine(), out=tmp_path / "fast", baselines=False)

    local, fast = read_result(deployed.run_dir), read_result(simulated.run_dir)
    assert local["status"] == "succeeded" and local["engine"] == "local"
    assert local["final"] == fast["final"]
    for mine, theirs in zip(local["rounds"], fast["rounds"], strict=True):
        mine.pop("seconds"), theirs.pop("seconds")
        assert mine == theirs
    assert_same_arrays(model_arrays(deployed.run_dir), model_arrays(simulated.run_dir))
    assert seen == [1, 2]
    logs = sorted(p.name for p in (deployed.run_dir / "deployment").glob("*.log"))
    sites = ["cleveland", "hungary", "switzerland", "va-long-beach"]
    site_logs = sorted(f"site-{s}{suffix}.log" for s in sites for suffix in (".apps", ""))
    assert logs == ["server.log", *site_logs]
    _no_private_key_in(deployed.run_dir)


def _toy(tmp_path: Path, **overrides: object):
    spec = make_sites(tmp_path, (120, 100, 80), **overrides)
    return parse_experiment(spec)


def test_transfer_run_deployed_equals_the_simulation(tmp_path: Path):
    """Pretrained start, frozen first layer, FedBN and fine-tuning, over real processes:
    each site's own layers survive between rounds in the SuperNode's context."""
    import torch

    from medfl.models import build_model

    model = {"type": "mlp", "hidden": [8], "normalization": "batch"}
    torch.manual_seed(5)
    weights = tmp_path / "weights.pt"
    torch.save(build_model(_toy(tmp_path, model=model).model, 6).state_dict(), weights)
    experiment = _toy(
        tmp_path,
        model={**model, "pretrained": {"path": str(weights)}, "freeze": ["hidden1"]},
        personalization={"localNormalization": True, "fineTuneEpochs": 1},
        training={"rounds": 2},
    )

    deployed = run(experiment, engine=LocalBackend(), out=tmp_path / "local", baselines=False)
    simulated = run(experiment, engine=FastEngine(), out=tmp_path / "fast", baselines=False)

    local, fast = read_result(deployed.run_dir), read_result(simulated.run_dir)
    assert local["status"] == "succeeded"
    for key in ("final", "personalized", "model"):
        assert local[key] == fast[key], key
    assert_same_arrays(model_arrays(deployed.run_dir), model_arrays(simulated.run_dir))


def _kill_when_round_1_is_seen(site: str):  # type: ignore[no-untyped-def]
    """A progress hook that kills ``site`` once round 1 is reported. Progress is read
    from result.json, so a later round may already be running by then."""

    def hook(record: RoundRecord) -> None:
        if record.round == 1:
            kill_site(site)

    return hook


def test_site_killed_mid_run_is_reported_and_the_rest_finish_when_min_sites_allow(
    tmp_path: Path,
):
    experiment = _toy(tmp_path, training={"rounds": 5}, strategy={"name": "fedavg", "minSites": 2})

    outcome = run(
        experiment,
        engine=LocalBackend(),
        out=tmp_path / "run",
        baselines=False,
        progress=_kill_when_round_1_is_seen("site-c"),
    )

    result = read_result(outcome.run_dir)
    assert result["status"] == "succeeded" and len(result["rounds"]) == 5
    states = [r["sites"]["site-c"]["status"] for r in result["rounds"]]
    alive = states.index("failed")
    assert alive >= 1 and states == ["ok"] * alive + ["failed"] * (5 - alive)
    for later in result["rounds"][alive:]:
        reason = later["sites"]["site-c"]["reason"]
        assert reason.startswith("its process exited with code -9 (killed by SIGKILL)")
        assert {later["sites"][s]["status"] for s in ("site-a", "site-b")} == {"ok"}
    assert sorted(result["final"]["sites"]) == ["site-a", "site-b"]


def test_site_killed_mid_run_fails_the_run_naming_it_when_min_sites_do_not_allow(
    tmp_path: Path,
):
    experiment = _toy(tmp_path, training={"rounds": 5})

    with pytest.raises(TrainingError) as raised:
        run(
            experiment,
            engine=LocalBackend(),
            out=tmp_path / "run",
            baselines=False,
            progress=_kill_when_round_1_is_seen("site-b"),
        )

    message = str(raised.value)
    failed_round = int(message.split(":", 1)[0].removeprefix("round "))
    assert failed_round >= 2
    assert message.startswith(
        f"round {failed_round}: only 2 site(s) returned a usable update and minSites is 3 "
        "(site-b: its process exited with code -9 (killed by SIGKILL)"
    )
    result = read_result(tmp_path / "run")
    assert result["status"] == "failed" and result["errorKind"] == "TrainingError"
    assert [r["round"] for r in result["rounds"]] == list(range(1, failed_round))


def test_unregistered_site_is_refused_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    experiment = _toy(tmp_path, training={"rounds": 1})
    register = FlowerCli.register

    def forget_site_b(self: FlowerCli, public_key: Path, site: str) -> str:
        return "" if site == "site-b" else register(self, public_key, site)

    monkeypatch.setattr(FlowerCli, "register", forget_site_b)

    with pytest.raises(TrainingError) as raised:
        run(experiment, engine=LocalBackend(), out=tmp_path / "run", baselines=False)

    message = str(raised.value)
    assert "site 'site-b'" in message
    assert "exited with code 305" in message and "not registered" in message


def test_site_that_trusts_another_ca_is_refused_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    experiment = _toy(tmp_path, training={"rounds": 1})
    other = make_server_tls(tmp_path / "other")
    argv = SiteCommand.argv

    def site_b_trusts_other_ca(self: SiteCommand) -> list[str]:
        return argv(replace(self, ca=other.ca) if self.site == "site-b" else self)

    monkeypatch.setattr(SiteCommand, "argv", site_b_trusts_other_ca)

    with pytest.raises(TrainingError) as raised:
        run(experiment, engine=LocalBackend(), out=tmp_path / "run", baselines=False)

    message = str(raised.value)
    assert message.startswith(
        "site 'site-b': its process exited with code 305 (the server's TLS certificate "
        "is not signed by the CA this process trusts"
    )
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert read_result(tmp_path / "run")["status"] == "failed"


def test_interrupted_run_stops_every_process_and_resumes_to_the_simulations_result(
    tmp_path: Path,
):
    # with local DP: the resumed run's site processes are new, so the accounting they
    # continue (steps taken, ledger key) reaches them in the hello, over Flower
    privacy = {"mode": "local", "noiseMultiplier": 2.0, "delta": 1e-5}
    experiment = _toy(tmp_path, training={"rounds": 4}, privacy=privacy)

    def interrupt_after_round_1(record: RoundRecord) -> None:
        if record.round == 1:
            raise KeyboardInterrupt  # what Ctrl-C (or SIGTERM, in the CLI) raises

    with pytest.raises(KeyboardInterrupt):
        run(
            experiment,
            engine=LocalBackend(),
            out=tmp_path / "run",
            baselines=False,
            progress=interrupt_after_round_1,
        )
    interrupted = read_result(tmp_path / "run")
    assert interrupted["status"] == "failed" and interrupted["error"] == "interrupted"
    kept = len(interrupted["rounds"])
    assert 1 <= kept < 4  # the process tree is gone: the autouse fixture checks it

    resumed = run(engine=LocalBackend(), resume=tmp_path / "run", baselines=False)
    simulated = run(experiment, engine=FastEngine(), out=tmp_path / "fast", baselines=False)

    assert resumed.result.status == "succeeded" and len(resumed.result.rounds) == 4
    assert read_result(resumed.run_dir)["final"] == read_result(simulated.run_dir)["final"]
    assert_same_arrays(model_arrays(resumed.run_dir), model_arrays(simulated.run_dir))
    local, fast = read_result(resumed.run_dir)["privacy"], read_result(simulated.run_dir)["privacy"]
    for name, site in fast["sites"].items():
        assert local["sites"][name]["epsilon"] == pytest.approx(site["epsilon"], abs=1e-9)
        assert local["sites"][name]["steps"] == site["steps"]
        assert local["sites"][name]["run"] == interrupted["privacy"]["sites"][name]["run"]


def test_glm_statistics_and_a_secure_run_on_one_deployment_equal_the_in_process_ones(
    tmp_path: Path,
):
    """Three jobs submitted to one running deployment (as a search submits its trials):
    the deployment's start is paid once. The secure run (SecAgg+ through real SuperNodes,
    whose ClientApp processes keep the protocol's state in the node's Context) equals
    the plain fast-engine run to within SecAgg+'s quantisation."""
    from medfl.results import RunStore
    from medfl.runners._local import deployed, follow, submit_run
    from medfl.stats import glm_dict
    from medfl.stats._federated import (
        GLM_FILE,
        STATS_FILE,
        InProcessStats,
        describe_federation,
        fit_glm,
    )
    from medfl.tuning import FederationTrials

    experiment = _toy(tmp_path, glm={"formula": "outcome ~ age + bp + C(smoker)"})
    secure = _toy(
        tmp_path, training={"rounds": 2}, privacy={"secureAggregation": {"enabled": True}}
    )
    jobs = {"glm": experiment, "stats": experiment, "train": secure}
    with deployed(experiment, LocalBackend(), tmp_path / "logs") as running:
        cli = FederationTrials(running.address, running.ca).cli(tmp_path)
        for job, spec in jobs.items():
            store = RunStore(tmp_path / job)
            store.create(spec)
            scratch = tmp_path / f"scratch-{job}"
            scratch.mkdir()
            run_id = submit_run(cli, spec, store.path, False, (180, 600), scratch, job=job)
            follow(store, cli, run_id, None, watch=running.watch, until_result_ends=True)
            assert store.load_result().status == "succeeded", store.load_result().error

    deployed_glm = json.loads((tmp_path / "glm" / GLM_FILE).read_text())
    assert deployed_glm == glm_dict(fit_glm(experiment, InProcessStats(experiment)))
    deployed_stats = json.loads((tmp_path / "stats" / STATS_FILE).read_text())
    assert deployed_stats == describe_federation(experiment, InProcessStats(experiment)).to_dict()
    plain = secure.model_copy(update={"privacy": experiment.privacy})
    fast = run(plain, engine=FastEngine(), out=tmp_path / "fast", baselines=False)
    for p, q in zip(model_arrays(fast.run_dir), model_arrays(tmp_path / "train"), strict=True):
        np.testing.assert_allclose(q, p, rtol=0, atol=1e-5)
    masked = read_result(tmp_path / "train")["secureAggregation"]
    assert masked["sites"] == 3 and masked["clippedValues"] == dict.fromkeys(
        ["site-a", "site-b", "site-c"], 0
    )
