"""Where trials run, chosen from ``medfl tune``'s flags, and a trial's run as the
ServerApp drives it (validation rounds only) — without starting any process."""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from medfl.cli import main
from medfl.cli._tune import _where
from medfl.deploy import allow_rounds_after, allowed_after, request_stop
from medfl.errors import TrainingError
from medfl.fl.deployed import _stop_when_asked
from medfl.results import RoundRecord
from medfl.runners import LocalBackend
from medfl.runners._drive import DriveOptions, drive
from medfl.spec import parse_experiment
from medfl.training import InProcessTransport
from medfl.tuning import FederationTrials, InProcessTrials
from medfl.tuning._remote import _Scorer
from medfl.tuning._trial import TrialFailed
from tests.helpers import deep_merge, make_sites

LR = {"training.learningRate": {"type": "float", "low": 0.01, "high": 0.3, "log": True}}


def _args(**given: Any) -> argparse.Namespace:
    flags = {"server": None, "backend": "simulation", "insecure": False, "tls_dir": None,
             "ray_address": None, "site_policy": [], "round_timeout": 600.0}  # fmt: skip
    return argparse.Namespace(**(flags | given))


def test_the_flags_choose_where_trials_run_by_type(tmp_path: Path) -> None:
    experiment = parse_experiment(make_sites(tmp_path))
    (tmp_path / "ca.pem").write_text("")

    assert _where(_args(), experiment) == InProcessTrials()
    local = _where(_args(backend="local", insecure=True, round_timeout=9.0), experiment)
    assert isinstance(local, LocalBackend) and local.insecure and local.round_timeout_s == 9.0
    remote = _where(_args(server="host:9091", tls_dir=tmp_path), experiment)
    assert remote == FederationTrials("host:9091", tmp_path / "ca.pem", round_timeout_s=600.0)


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--server", "h:1"], "--server needs --tls-dir DIR (holding ca.pem) or --insecure"),
        (["--server", "h:1", "--backend", "local", "--insecure"], "give one of them"),
        (["--server", "h:1", "--insecure", "--ray-address", "r:1"], "--ray-address"),
        (["--tls-dir", "/nowhere"], "apply to --backend local or --server only"),
        (["--server", "h:1", "--tls-dir", "/nowhere"], "ca.pem is missing"),
    ],
)
def test_mistaken_federation_flags_are_named(tmp_path, capsys, flags, said) -> None:
    spec = tmp_path / "search.yaml"
    spec.write_text(yaml.safe_dump(deep_merge(make_sites(tmp_path), {"tuning": {"space": LR}})))

    assert main(["tune", str(spec), *flags]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err


def test_a_trial_run_records_validation_rounds_only(tmp_path: Path) -> None:
    """What the ServerApp does for ``medfl-job: trial``: no test split, model or checkpoint."""
    from medfl.results import RunStore

    experiment = parse_experiment(make_sites(tmp_path))
    store = RunStore(tmp_path / "trial")
    store.create(experiment)
    read: list[str] = []
    transport = InProcessTransport(experiment)
    evaluate = transport.evaluate
    transport.evaluate = lambda p, split, s: read.append(split) or evaluate(p, split, s)  # type: ignore[method-assign]

    result = drive(experiment, transport, store, DriveOptions(validation_only=True))

    assert result.status == "succeeded" and result.final is None and len(result.rounds) == 3
    assert "test" not in read
    assert sorted(p.name for p in store.path.iterdir()) == ["experiment.yaml", "result.json"]


def test_the_scorer_reports_at_the_rungs_and_fails_an_undefined_score(tmp_path: Path) -> None:
    doc = make_sites(tmp_path, tuning={"space": LR, "gracePeriod": 1, "scheduler": "asha"})
    tuning = parse_experiment(doc).tuning
    assert tuning is not None
    seen: list[dict[str, Any]] = []
    scorer = _Scorer(tuning, 3, seen.append, tmp_path / "run")

    for n in (1, 2):
        scorer(RoundRecord(round=n, metrics={"auc": 0.5 + n / 10}, sites={}))
        assert allowed_after(tmp_path / "run") == n  # its run may go on past the rung
    assert [r["round"] for r in seen] == [1, 2]  # the last only once the run succeeded
    with pytest.raises(TrialFailed, match="round 3: the validation auc is undefined"):
        scorer(RoundRecord(round=3, metrics={"auc": float("nan")}, sites={}))


def _waiting_check(tmp_path: Path, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    tuning = {"space": LR, "gracePeriod": 1, "scheduler": "asha", "trialTimeoutSeconds": timeout}
    experiment = parse_experiment(make_sites(tmp_path, training={"rounds": 3}, tuning=tuning))
    return _stop_when_asked(tmp_path / "run", experiment.tuning, 3)


def test_a_trial_run_waits_after_a_rung_for_the_searchs_word(tmp_path: Path) -> None:
    check = _waiting_check(tmp_path)
    out = tmp_path / "run"
    threading.Timer(0.3, allow_rounds_after, (out, 1)).start()
    began = time.monotonic()
    check(RoundRecord(round=1, metrics={}, sites={}))  # go on: returns
    assert time.monotonic() - began >= 0.25
    threading.Timer(0.3, request_stop, (out, "the search stopped this trial (ASHA)")).start()
    with pytest.raises(TrainingError, match="stopped after round 2: the search stopped this"):
        check(RoundRecord(round=2, metrics={}, sites={}))
    check3 = _waiting_check(tmp_path / "b", timeout=0.2)
    with pytest.raises(TrainingError, match="did not read its score within"):
        check3(RoundRecord(round=1, metrics={}, sites={}))
