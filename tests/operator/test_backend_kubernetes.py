"""``medfl run FILE --backend kubernetes`` against the emulated cluster with the operator
running: the CLI creates the experiment in the kube context and follows its status,
while the test plays the kubelet."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from medfl import run
from medfl.cli import main
from medfl.k8s._joblog import result_lines
from medfl.spec import parse_experiment
from tests.operator.cluster import SITE_NAMES, Cluster, wait_for
from tests.operator.conftest import example_cr

pytestmark = pytest.mark.usefixtures("one_at_a_time")


class Kubelet(threading.Thread):
    """The kubelet's part, in a thread: ``medfl`` itself must run in the main thread
    (it installs signal handlers)."""

    def __init__(
        self, cluster: Cluster, name: str, succeeds: bool, message: str = "", log: str = ""
    ) -> None:
        super().__init__(daemon=True)
        self.cluster, self.name, self.succeeds, self.message = cluster, name, succeeds, message
        self.log = log  # the submission pod's
        self.created: dict[str, Any] = {}

    def run(self) -> None:
        cluster, name = self.cluster, self.name
        found = wait_for(lambda: cluster.http.get("FederatedExperiment", name), 15, name)
        self.created = found
        cluster.made.append(name)
        for deployment in [f"{name}-server", *(f"{name}-site-{s}" for s in SITE_NAMES)]:
            cluster.kubelet.run(deployment)
        cluster.kubelet.finish_job(f"{name}-submit", self.succeeds, self.message, self.log)


def _spec_file(tmp_path: Path, name: str) -> Path:
    cr = example_cr()
    cr["metadata"] = {"name": name}
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(cr))
    return path


def _run(cluster: Cluster, tmp_path: Path, kubelet: Kubelet, *extra: str) -> int:
    kubelet.start()
    spec = _spec_file(tmp_path, kubelet.name)
    code = main(["run", str(spec), "--backend", "kubernetes", "--poll", "0.1", *extra])
    kubelet.join(15)
    return code


@pytest.fixture(scope="module")
def server_result(tmp_path_factory: pytest.TempPathFactory) -> str:
    """result.json as the ServerApp writes it, from a real two-round run here."""
    experiment = parse_experiment(example_cr())
    short = experiment.training.model_copy(update={"rounds": 2})
    experiment = experiment.model_copy(update={"training": short})
    out = tmp_path_factory.mktemp("server") / "run"
    run(experiment, out=out, baselines=False, report=False)
    return (out / "result.json").read_text()


def test_the_cli_creates_the_experiment_follows_it_and_copies_result_json(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str], server_result: str
) -> None:
    log = "\n".join(["INFO submitted", *result_lines(server_result), ""])
    kubelet = Kubelet(cluster, "cli-ok", succeeds=True, log=log)
    local = tmp_path / "local-copy"
    assert _run(cluster, tmp_path, kubelet, "--out", str(local)) == 0
    assert json.loads((local / "result.json").read_text()) == json.loads(server_result)
    assert "## " in (local / "report.md").read_text()  # the report, made here from it
    assert (local / "experiment.yaml").is_file()
    created = kubelet.created
    assert created["spec"]["training"]["rounds"] == 15  # the validated spec, defaults in
    assert created["spec"]["training"]["batchSize"] == 16
    assert created["metadata"]["namespace"] == "default"  # the kube context's
    out, err = capsys.readouterr()
    assert "created FederatedExperiment cli-ok in namespace default" in err
    assert "Succeeded=True (RunCompleted)" in err
    assert f"result.json copied from the submission's log to {local / 'result.json'}" in err
    uid = created["metadata"]["uid"]
    assert f"exec deploy/cli-ok-server -- tar cf - -C /results/default/cli-ok-{uid[:8]} ." in out


def test_the_cli_exits_4_with_the_operators_reason_when_the_run_fails(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubelet = Kubelet(cluster, "cli-bad", succeeds=False, message="site hungary refused")
    assert _run(cluster, tmp_path, kubelet) == 4
    err = capsys.readouterr().err
    assert "the experiment failed on the cluster: site hungary refused" in err
    assert "the submission's log holds no result.json" in err


def test_an_experiment_of_that_name_already_there_is_a_usage_error(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cr = example_cr()
    cr["metadata"] = {"name": "cli-twice", "namespace": "default"}
    cluster.http.create("FederatedExperiment", cr)
    cluster.made.append("cli-twice")
    code = main(["run", str(_spec_file(tmp_path, "cli-twice")), "--backend", "kubernetes"])
    assert code == 2
    assert (
        "a FederatedExperiment named 'cli-twice' exists in namespace 'default'"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize("extra", [["--tls-dir", "x"], ["--insecure"], ["--site-policy", "a=b"]])
def test_options_of_other_backends_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    code = main(["run", str(_spec_file(tmp_path, "cli-x")), "--backend", "kubernetes", *extra])
    assert code == 2
    assert "not with --backend kubernetes" in capsys.readouterr().err
