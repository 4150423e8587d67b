"""``medfl run FILE --backend kubernetes`` against the emulated cluster with the operator
running: the CLI creates the experiment in the kube context and follows its status,
while the test plays the kubelet."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from medfl.cli import main
from tests.operator.cluster import SITE_NAMES, Cluster, wait_for
from tests.operator.conftest import example_cr

pytestmark = pytest.mark.usefixtures("one_at_a_time")


class Kubelet(threading.Thread):
    """The kubelet's part, in a thread: ``medfl`` itself must run in the main thread
    (it installs signal handlers)."""

    def __init__(self, cluster: Cluster, name: str, succeeds: bool, message: str = "") -> None:
        super().__init__(daemon=True)
        self.cluster, self.name, self.succeeds, self.message = cluster, name, succeeds, message
        self.created: dict[str, Any] = {}

    def run(self) -> None:
        cluster, name = self.cluster, self.name
        found = wait_for(lambda: cluster.http.get("FederatedExperiment", name), 15, name)
        self.created = found
        cluster.made.append(name)
        for deployment in [f"{name}-server", *(f"{name}-site-{s}" for s in SITE_NAMES)]:
            cluster.kubelet.run(deployment)
        cluster.kubelet.finish_job(f"{name}-submit", self.succeeds, self.message)


def _spec_file(tmp_path: Path, name: str) -> Path:
    cr = example_cr()
    cr["metadata"] = {"name": name}
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(cr))
    return path


def _run(cluster: Cluster, tmp_path: Path, kubelet: Kubelet) -> int:
    kubelet.start()
    spec = _spec_file(tmp_path, kubelet.name)
    code = main(["run", str(spec), "--backend", "kubernetes", "--poll", "0.1"])
    kubelet.join(15)
    return code


def test_the_cli_creates_the_experiment_and_follows_it_to_succeeded(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubelet = Kubelet(cluster, "cli-ok", succeeds=True)
    assert _run(cluster, tmp_path, kubelet) == 0
    created = kubelet.created
    assert created["spec"]["training"]["rounds"] == 15  # the validated spec, defaults in
    assert created["spec"]["training"]["batchSize"] == 16
    assert created["metadata"]["namespace"] == "default"  # the kube context's
    out, err = capsys.readouterr()
    assert "created FederatedExperiment cli-ok in namespace default" in err
    assert "Succeeded=True (RunCompleted)" in err
    uid = created["metadata"]["uid"]
    assert f"exec deploy/cli-ok-server -- tar cf - -C /results/default/cli-ok-{uid[:8]} ." in out


def test_the_cli_exits_4_with_the_operators_reason_when_the_run_fails(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubelet = Kubelet(cluster, "cli-bad", succeeds=False, message="site hungary refused")
    assert _run(cluster, tmp_path, kubelet) == 4
    err = capsys.readouterr().err
    assert "the experiment failed on the cluster: site hungary refused" in err


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


@pytest.mark.parametrize("extra", [["--out", "x"], ["--insecure"], ["--site-policy", "a=b"]])
def test_options_of_other_backends_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    code = main(["run", str(_spec_file(tmp_path, "cli-x")), "--backend", "kubernetes", *extra])
    assert code == 2
    assert "not with --backend kubernetes" in capsys.readouterr().err
