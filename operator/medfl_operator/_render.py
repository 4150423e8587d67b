"""The children of a FederatedExperiment, as pure functions of its validated spec.

Every process runs medfl's own role command, as a hospital network would (README, "Real
deployment"): the SuperLink ``medfl server`` (TLS from a Secret, each site's public key
registered: ``--enable-supernode-auth`` and ``--disable-runtime-dependency-installation``
are medfl.deploy's defaults), one ``medfl site`` per site (ready while its SuperNode is
connected), and ``medfl submit`` in a Job that follows the run to its end and leaves its
summary (medfl_operator._job). The ServerApp writes the run folder on the server's side,
so the results claim is mounted in the SuperLink's pod; the Job reads it there too, on
the same node (pod affinity), which a ReadWriteOnce claim needs.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import yaml

from medfl.k8s._config import OperatorConfig
from medfl.k8s._names import Owner
from medfl.spec import Experiment, Site, Toleration
from medfl.spec._models import GPU_RESOURCE
from medfl_operator._checks import LEDGER_DIR
from medfl_operator._job import RAY_EXPERIMENT_ENV

Manifest = dict[str, Any]

PORT = 9091  # the SuperLink's one port (Fleet, Control, ServerAppIO)
SITE_PORT = 9094  # a SuperNode's own local API, inside its pod
TLS_DIR = "/etc/medfl/tls"
SPEC_DIR = "/etc/medfl/spec"
SPEC_FILE = "experiment.yaml"
RESULTS_DIR = "/results"
LOG_DIR = "/var/log/medfl"
STATE_DIR = "/var/lib/medfl"
POLICY_DIR = "/etc/medfl/policy"  # a site's own policy (the chart's sitePolicies), read-only
USER = 10001  # the runtime image's user (as the chart's operator pod)
SECRET_MODE = 0o440  # owner and fsGroup read; private keys are not world-readable
SERVER_KEYS = ("ca.pem", "server.pem", "server.key")


@dataclass(frozen=True)
class Target:
    """Everything a child depends on: the spec, the operator's settings, the owner."""

    experiment: Experiment
    config: OperatorConfig
    owner: Owner
    # The run ended: the site pods are scaled to zero, so their nodes' GPUs are free.
    # The server stays, with the results claim mounted (medfl run --backend kubernetes
    # fetches the run folder through it).
    run_over: bool = False

    @property
    def searches(self) -> bool:
        """A hyperparameter search (spec.tuning) rather than one run."""
        return self.experiment.tuning is not None

    @property
    def on_ray(self) -> bool:
        """A search run as a KubeRay RayJob, not over the experiment's own sites."""
        tuning = self.experiment.tuning
        return tuning is not None and tuning.run_on == "ray"

    @property
    def image(self) -> str:
        return self.experiment.runtime.image or self.config.runtime.image

    @property
    def pull_policy(self) -> str:
        return self.experiment.runtime.image_pull_policy or self.config.runtime.image_pull_policy


# --- metadata ------------------------------------------------------------------


def labels(target: Target, component: str, site: str | None = None) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": "medfl",
        "app.kubernetes.io/instance": target.owner.label,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "medfl",
        "app.kubernetes.io/managed-by": "medfl-operator",
        "medfl.io/experiment": target.owner.label,
    }
    if site is not None:
        out["medfl.io/site"] = site
    return out


def selector(target: Target, component: str, site: str | None = None) -> dict[str, str]:
    """The labels a Deployment selects its pods by (never changed once created)."""
    keys = ("medfl.io/experiment", "app.kubernetes.io/component", "medfl.io/site")
    return {k: v for k, v in labels(target, component, site).items() if k in keys}


def _meta(target: Target, name: str, component: str, site: str | None = None) -> Manifest:
    return {
        "name": name,
        "namespace": target.owner.namespace,
        "labels": labels(target, component, site),
    }


# --- pod pieces ------------------------------------------------------------------


def _env() -> list[Manifest]:
    return [
        {"name": "FLWR_TELEMETRY_ENABLED", "value": "0"},
        {"name": "HOME", "value": "/tmp"},  # the root filesystem is read-only
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]


def _container(target: Target, name: str, args: list[str], mounts: list[Manifest]) -> Manifest:
    return {
        "name": name,
        "image": target.image,
        "imagePullPolicy": target.pull_policy,
        "args": args,
        "env": _env(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *mounts],
        # A failed container's last log lines become its termination message: the
        # operator reads it as the reason the run failed.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def _pod_spec(containers: list[Manifest], volumes: list[Manifest]) -> Manifest:
    return {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": USER,
            "runAsGroup": USER,
            "fsGroup": USER,  # mounted Secrets readable by the user, not by others
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "enableServiceLinks": False,
        "containers": containers,
        "volumes": [{"name": "tmp", "emptyDir": {}}, *volumes],
    }


def _empty(name: str) -> Manifest:
    return {"name": name, "emptyDir": {}}


def _secret_items(secret: str, keys: list[str]) -> Manifest:
    return {"secret": {"name": secret, "items": [{"key": k, "path": k} for k in keys]}}


def _tls_volume(sources: list[Manifest]) -> Manifest:
    return {"name": "tls", "projected": {"sources": sources, "defaultMode": SECRET_MODE}}


_TLS_MOUNT = {"name": "tls", "mountPath": TLS_DIR, "readOnly": True}


def _results_volume(target: Target) -> Manifest | None:
    results = target.config.results
    if results is None:
        return None
    return {"name": "results", "persistentVolumeClaim": {"claimName": results.claim_name}}


def _deployment(
    target: Target, name: str, component: str, site: str | None, pod: Manifest
) -> Manifest:
    replicas = 0 if site is not None and target.run_over else 1
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(target, name, component, site),
        "spec": {
            "replicas": replicas,
            # Never two at once: a second SuperNode with the same key is refused, and
            # the SuperLink's state is one file.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector(target, component, site)},
            "template": {"metadata": {"labels": labels(target, component, site)}, "spec": pod},
        },
    }


# --- the server --------------------------------------------------------------------


def server_args(target: Target) -> list[str]:
    args = ["medfl", "server", "--host", "0.0.0.0", "--port", str(PORT), "--tls-dir", TLS_DIR]
    # The database keeps the registered keys across a container restart; a new pod
    # starts afresh and registers them again.
    args += ["--database", f"{STATE_DIR}/superlink.db", "--log-dir", LOG_DIR]
    for site in target.experiment.sites:
        args += ["--site-key", f"{site.name}={TLS_DIR}/{site.name}.pub"]
    return args


def server_deployment(target: Target) -> Manifest:
    owner = target.owner
    sources = [_secret_items(owner.server_tls, list(SERVER_KEYS))]
    sources += [_secret_items(owner.site_key(s.name), [f"{s.name}.pub"]) for s in _sites(target)]
    volumes = [_tls_volume(sources), _empty("state"), _empty("logs")]
    mounts: list[Manifest] = [
        _TLS_MOUNT,
        {"name": "state", "mountPath": STATE_DIR},
        {"name": "logs", "mountPath": LOG_DIR},
    ]
    results = _results_volume(target)
    if results is not None:  # the ServerApp writes the run folder here
        volumes.append(results)
        mounts.append({"name": "results", "mountPath": RESULTS_DIR})
    container = _container(target, "superlink", server_args(target), mounts)
    container["ports"] = [{"name": "flower", "containerPort": PORT, "protocol": "TCP"}]
    container["readinessProbe"] = {"tcpSocket": {"port": "flower"}, "periodSeconds": 5}
    pod = _pod_spec([container], volumes)
    return _deployment(target, owner.server, "server", None, pod)


def server_service(target: Target) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(target, target.owner.server, "server"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(target, "server"),
            "ports": [{"name": "flower", "port": PORT, "targetPort": "flower", "protocol": "TCP"}],
        },
    }


def server_hosts(owner: Owner) -> list[str]:
    """The names the server certificate holds: the Service's, short and qualified."""
    short = owner.server
    return [
        short,
        f"{short}.{owner.namespace}",
        owner.server_address,
        f"{owner.server_address}.cluster.local",
    ]


# --- the sites ---------------------------------------------------------------------


def _sites(target: Target) -> list[Site]:
    return list(target.experiment.sites)


def site_args(target: Target, site: Site) -> list[str]:
    server = f"{target.owner.server_address}:{PORT}"
    args = ["medfl", "site", "--name", site.name, "--server", server, "--tls-dir", TLS_DIR]
    policy = target.config.site_policies.get(site.name)
    if policy is not None:
        args += ["--policy", f"{POLICY_DIR}/{policy.key}"]
    return [*args, "--port", str(SITE_PORT), "--log-dir", LOG_DIR]


def _policy_volumes(target: Target, site: Site) -> list[tuple[Manifest, Manifest]]:
    """The site's own policy file (read-only) and its ledger's claim (writable)."""
    policy = target.config.site_policies.get(site.name)
    if policy is None:
        return []
    items = [{"key": policy.key, "path": policy.key}]
    out = [
        (
            {"name": "policy", "configMap": {"name": policy.config_map, "items": items}},
            {"name": "policy", "mountPath": POLICY_DIR, "readOnly": True},
        )
    ]
    if policy.ledger_claim is not None:
        claim = {"claimName": policy.ledger_claim}
        out.append(
            (
                {"name": "ledger", "persistentVolumeClaim": claim},
                {"name": "ledger", "mountPath": LEDGER_DIR},
            )
        )
    return out


# Ready means connected, as Flower's SuperNode logs it: its last connection line is a
# success (the markers `medfl site` itself reports from, medfl.cli._deploy), or a message
# it exchanged with the server. The log is medfl.deploy's site-NAME.log in --log-dir;
# only its last megabyte is read. Plain Python, no imports to speak of: it runs every
# period.
CONNECTED_PROBE = """\
import os, sys
try:
    with open(sys.argv[1], "rb") as log:
        log.seek(max(os.path.getsize(sys.argv[1]) - 1000000, 0))
        text = log.read().decode(errors="replace")
except OSError:
    sys.exit(1)
good = ("SuperNode ID", "Connection successful", "Received successfully", "Sent successfully")
ok = max(text.rfind(marker) for marker in good)
sys.exit(0 if ok > text.rfind("Connection attempt failed") else 1)
"""


def site_log(site: Site) -> str:
    return f"{LOG_DIR}/site-{site.name}.log"


def _connected_probe(site: Site) -> Manifest:
    command = ["python", "-c", CONNECTED_PROBE, site_log(site)]
    return {"exec": {"command": command}, "periodSeconds": 10, "timeoutSeconds": 5}


def _data_volume(site: Site) -> tuple[Manifest, Manifest] | None:
    """The site's data volume and its mount, read-only both at the claim and the mount."""
    volume = site.placement.volume
    if volume is None:
        return None
    if volume.claim_name is not None:
        source: Manifest = {
            "persistentVolumeClaim": {"claimName": volume.claim_name, "readOnly": True}
        }
    else:
        source = {"hostPath": {"path": volume.host_path, "type": "Directory"}}
    mount = {"name": "data", "mountPath": volume.mount_path, "readOnly": True}
    return {"name": "data", **source}, mount


def _tolerations(items: list[Toleration]) -> list[Manifest]:
    out: list[Manifest] = []
    for item in items:
        wire = item.model_dump(mode="json", by_alias=True, exclude_none=True)
        if wire not in out:
            out.append(wire)
    return out


def _resources(site: Site) -> Manifest:
    placement = site.placement
    requests = dict(placement.resources.requests)
    limits = dict(placement.resources.limits)
    if placement.gpus:  # an extended resource: its request is its limit
        limits[GPU_RESOURCE] = str(placement.gpus)
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def _placement(target: Target, site: Site, pod: Manifest) -> Manifest:
    """The site's node selector and tolerations; a site with GPUs also gets the GPU pool's."""
    placement = site.placement
    selector_, tolerations = dict(placement.node_selector), list(placement.tolerations)
    if placement.gpus:
        selector_ = {**target.config.gpu_pool.node_selector, **selector_}
        tolerations += target.config.gpu_pool.tolerations
    if selector_:
        pod["nodeSelector"] = selector_
    if tolerations:
        pod["tolerations"] = _tolerations(tolerations)
    return pod


def site_deployment(target: Target, site: Site) -> Manifest:
    owner = target.owner
    sources = [
        _secret_items(owner.server_tls, ["ca.pem"]),
        _secret_items(owner.site_key(site.name), [f"{site.name}.key"]),
    ]
    volumes = [_tls_volume(sources), _empty("logs")]
    mounts: list[Manifest] = [_TLS_MOUNT, {"name": "logs", "mountPath": LOG_DIR}]
    data = _data_volume(site)
    for volume, mount in ([data] if data else []) + _policy_volumes(target, site):
        volumes.append(volume)
        mounts.append(mount)
    container = _container(target, "supernode", site_args(target, site), mounts)
    container["readinessProbe"] = _connected_probe(site)
    resources = _resources(site)
    if resources:
        container["resources"] = resources
    pod = _placement(target, site, _pod_spec([container], volumes))
    return _deployment(target, owner.site(site.name), "site", site.name, pod)


# --- the run -------------------------------------------------------------------------


def spec_config_map(target: Target) -> Manifest:
    """The validated spec, as ``medfl submit`` reads it (defaults filled in)."""
    text = yaml.safe_dump(target.experiment.to_wire(), sort_keys=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(target, target.owner.spec_config, "submit"),
        "data": {SPEC_FILE: text},
    }


def submit_args(target: Target) -> list[str]:
    """``medfl submit``, through medfl_operator._job, which then leaves the operator a
    summary of the run (rounds, metrics, error) as its termination message. With a
    ``tuning`` section, ``medfl tune`` over this experiment's own sites instead: every
    trial a run on its server, the best once more (the summary is the best run's)."""
    server = f"{target.owner.server_address}:{PORT}"
    command = "tune" if target.searches else "submit"
    args = ["python", "-m", "medfl_operator._job", command, f"{SPEC_DIR}/{SPEC_FILE}"]
    args += ["--server", server, "--tls-dir", TLS_DIR]
    return [*args, "--out", f"{RESULTS_DIR}/{target.owner.results_path}"]


def _beside_the_server(target: Target) -> Manifest:
    term = {
        "labelSelector": {"matchLabels": selector(target, "server")},
        "topologyKey": "kubernetes.io/hostname",
    }
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}


def submit_job(target: Target) -> Manifest:
    owner = target.owner
    spec_volume = {"name": "spec", "configMap": {"name": owner.spec_config}}
    volumes = [_tls_volume([_secret_items(owner.server_tls, ["ca.pem"])]), spec_volume]
    mounts: list[Manifest] = [_TLS_MOUNT, {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True}]
    results = _results_volume(target)
    if results is not None:  # submit follows result.json; a search writes its own files
        volumes.append(results)
        mount = {"name": "results", "mountPath": RESULTS_DIR, "readOnly": not target.searches}
        mounts.append(mount)
    pod = _pod_spec([_container(target, "submit", submit_args(target), mounts)], volumes)
    pod["restartPolicy"] = "Never"
    if results is not None:
        pod["affinity"] = _beside_the_server(target)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(target, owner.submit_job, "submit"),
        "spec": {
            # One submission: a second would find the run folder taken, and a failed
            # run is reported, not repeated.
            "backoffLimit": 0,
            "template": {"metadata": {"labels": labels(target, "submit")}, "spec": pod},
        },
    }


# --- secrets -------------------------------------------------------------------------


def _secret(target: Target, name: str, component: str, files: dict[str, bytes]) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(target, name, component),
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in files.items()},
    }


def server_tls_secret(target: Target, files: dict[str, bytes]) -> Manifest:
    """ca.pem, server.pem and server.key (the CA's own key is not kept anywhere)."""
    return _secret(target, target.owner.server_tls, "server", files)


def site_key_secret(target: Target, site: str, files: dict[str, bytes]) -> Manifest:
    """SITE.key (only the site's pod mounts it) and SITE.pub (the server registers it)."""
    secret = _secret(target, target.owner.site_key(site), "site", files)
    secret["metadata"]["labels"]["medfl.io/site"] = site
    return secret


def ray_job(target: Target) -> Manifest:
    """A search with tuning.runOn: ray: a KubeRay RayJob on the chart's RayCluster.
    KubeRay's submitter (a Job of the same name) streams the search's output to its log,
    which the status and ``medfl run --backend kubernetes`` read as for a Flower search.
    The spec travels in the job's environment (the entry point runs on the Ray head,
    where no ConfigMap of this namespace is mounted)."""
    ray = target.config.ray
    assert ray is not None  # checked with the spec (medfl_operator._checks)
    env = {RAY_EXPERIMENT_ENV: json.dumps(target.experiment.to_wire()), **_RAY_ENV}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": _meta(target, target.owner.submit_job, "search"),
        "spec": {
            "entrypoint": "python -m medfl_operator._job tune-ray",
            "runtimeEnvYAML": yaml.safe_dump({"env_vars": env}, sort_keys=True),
            "clusterSelector": {"ray.io/cluster": ray.cluster_name},
        },
    }


_RAY_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "PYTHONUNBUFFERED": "1"}


def workloads(target: Target) -> list[Manifest]:
    """Every child the operator keeps in line with the spec (the Job and the Secrets
    are made once, at their time). A search on Ray needs none: its RayJob is made once."""
    if target.on_ray:
        return []
    sites = [site_deployment(target, site) for site in _sites(target)]
    return [spec_config_map(target), server_service(target), server_deployment(target), *sites]
