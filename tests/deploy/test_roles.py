"""The across-machines commands of the README, each in its own process as on its own
host (here all on 127.0.0.1): ``medfl certs`` at the coordinator, ``medfl server``,
``medfl site`` at each hospital with its own file, ``medfl submit``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from medfl.runners._local import free_port
from tests.helpers import make_frames, read_result, spec_dict, write_table

pytestmark = pytest.mark.deploy

MEDFL = [sys.executable, "-m", "medfl"]


def _env() -> dict[str, str]:
    return dict(os.environ, FLWR_TELEMETRY_ENABLED="0")


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen(MEDFL + argv, stdout=handle, stderr=subprocess.STDOUT, env=_env())


def _stop(process: subprocess.Popen[bytes]) -> int:
    """Ctrl-C, as the user at that host would."""
    process.send_signal(signal.SIGINT)
    return process.wait(timeout=30)


def _wait_for_text(log: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while text not in log.read_text(errors="replace"):
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """Certificates made at the coordinator, a server and two sites running."""
    certs = tmp_path / "certs"
    made = subprocess.run(
        [*MEDFL, "certs", str(certs), "--site", "site-a", "--site", "site-b"],
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "PRIVATE" not in made.stderr
    port = free_port()
    keys = [f"--site-key=site-{s}={certs}/sites/site-{s}.pub" for s in "ab"]
    server_log = tmp_path / "server.log"
    server = _start(["server", "--tls-dir", str(certs), "--port", str(port), *keys], server_log)
    _wait_for_text(server_log, "listening", server)
    frames = make_frames((70, 60))
    sites = []
    for name, frame in frames.items():
        # each hospital holds its own key and the CA, and its own file
        home = tmp_path / name
        data = write_table(home / "patients.csv", frame)
        (home / "tls").mkdir()
        (home / "tls" / "ca.pem").write_bytes((certs / "ca.pem").read_bytes())
        key = home / "tls" / f"{name}.key"
        key.write_bytes((certs / "sites" / f"{name}.key").read_bytes())
        argv = ["site", "--name", name, "--server", f"127.0.0.1:{port}"]
        argv += ["--tls-dir", str(home / "tls"), "--data", str(data), "--port", str(free_port())]
        sites.append(_start(argv, tmp_path / f"{name}.log"))
    try:
        yield certs, f"127.0.0.1:{port}"
    finally:
        codes = [_stop(p) for p in [*sites, server]]
        # 130: stopped by Ctrl-C, as the README's exit codes say
        assert codes == [130, 130, 130], [p.read_text() for p in tmp_path.glob("*.log")]


def test_coordinator_and_two_hospitals_run_an_experiment_with_their_own_files(
    tmp_path: Path, federation: tuple[Path, str]
):
    certs, server = federation
    # the coordinator's spec names the sites; where their data is, only they know
    spec = spec_dict(
        [
            {"name": n, "data": {"source": "csv", "path": f"/nowhere/{n}.csv"}}
            for n in ("site-a", "site-b")
        ],
        training={"rounds": 2},
    )
    spec_file = tmp_path / "experiment.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    ca_only = tmp_path / "coordinator"
    ca_only.mkdir()
    (ca_only / "ca.pem").write_bytes((certs / "ca.pem").read_bytes())

    submitted = subprocess.run(
        [
            *MEDFL,
            "submit",
            str(spec_file),
            "--server",
            server,
            "--tls-dir",
            str(ca_only),
            "--out",
            str(tmp_path / "run"),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert submitted.returncode == 0, submitted.stderr
    result = read_result(tmp_path / "run")
    assert result["status"] == "succeeded" and len(result["rounds"]) == 2
    assert sorted(result["sites"]) == ["site-a", "site-b"]
    assert [result["sites"][s]["rows"] for s in ("site-a", "site-b")] == [70, 60]
    assert (tmp_path / "run" / "report.md").is_file()  # the ServerApp wrote the outputs


def test_a_site_without_its_key_is_told_before_it_starts(tmp_path: Path):
    (tmp_path / "ca.pem").write_text("the CA alone")
    done = subprocess.run(
        [*MEDFL, "site", "--name", "site-a", "--server", "127.0.0.1:1", "--tls-dir", str(tmp_path)],
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"medfl: error: --tls-dir {tmp_path}: site-a.key is missing (looked in it and in "
        "its sites/ folder; make it with medfl certs)"
    )
