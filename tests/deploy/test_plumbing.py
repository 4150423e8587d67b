"""The deployment's pieces without starting Flower: TLS material, site keys, the
command lines, the run config, exit codes, and stopping a whole process tree."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from medfl.deploy import (
    ServerCommand,
    ServerTls,
    SiteCommand,
    Supervisor,
    check_server_tls,
    describe_exit,
    flower_env,
    make_server_tls,
    make_site_key,
    process_tree,
    write_run_config,
)
from medfl.errors import TrainingError, UsageError
from medfl.spec import load_experiment


def test_server_certificate_is_signed_by_the_ca_for_loopback_and_given_hosts(tmp_path: Path):
    tls = make_server_tls(tmp_path, ["coordinator.example.org", "10.1.2.3"])
    ca = x509.load_pem_x509_certificate(tls.ca.read_bytes())
    cert = x509.load_pem_x509_certificate(tls.cert.read_bytes())
    cert.verify_directly_issued_by(ca)  # raises if not signed by this CA
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "coordinator.example.org"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "10.1.2.3"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


def test_private_keys_are_readable_by_their_owner_only(tmp_path: Path):
    tls = make_server_tls(tmp_path)
    key = make_site_key(tmp_path / "sites", "hungary")
    for private in (tls.key, tmp_path / "ca.key", key.private):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    for public in (tls.ca, tls.cert, key.public):
        assert stat.S_IMODE(public.stat().st_mode) == 0o644, public


def test_site_key_is_an_openssh_p384_pair_flower_accepts(tmp_path: Path):
    from flwr.cli.supernode.register import try_load_public_key

    key = make_site_key(tmp_path, "cleveland")
    private = serialization.load_ssh_private_key(key.private.read_bytes(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.curve.name == "secp384r1"
    assert key.public.read_text().endswith(" cleveland\n")
    assert len(try_load_public_key(key.public)) > 0  # Flower's own loader


def test_server_command_is_secure_by_default(tmp_path: Path):
    tls = make_server_tls(tmp_path)
    argv = ServerCommand("0.0.0.0", 9091, tls, authenticate_sites=True).argv()
    assert argv[0].endswith("flower-superlink")
    assert argv[1:5] == ["--host", "0.0.0.0", "--port", "9091"]
    assert "--disable-runtime-dependency-installation" in argv
    assert "--enable-supernode-auth" in argv and "--insecure" not in argv
    assert argv[argv.index("--ssl-keyfile") + 1] == str(tls.key)
    insecure = ServerCommand("127.0.0.1", 9091, None, authenticate_sites=False).argv()
    assert "--insecure" in insecure and "--ssl-certfile" not in insecure


def test_site_command_names_the_site_and_its_data_in_the_node_config(tmp_path: Path):
    data = tmp_path / "hungary.csv"
    argv = SiteCommand(
        "hungary", "10.0.0.5:9091", 9200, tmp_path / "ca.pem", tmp_path / "k", data
    ).argv()
    config = argv[argv.index("--node-config") + 1]
    assert config == f'site="hungary" data="{data.resolve()}"'
    assert argv[argv.index("--superlink") + 1] == "10.0.0.5:9091"
    assert argv[argv.index("--root-certificates") + 1] == str(tmp_path / "ca.pem")
    assert argv[argv.index("--auth-supernode-private-key") + 1] == str(tmp_path / "k")


def test_run_config_carries_the_spec_exactly(tmp_path: Path):
    experiment = load_experiment("examples/heart-disease/experiment.yaml")
    text = json.dumps(experiment.to_wire())
    path = write_run_config(
        tmp_path / "rc.toml", {"medfl-experiment": text, "medfl-resume": False, "t": 600.0}
    )
    parsed = tomllib.loads(path.read_text())
    assert parsed == {"medfl-experiment": text, "medfl-resume": False, "t": 600.0}


def test_app_bundle_names_medfls_server_and_client_apps():
    from medfl.deploy import app_dir

    config = tomllib.loads((app_dir() / "pyproject.toml").read_text())
    components = config["tool"]["flwr"]["app"]["components"]
    assert components == {
        "serverapp": "medfl.fl.deployed:server_app",
        "clientapp": "medfl.fl.deployed:client_app",
    }
    assert set(config["tool"]["flwr"]["app"]["config"]) >= {"medfl-experiment", "medfl-out"}


def test_flower_exit_codes_read_as_causes():
    assert "not registered" in describe_exit(305)
    assert "TLS is off" in describe_exit(303)
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(None) == "still running"


def test_stopping_a_role_stops_its_grandchildren_too(tmp_path: Path):
    supervisor = Supervisor(tmp_path, flower_env())
    # a child that starts its own child in a new session, as Flower's SuperExec does
    script = (
        "import subprocess, sys, time;"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " start_new_session=True); time.sleep(60)"
    )
    role = supervisor.start("server", [sys.executable, "-c", script])
    deadline = time.monotonic() + 10
    while len(process_tree(role.process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    tree = process_tree(role.process.pid)
    assert len(tree) == 2
    supervisor.stop_all()
    for pid in tree:
        assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid), pid
    assert role.exit_code is not None and supervisor.newly_exited() == [role]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_flower_commands_run_from_this_interpreters_scripts():
    env = flower_env(Path("/tmp/x"))
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert env["FLWR_HOME"] == "/tmp/x" and env["FLWR_TELEMETRY_ENABLED"] == "0"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "flower-superlink"), "--version"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "1.42.0" in done.stdout + done.stderr


def test_site_runs_medfls_supernode_wrapper_and_executor_not_flowers_per_message_apps(
    tmp_path: Path,
):
    command = SiteCommand("hungary", "127.0.0.1:9091", 9200, tmp_path / "ca.pem")
    argv = command.argv()
    assert argv[:5] == [sys.executable, "-m", "medfl.fl.supernode", "--isolation", "process"]
    stock = replace(command, warm=False).argv()
    assert stock[0].endswith("flower-supernode") and stock[1:3] == ["--isolation", "subprocess"]
    executor = command.executor_argv(4242)
    assert executor == [
        sys.executable,
        "-m",
        "medfl.fl.site_executor",
        "--runtime-api-address",
        "127.0.0.1:9200",
        "--supernode-pid",
        "4242",
    ]


def test_a_server_certificate_from_another_ca_is_refused_before_anything_starts(tmp_path: Path):
    ours = make_server_tls(tmp_path / "ours")
    other = make_server_tls(tmp_path / "other")
    check_server_tls(ours)  # a matching set passes

    with pytest.raises(UsageError) as raised:
        check_server_tls(ServerTls(ca=other.ca, cert=ours.cert, key=ours.key))
    assert str(raised.value) == (
        f"{ours.cert} is not signed by {other.ca}: sites would refuse the server "
        "(use the CA that signed the server certificate)"
    )

    with pytest.raises(UsageError) as raised:
        check_server_tls(ServerTls(ca=ours.ca, cert=ours.cert, key=other.key))
    assert str(raised.value) == f"{other.key} is not the key of {ours.cert}"


def test_log_lines_sharpen_a_vague_exit_code():
    lines = [
        "ERROR :     Exit Code: 305",
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed",
    ]
    assert describe_exit(305, lines).startswith("the server's TLS certificate is not signed by")
    assert "not registered" in describe_exit(305, ["ERROR :     Exit Code: 305"])


def test_flowers_waits_are_shortened_where_medfl_expects_them():
    import flwr.supernode.start_client_internal as supernode
    from flwr.supercore.inflatable import inflatable_utils

    from medfl.fl import _quick

    source = Path(supernode.__file__).read_text()
    assert "time.sleep(3)" in source and "time.sleep(0.5)" in source  # Flower 1.42's waits
    real = supernode.time
    try:
        _quick.quick_supernode_polls()
        started = time.monotonic()
        supernode.time.sleep(3)
        assert time.monotonic() - started < 1.0
        assert supernode.time.monotonic is time.monotonic  # the rest of `time` is untouched
    finally:
        supernode.time = real
    before = dict(inflatable_utils.pull_objects.__kwdefaults__)
    try:
        _quick.quick_object_pulls()
        for function in (
            inflatable_utils.pull_objects,
            inflatable_utils.pull_and_inflate_object_from_tree,
        ):
            assert function.__kwdefaults__["initial_backoff"] == _quick.PULL_BACKOFF_SECONDS
            assert function.__kwdefaults__["backoff_cap"] == _quick.PULL_BACKOFF_CAP_SECONDS
            assert function.__kwdefaults__["max_time"] == _quick.PULL_MAX_SECONDS
    finally:
        for function in (
            inflatable_utils.pull_objects,
            inflatable_utils.pull_and_inflate_object_from_tree,
        ):
            function.__kwdefaults__.update(
                initial_backoff=before["initial_backoff"],
                backoff_cap=before["backoff_cap"],
                max_time=before["max_time"],
            )


def test_the_run_config_reaches_the_server_app_typed(tmp_path: Path):
    from flwr.app import Context, RecordDict

    from medfl.fl.deployed import DeployedRun

    experiment = load_experiment("examples/heart-disease/experiment.yaml")
    path = write_run_config(
        tmp_path / "rc.toml",
        {
            "medfl-experiment": json.dumps(experiment.to_wire()),
            "medfl-out": str(tmp_path / "run"),
            "medfl-resume": True,
            "medfl-startup-timeout": 30.0,
            "medfl-reply-timeout": 45.0,
            "medfl-write-outputs": False,
        },
    )
    config = tomllib.loads(path.read_text())
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=config)

    run = DeployedRun.from_context(context)

    assert run.experiment == experiment
    assert run.out == tmp_path / "run" and run.resume is True and run.write_outputs is False
    assert (run.timeouts.startup, run.timeouts.reply) == (30.0, 45.0)


def test_certs_never_replaces_a_federations_ca_and_adds_a_joining_site(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from medfl.cli import main

    assert main(["certs", str(tmp_path), "--site", "hungary"]) == 0
    ca, hungary = (tmp_path / "ca.pem").read_bytes(), (tmp_path / "sites/hungary.key").read_bytes()

    assert main(["certs", str(tmp_path), "--site", "cleveland"]) == 0  # joins later

    assert (tmp_path / "ca.pem").read_bytes() == ca
    assert (tmp_path / "sites/hungary.key").read_bytes() == hungary
    assert (tmp_path / "sites/cleveland.key").is_file()
    assert f"server: kept the existing CA and certificate in {tmp_path}" in capsys.readouterr().err
    assert main(["certs", str(tmp_path), "--site", "hungary"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"medfl: error: {tmp_path / 'sites'} already holds a key for hungary: kept"
    )
    assert (tmp_path / "sites/hungary.key").read_bytes() == hungary


def test_a_role_that_flower_ends_on_its_own_is_a_failure_not_success(tmp_path: Path):
    from medfl.cli._deploy import _supervise

    supervisor = Supervisor(tmp_path, flower_env())
    argv = [sys.executable, "-c", "print('INFO :      SuperNode terminated gracefully.')"]
    supervisor.start("site-hungary", argv, "hungary")

    with pytest.raises(TrainingError) as raised:
        _supervise(supervisor)

    assert str(raised.value).startswith(
        "site-hungary ended on its own (a server restarted without --database no longer "
        "knows this site: restart the site); its last log lines:\n"
        "    INFO :      SuperNode terminated gracefully."
    )
    assert raised.value.exit_code == 4


def test_a_site_says_once_a_minute_that_the_server_cannot_be_reached_then_that_it_connected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from medfl.cli._deploy import _SiteNotices

    log = tmp_path / "site.log"
    log.write_text("WARNING :   Connection attempt failed, retrying in 0.71 seconds\n" * 2)
    notices = _SiteNotices(log, "hungary", "10.0.0.5:9091")

    notices()
    with log.open("a") as handle:
        handle.write("WARNING :   Connection attempt failed, retrying in 1.16 seconds\n")
        handle.write("INFO :      SuperNode ID: 42\n")
    notices()

    assert capsys.readouterr().err.splitlines() == [
        "medfl: cannot reach the server at 10.0.0.5:9091 (is it running, is the address or "
        "port right, is the port open?); still trying",
        "medfl: site 'hungary' connected to 10.0.0.5:9091",
    ]
