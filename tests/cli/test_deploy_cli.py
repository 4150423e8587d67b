"""The deployment options and commands refuse a user's mistake before any process
starts: exit 2 and a message naming the option (no Flower is started here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medfl.cli import main
from medfl.deploy import make_server_tls, make_site_key


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "experiment.yaml"
    path.write_text("name: x\n")  # never read: the options are checked first
    return path


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err.strip()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--insecure"], "--insecure and --tls-dir apply to --backend local only"),
        (
            ["--backend", "local", "--engine", "flower"],
            "--engine chooses a simulation engine: not with --backend local",
        ),
        (
            ["--backend", "local", "--insecure", "--tls-dir", "certs"],
            "--insecure and --tls-dir exclude each other",
        ),
    ],
)
def test_run_deployment_options_that_do_not_fit_together(extra, message, spec, capsys):
    assert _error(["run", str(spec), *extra], capsys) == f"medfl: error: {message}"


@pytest.mark.parametrize("value", ["0", "-5", "inf", "soon"])
def test_round_timeout_must_be_a_positive_number(value, capsys):
    for argv in (["run", "a.yaml"], ["submit", "a.yaml", "--server", "h:1", "--insecure"]):
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--round-timeout", value])
        assert exc.value.code == 2
        assert f"expected a positive number of seconds, got '{value}'" in capsys.readouterr().err


def test_run_with_a_tls_folder_whose_certificate_another_ca_signed(spec, tmp_path, capsys):
    ours, other = make_server_tls(tmp_path / "ours"), make_server_tls(tmp_path / "other")
    (tmp_path / "ours" / "ca.pem").write_bytes(other.ca.read_bytes())

    message = _error(
        ["run", str(spec), "--backend", "local", "--tls-dir", str(tmp_path / "ours")], capsys
    )

    assert message == (
        f"medfl: error: {ours.cert} is not signed by {ours.ca}: sites would refuse the server "
        "(use the CA that signed the server certificate)"
    )


def test_server_refuses_site_keys_without_tls_and_a_malformed_pair(tmp_path, capsys):
    key = make_site_key(tmp_path, "hungary")
    assert _error(["server", "--insecure", f"--site-key=hungary={key.public}"], capsys).endswith(
        "\nmedfl: error: --site-key needs TLS: site authentication does not work with --insecure"
    )
    make_server_tls(tmp_path)
    assert _error(["server", "--tls-dir", str(tmp_path), f"--site-key={key.public}"], capsys) == (
        f"medfl: error: --site-key '{key.public}': expected NAME=PATH/TO/NAME.pub"
    )
    assert _error(
        ["server", "--tls-dir", str(tmp_path), "--site-key=hungary=nowhere.pub"], capsys
    ) == ("medfl: error: --site-key hungary: nowhere.pub does not exist")


def test_site_names_a_missing_data_file(tmp_path, capsys):
    make_server_tls(tmp_path)
    make_site_key(tmp_path, "hungary")
    argv = ["site", "--name", "hungary", "--server", "127.0.0.1:1", "--tls-dir", str(tmp_path)]
    assert _error([*argv, "--data", "missing.csv"], capsys) == (
        "medfl: error: --data missing.csv: no such file"
    )


def test_submit_refuses_a_folder_that_holds_a_run(spec, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "result.json").write_text(json.dumps({"status": "succeeded"}))
    spec.write_text(
        "name: x\nsites: [{name: a, data: {source: csv, path: a.csv}}]\n"
        "schema: {target: {column: y}, numeric: [v]}\n"
    )
    argv = [
        "submit",
        str(spec),
        "--server",
        "127.0.0.1:1",
        "--insecure",
        "--out",
        str(tmp_path / "run"),
    ]
    assert _error(argv, capsys).endswith(
        f"medfl: error: {tmp_path / 'run'} already holds a run: choose another --out folder"
    )


def test_site_with_a_bad_policy_file_is_refused_before_starting(tmp_path, capsys):
    policy = tmp_path / "policy.yaml"
    policy.write_text("disclosure: {minCellCount: -1}\n")
    argv = ["site", "--name", "a", "--server", "127.0.0.1:1", "--insecure", "--policy", str(policy)]

    assert main(argv) == 3

    err = capsys.readouterr().err
    assert f"medfl: error: invalid site policy in {policy}:" in err
    assert "disclosure.minCellCount: Input should be greater than or equal to 1" in err
