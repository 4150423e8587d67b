"""The children the operator renders, value by value, and each one through
kubernetes-validate --strict (Kubernetes 1.35 schemas, unknown fields refused)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import kopf
import kubernetes_validate
import pytest
import yaml
from medfl_operator import Owner, Target, fit
from medfl_operator._material import server_files, site_files
from medfl_operator._render import (
    SPEC_FILE,
    TLS_DIR,
    ray_job,
    server_deployment,
    server_service,
    server_tls_secret,
    site_deployment,
    site_key_secret,
    spec_config_map,
    submit_job,
    workloads,
)

from medfl.cli import _parser
from medfl.cli._deploy import cmd_server, cmd_site, cmd_submit
from medfl.deploy import ServerCommand, ServerTls
from medfl.k8s._config import OperatorConfig, RayTarget, SitePolicySource
from medfl.spec import parse_experiment
from tests.helpers import deep_merge
from tests.operator.conftest import UID, example_cr, experiment_of, owner_body

K8S_VERSION = "1.35"


def _pod(manifest: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def _container(manifest: dict[str, Any]) -> dict[str, Any]:
    return dict(_pod(manifest)["containers"][0])


def _mounts(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in _container(manifest)["volumeMounts"]}


def _volumes(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in _pod(manifest)["volumes"]}


def _projected(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(secret, key) of every file in the pod's tls volume."""
    sources = _volumes(manifest)["tls"]["projected"]["sources"]
    return [(s["secret"]["name"], i["key"]) for s in sources for i in s["secret"]["items"]]


def _every_child(target: Target) -> list[dict[str, Any]]:
    files = {"ca.pem": b"ca", "server.pem": b"cert", "server.key": b"key"}
    secrets = [server_tls_secret(target, files)]
    secrets += [
        site_key_secret(target, s.name, {f"{s.name}.key": b"k"}) for s in target.experiment.sites
    ]
    return [*workloads(target), submit_job(target), *secrets]


# --- names -----------------------------------------------------------------------------


def test_children_are_named_after_the_experiment(target: Target) -> None:
    names = sorted(m["metadata"]["name"] for m in _every_child(target))
    assert names == [
        "heart-disease-key-cleveland",
        "heart-disease-key-hungary",
        "heart-disease-key-switzerland",
        "heart-disease-key-va-long-beach",
        "heart-disease-server",  # the Deployment
        "heart-disease-server",  # and its Service
        "heart-disease-site-cleveland",
        "heart-disease-site-hungary",
        "heart-disease-site-switzerland",
        "heart-disease-site-va-long-beach",
        "heart-disease-spec",
        "heart-disease-submit",
        "heart-disease-tls",
    ]


def test_long_names_are_cut_to_63_characters_with_a_hash_that_keeps_them_apart(
    config: OperatorConfig,
) -> None:
    long_a, long_b = "a" * 70 + "-one", "a" * 70 + "-two"
    site = "s" * 40  # the longest site name the spec allows
    names = []
    for name in (long_a, long_b):
        owner = Owner(name, "research", UID)
        cr = example_cr()
        cr["metadata"]["name"] = "x"  # the spec's own name is short; the object's is not
        cr["spec"]["sites"][0]["name"] = site
        target = Target(experiment_of(cr), config, owner)
        for child in _every_child(target):
            meta = child["metadata"]
            assert len(meta["name"]) <= 63, meta["name"]
            assert all(len(v) <= 63 for v in meta["labels"].values())
            names.append(meta["name"])
        assert owner.site(site).endswith(f"-site-{site}")
    assert fit(long_a, "server") != fit(long_b, "server")
    assert len(set(names)) == len(names) - 2  # only the server's Deployment and Service share


def test_a_name_starting_with_a_digit_gets_a_prefix_a_service_accepts() -> None:
    assert Owner("2024-study", "ns", UID).server == "fe-2024-study-server"


# --- the server ------------------------------------------------------------------------


def test_the_server_runs_medfl_server_on_flowers_one_port_with_tls_and_every_sites_key(
    target: Target,
) -> None:
    deployment = server_deployment(target)
    container = _container(deployment)
    assert container["args"] == [
        "medfl", "server", "--host", "0.0.0.0", "--port", "9091", "--tls-dir", TLS_DIR,
        "--database", "/var/lib/medfl/superlink.db", "--log-dir", "/var/log/medfl",
        "--site-key", f"cleveland={TLS_DIR}/cleveland.pub",
        "--site-key", f"hungary={TLS_DIR}/hungary.pub",
        "--site-key", f"switzerland={TLS_DIR}/switzerland.pub",
        "--site-key", f"va-long-beach={TLS_DIR}/va-long-beach.pub",
    ]  # fmt: skip
    assert container["ports"] == [{"name": "flower", "containerPort": 9091, "protocol": "TCP"}]
    assert container["image"] == "registry.local/medfl/runtime:0.1.0"
    assert container["imagePullPolicy"] == "Always"
    assert {"name": "FLWR_TELEMETRY_ENABLED", "value": "0"} in container["env"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert _projected(deployment) == [
        ("heart-disease-tls", "ca.pem"),
        ("heart-disease-tls", "server.pem"),
        ("heart-disease-tls", "server.key"),
        ("heart-disease-key-cleveland", "cleveland.pub"),
        ("heart-disease-key-hungary", "hungary.pub"),
        ("heart-disease-key-switzerland", "switzerland.pub"),
        ("heart-disease-key-va-long-beach", "va-long-beach.pub"),
    ]
    assert _mounts(deployment)["tls"]["readOnly"] is True
    assert _mounts(deployment)["results"] == {"name": "results", "mountPath": "/results"}


def test_the_server_command_is_medfls_own_and_turns_site_auth_and_baked_dependencies_on(
    target: Target,
) -> None:
    """The pod's command parses as `medfl server` with TLS: cmd_server then runs the
    SuperLink with --enable-supernode-auth and --disable-runtime-dependency-installation."""
    args = _parser().parse_args(_container(server_deployment(target))["args"][1:])
    assert args.handler is cmd_server
    assert args.tls_dir == Path(TLS_DIR) and not args.insecure
    tls = ServerTls(
        Path(TLS_DIR, "ca.pem"), Path(TLS_DIR, "server.pem"), Path(TLS_DIR, "server.key")
    )
    argv = ServerCommand(args.host, args.port, tls, authenticate_sites=True).argv()
    assert {"--enable-supernode-auth", "--disable-runtime-dependency-installation"} <= set(argv)
    assert argv[argv.index("--host") + 1] == "0.0.0.0"


def test_the_service_exposes_the_one_port_to_the_server_pod(target: Target) -> None:
    service = server_service(target)
    assert service["spec"]["ports"] == [
        {"name": "flower", "port": 9091, "targetPort": "flower", "protocol": "TCP"}
    ]
    pod_labels = server_deployment(target)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


# --- the sites -------------------------------------------------------------------------


def test_a_gpu_site_gets_its_placement_gpu_limits_and_the_gpu_pool(target: Target) -> None:
    deployment = site_deployment(target, target.experiment.sites[0])
    pod, container = _pod(deployment), _container(deployment)
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"memory": "6Gi", "nvidia.com/gpu": "2"},
    }
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true", "hospital": "cleveland"}
    assert pod["tolerations"] == [
        {"key": "hospital", "operator": "Equal", "value": "cleveland"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    ]


def test_a_site_without_gpus_gets_no_gpu_pool_and_no_resources(target: Target) -> None:
    pod = _pod(site_deployment(target, target.experiment.sites[2]))
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert "resources" not in pod["containers"][0]


def test_a_sites_data_claim_is_mounted_read_only(target: Target) -> None:
    deployment = site_deployment(target, target.experiment.sites[0])
    assert _volumes(deployment)["data"] == {
        "name": "data",
        "persistentVolumeClaim": {"claimName": "cleveland-data", "readOnly": True},
    }
    assert _mounts(deployment)["data"] == {"name": "data", "mountPath": "/data", "readOnly": True}


def test_a_sites_host_path_is_mounted_read_only(target: Target) -> None:
    deployment = site_deployment(target, target.experiment.sites[1])
    assert _volumes(deployment)["data"] == {
        "name": "data",
        "hostPath": {"path": "/srv/hungary", "type": "Directory"},
    }
    assert _mounts(deployment)["data"]["readOnly"] is True


def test_a_site_pod_sees_the_ca_and_its_own_key_only(target: Target) -> None:
    deployment = site_deployment(target, target.experiment.sites[1])
    assert _projected(deployment) == [
        ("heart-disease-tls", "ca.pem"),
        ("heart-disease-key-hungary", "hungary.key"),
    ]
    assert _volumes(deployment)["tls"]["projected"]["defaultMode"] == 0o440


def test_a_site_runs_medfl_site_against_the_services_dns_name(target: Target) -> None:
    site = target.experiment.sites[3]
    args = _container(site_deployment(target, site))["args"]
    assert args == [
        "medfl", "site", "--name", "va-long-beach",
        "--server", "heart-disease-server.research.svc:9091", "--tls-dir", TLS_DIR,
        "--port", "9094", "--log-dir", "/var/log/medfl",
    ]  # fmt: skip
    parsed = _parser().parse_args(args[1:])
    assert parsed.handler is cmd_site and parsed.name == "va-long-beach"


def test_after_the_run_the_sites_are_scaled_to_zero_and_the_server_stays(target: Target) -> None:
    over = Target(target.experiment, target.config, target.owner, run_over=True)
    assert [d["spec"]["replicas"] for d in workloads(over) if d["kind"] == "Deployment"] == [
        1, 0, 0, 0, 0,
    ]  # fmt: skip
    assert site_deployment(target, target.experiment.sites[0])["spec"]["replicas"] == 1


def test_site_deployments_select_their_own_pods(target: Target) -> None:
    deployment = site_deployment(target, target.experiment.sites[0])
    assert deployment["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/component": "site",
        "medfl.io/experiment": "heart-disease",
        "medfl.io/site": "cleveland",
    }
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/part-of"] == "medfl"
    assert labels["app.kubernetes.io/instance"] == "heart-disease"


# --- the run -----------------------------------------------------------------------------


def test_the_job_submits_once_and_reads_the_results_beside_the_server(target: Target) -> None:
    job = submit_job(target)
    args = _container(job)["args"]
    assert args == [
        "python", "-m", "medfl_operator._job", "submit", f"/etc/medfl/spec/{SPEC_FILE}",
        "--server", "heart-disease-server.research.svc:9091", "--tls-dir", TLS_DIR,
        "--out", "/results/research/heart-disease-0f1e2d3c",
    ]  # fmt: skip
    assert _parser().parse_args(args[3:]).handler is cmd_submit  # what _job runs
    assert job["spec"]["backoffLimit"] == 0
    assert _pod(job)["restartPolicy"] == "Never"
    assert _mounts(job)["results"]["readOnly"] is True
    assert _volumes(job)["results"]["persistentVolumeClaim"] == {"claimName": "medfl-results"}
    assert _projected(job) == [("heart-disease-tls", "ca.pem")]
    affinity = _pod(job)["affinity"]["podAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert affinity[0]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "server"


def test_a_tuning_section_makes_the_job_a_search_over_the_experiments_own_sites(
    target: Target,
) -> None:
    from medfl.cli._tune import cmd_tune

    space = {"training.learningRate": {"type": "float", "low": 0.01, "high": 0.5, "log": True}}
    doc = deep_merge(example_cr(), {"spec": {"tuning": {"space": space, "trials": 4}}})
    searching = Target(experiment_of(doc), target.config, target.owner)
    job = submit_job(searching)

    args = _container(job)["args"]
    assert args[:5] == [
        "python",
        "-m",
        "medfl_operator._job",
        "tune",
        f"/etc/medfl/spec/{SPEC_FILE}",
    ]
    assert args[5:] == _container(submit_job(target))["args"][5:]  # same server, TLS, folder
    assert _parser().parse_args(args[3:]).handler is cmd_tune
    assert _mounts(job)["results"]["readOnly"] is False  # the search writes its own files
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)


def test_without_a_results_claim_nothing_mounts_one(owner: Owner) -> None:
    target = Target(experiment_of(example_cr()), OperatorConfig(), owner)
    assert "results" not in _volumes(server_deployment(target))
    assert "results" not in _volumes(submit_job(target))
    assert "affinity" not in _pod(submit_job(target))


def test_the_spec_config_map_holds_the_validated_spec(target: Target) -> None:
    text = spec_config_map(target)["data"][SPEC_FILE]
    assert parse_experiment(yaml.safe_load(text)) == target.experiment


def test_an_experiments_own_image_wins_over_the_operators(
    config: OperatorConfig, owner: Owner
) -> None:
    cr = example_cr()
    cr["spec"]["runtime"] = {"image": "mine/runtime:dev"}
    container = _container(server_deployment(Target(experiment_of(cr), config, owner)))
    assert (container["image"], container["imagePullPolicy"]) == ("mine/runtime:dev", "Always")


# --- secrets -----------------------------------------------------------------------------


def test_tls_material_names_the_service_and_medfl_accepts_it(tmp_path: Path, owner: Owner) -> None:
    from cryptography import x509

    from medfl.deploy import check_server_tls

    files = server_files(owner)
    assert sorted(files) == ["ca.pem", "server.key", "server.pem"]  # no CA key kept
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    check_server_tls(
        ServerTls(tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key")
    )
    cert = x509.load_pem_x509_certificate(files["server.pem"])
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "heart-disease-server.research.svc" in names.get_values_for_type(x509.DNSName)


def test_a_site_key_secret_holds_its_key_pair(target: Target) -> None:
    secret = site_key_secret(target, "hungary", site_files("hungary"))
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert sorted(data) == ["hungary.key", "hungary.pub"]
    assert data["hungary.key"].startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert secret["metadata"]["labels"]["medfl.io/site"] == "hungary"


# --- every child, as the API server would take it ---------------------------------------


@pytest.mark.parametrize("with_results", [True, False], ids=["results-claim", "no-claim"])
def test_every_child_passes_kubernetes_validate_strict_once_adopted(
    target: Target, with_results: bool
) -> None:
    if not with_results:
        target = Target(target.experiment, OperatorConfig(), target.owner)
    for child in _every_child(target):
        kopf.adopt(child, owner=owner_body(target.owner))  # type: ignore[arg-type]
        kubernetes_validate.validate(child, K8S_VERSION, strict=True)
        ref = child["metadata"]["ownerReferences"]
        assert ref == [
            {
                "apiVersion": "medfl.io/v1alpha1",
                "kind": "FederatedExperiment",
                "name": "heart-disease",
                "uid": UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert child["metadata"]["labels"]["medfl.io/experiment"] == "heart-disease"


@pytest.mark.parametrize(
    ("log", "ready"),
    [
        (None, False),  # no log yet
        ("INFO :      Starting Flower SuperNode\n", False),
        ("WARNING :   Connection attempt failed, retrying in 0.71 seconds\n", False),
        ("WARNING :   Connection attempt failed\nINFO :      SuperNode ID: 42\n", True),
        ("INFO :      SuperNode ID: 42\nWARNING :   Connection attempt failed\n", False),
        (
            "\x1b[92mINFO \x1b[0m:      SuperNode ID: 42\n"
            + "x" * 1_100_000
            + "Sent successfully\n",
            True,
        ),
    ],
    ids=["no-log", "starting", "retrying", "connected", "lost", "long-log"],
)
def test_a_site_is_ready_only_while_its_supernode_is_connected(
    target: Target, tmp_path: Path, log: str | None, ready: bool
) -> None:
    probe = _container(site_deployment(target, target.experiment.sites[0]))["readinessProbe"]
    command = probe["exec"]["command"]
    assert command[-1] == "/var/log/medfl/site-cleveland.log"  # where medfl site logs
    path = tmp_path / "site-cleveland.log"
    if log is not None:
        path.write_text(log)
    done = subprocess.run([sys.executable, *command[1:-1], str(path)], check=False, timeout=30)
    assert (done.returncode == 0) == ready


def _with_policies(target: Target, **sources: dict[str, Any]) -> Target:
    config = target.config.model_copy(
        update={
            "site_policies": {s: SitePolicySource.model_validate(v) for s, v in sources.items()}
        }
    )
    return Target(target.experiment, config, target.owner)


def test_a_site_with_its_own_policy_reads_it_read_only_and_keeps_its_ledger_on_a_claim(
    target: Target,
) -> None:
    target = _with_policies(
        target,
        hungary={
            "configMap": "hungary-policy",
            "key": "site.yaml",
            "ledgerClaim": "hungary-ledger",
        },
    )
    hungary = site_deployment(target, target.experiment.sites[1])
    args = _container(hungary)["args"]
    assert args[args.index("--policy") + 1] == "/etc/medfl/policy/site.yaml"
    assert _parser().parse_args(args[1:]).policy == Path("/etc/medfl/policy/site.yaml")
    assert _volumes(hungary)["policy"] == {
        "name": "policy",
        "configMap": {
            "name": "hungary-policy",
            "items": [{"key": "site.yaml", "path": "site.yaml"}],
        },
    }
    assert _mounts(hungary)["policy"] == {
        "name": "policy", "mountPath": "/etc/medfl/policy", "readOnly": True,
    }  # fmt: skip
    assert _volumes(hungary)["ledger"]["persistentVolumeClaim"] == {"claimName": "hungary-ledger"}
    assert _mounts(hungary)["ledger"] == {"name": "ledger", "mountPath": "/var/lib/medfl/ledger"}
    kubernetes_validate.validate(hungary, K8S_VERSION, strict=True)
    others = site_deployment(target, target.experiment.sites[3])
    assert "--policy" not in _container(others)["args"]
    assert "policy" not in _volumes(others) and "ledger" not in _volumes(others)


RAY_SEARCH = {
    "space": {"training.learningRate": {"type": "float", "low": 0.01, "high": 0.5, "log": True}},
    "trials": 4,
    "runOn": "ray",
}


def test_a_search_on_ray_is_a_rayjob_on_the_charts_cluster_and_nothing_else(
    target: Target,
) -> None:
    config = target.config.model_copy(update={"ray": RayTarget(cluster_name="gpu-ray")})
    doc = deep_merge(example_cr(), {"spec": {"tuning": RAY_SEARCH}})
    searching = Target(experiment_of(doc), config, target.owner)

    job = ray_job(searching)

    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert job["metadata"]["name"] == "heart-disease-submit"  # KubeRay's submitter Job too
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": "gpu-ray"}
    assert job["spec"]["entrypoint"] == "python -m medfl_operator._job tune-ray"
    env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]
    assert parse_experiment(json.loads(env["MEDFL_EXPERIMENT"])) == searching.experiment
    assert workloads(searching) == []  # no Flower server, no site pods
