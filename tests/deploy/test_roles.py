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

from medfl.deploy import free_port
from tests.helpers import make_frames, read_result, spec_dict, write_table

pytestmark = pytest.mark.deploy

MEDFL = [sys.executable, "-m", "medfl"]


def _env() -> dict[str, str]:
    return dict(os.environ, FLWR_TELEMETRY_ENABLED="0")


def _start(argv: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen(
            MEDFL + argv, stdout=handle, stderr=subprocess.STDOUT, env=_env(), cwd=cwd
        )


def _stop(process: subprocess.Popen[bytes], sig: int) -> int:
    process.send_signal(sig)
    return process.wait(timeout=30)


def _wait_for_text(log: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while text not in log.read_text(errors="replace"):
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[str]:
    """In tmp_path, as the README's walkthrough: certificates made at the coordinator,
    its server, and two hospitals' sites each in its own folder, all by relative paths."""
    made = subprocess.run(
        [*MEDFL, "certs", "certs", "--site", "site-a", "--site", "site-b"],
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert "PRIVATE" not in made.stderr
    port = free_port()
    keys = [f"--site-key=site-{s}=certs/sites/site-{s}.pub" for s in "ab"]
    argv = ["server", "--tls-dir", "certs", "--port", str(port), *keys]
    server = _start(argv, tmp_path / "server.log", tmp_path)
    _wait_for_text(tmp_path / "server.log", "listening", server)
    sites = []
    for name, frame in make_frames((70, 60)).items():
        # each hospital holds the CA, its own private key and its own file
        home = tmp_path / name
        write_table(home / "patients.csv", frame)
        (home / "tls").mkdir()
        (home / "tls" / "ca.pem").write_bytes((tmp_path / "certs" / "ca.pem").read_bytes())
        key = (tmp_path / "certs" / "sites" / f"{name}.key").read_bytes()
        (home / "tls" / f"{name}.key").write_bytes(key)
        argv = ["site", "--name", name, "--server", f"127.0.0.1:{port}", "--tls-dir", "tls"]
        argv += ["--data", "patients.csv", "--port", str(free_port())]
        sites.append(_start(argv, tmp_path / f"{name}.log", home))
    for name, site in zip(("site-a", "site-b"), sites, strict=True):
        _wait_for_text(tmp_path / f"{name}.log", f"site {name!r} connected to 127.0.0.1", site)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        # the hospitals press Ctrl-C; the coordinator's service manager sends SIGTERM
        codes = [_stop(p, signal.SIGINT) for p in sites] + [_stop(server, signal.SIGTERM)]
        logs = [p.read_text() for p in tmp_path.glob("*.log")]
        assert codes == [130, 130, 130], logs  # 130: interrupted, as the README says


def test_coordinator_and_two_hospitals_run_an_experiment_with_their_own_files(
    tmp_path: Path, federation: str
):
    server = federation
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

    submitted = subprocess.run(
        [
            *MEDFL,
            "submit",
            "experiment.yaml",
            "--server",
            server,
            "--tls-dir",
            "certs",
            "--out",
            "runs/study-1",
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )

    assert submitted.returncode == 0, submitted.stderr
    result = read_result(tmp_path / "runs" / "study-1")
    assert result["status"] == "succeeded" and len(result["rounds"]) == 2
    assert sorted(result["sites"]) == ["site-a", "site-b"]
    assert [result["sites"][s]["rows"] for s in ("site-a", "site-b")] == [70, 60]
    # the ServerApp wrote the outputs
    assert (tmp_path / "runs" / "study-1" / "report.md").is_file()


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
