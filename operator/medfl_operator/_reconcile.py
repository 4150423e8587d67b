"""The plain reconcile the handlers call: parse the spec once, make the children, read
them back into the status. Nothing here knows about kopf's handler machinery."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import kopf

from medfl.errors import SpecError
from medfl.k8s import ExperimentStatus
from medfl.k8s._config import OperatorConfig
from medfl.k8s._joblog import last_progress
from medfl.k8s._names import Owner
from medfl.spec import Experiment, parse_experiment
from medfl_operator._checks import check_for_kubernetes, check_ray, check_site_policies
from medfl_operator._kube import Kube, Manifest
from medfl_operator._material import server_files, site_files
from medfl_operator._render import (
    Target,
    ray_job,
    server_tls_secret,
    site_deployment,
    site_key_secret,
    submit_job,
    workloads,
)
from medfl_operator._status import (
    FINISHED,
    Context,
    Observed,
    available,
    derive,
    invalid,
    job_of_ray,
    job_state,
    previous_status,
    run_over,
    to_patch,
)


def owner_of(body: Mapping[str, Any]) -> Owner:
    meta = body["metadata"]
    generation = int(meta.get("generation") or 1)
    return Owner(meta["name"], meta["namespace"], meta["uid"], generation)


def parse(body: Mapping[str, Any]) -> Experiment:
    """The spec through medfl's own loader (raises SpecError naming each problem)."""
    doc = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind")}
    doc["metadata"] = {"name": body["metadata"]["name"]}
    doc["spec"] = dict(body.get("spec") or {})
    source = f"FederatedExperiment {body['metadata']['name']}"
    experiment = parse_experiment(doc, source)
    check_for_kubernetes(experiment, source)
    return experiment


def _adopted(manifest: Manifest, body: Mapping[str, Any]) -> Manifest:
    kopf.adopt(manifest, owner=body)  # type: ignore[arg-type]
    return manifest


@dataclass(frozen=True)
class Reconciler:
    """The operator's settings and API client, shared by every experiment."""

    config: OperatorConfig
    kube: Kube
    poll_seconds: float = 10.0

    def target(self, body: Mapping[str, Any]) -> Target:
        over = run_over(self._previous(body))
        owner = owner_of(body)
        experiment = parse(body)
        check_ray(experiment, self.config, f"FederatedExperiment {owner.name}")
        check_site_policies(
            experiment,
            self.config.site_policies,
            lambda name: self.kube.read("ConfigMap", owner.namespace, name),
            f"FederatedExperiment {owner.name}",
        )
        return Target(experiment, self.config, owner, run_over=over)

    def apply(self, body: Mapping[str, Any]) -> None:
        """Validate, then create or update every child but the Job. An invalid spec
        gets its status and a PermanentError: kopf does not retry it."""
        try:
            target = self.target(body)
        except SpecError as exc:
            self._write(body, invalid(owner_of(body), str(exc), self._previous(body), _now()))
            raise kopf.PermanentError(str(exc)) from None
        self._materialize(target, body)
        self.sync(body, target)

    def _materialize(self, target: Target, body: Mapping[str, Any]) -> None:
        if not target.on_ray:  # a search on Ray has no Flower server or sites
            self._ensure_secrets(target, body)
        for manifest in workloads(target):
            self.kube.apply(_adopted(manifest, body))

    def sync(self, body: Mapping[str, Any], target: Target | None = None) -> None:
        """Read the children, submit the run once everything is ready, write the status."""
        previous = self._previous(body)
        if target is None:
            try:
                target = self.target(body)
            except SpecError as exc:
                self._write(body, invalid(owner_of(body), str(exc), previous, _now()))
                return
        observed = self.observe(target)
        if not target.on_ray and _missing_children(observed):  # deleted by hand: put back
            self._materialize(target, body)
        if _ready_to_submit(observed, previous):
            submission = ray_job(target) if target.on_ray else submit_job(target)
            self.kube.create(_adopted(submission, body))
            observed = replace(observed, job=self._job(target))
        ctx = Context(target.experiment, self.config, target.owner, previous, _now())
        status = derive(ctx, observed)
        over = status.phase in FINISHED and not target.run_over and status.start_time
        if over and not target.on_ray:
            self._stop_sites(replace(target, run_over=True), body)
        self._write(body, status)

    def _stop_sites(self, target: Target, body: Mapping[str, Any]) -> None:
        """The run ended: scale the site Deployments to zero (GPUs freed)."""
        for site in target.experiment.sites:
            self.kube.apply(_adopted(site_deployment(target, site), body))

    def observe(self, target: Target) -> Observed:
        """Three reads whatever the number of sites: the experiment's Deployments, its
        pods, its Job (and, while the run goes on, the tail of the Job's log)."""
        owner, ns = target.owner, target.owner.namespace
        mine = {"medfl.io/experiment": owner.label}
        deployments = {d["metadata"]["name"]: d for d in self.kube.list("Deployment", ns, mine)}
        pods = self.kube.list("Pod", ns, mine)
        names = [s.name for s in target.experiment.sites]
        job = self._job(target)
        job_pods = self._job_pods(target, pods)
        return Observed(
            server=deployments.get(owner.server),
            server_pods=[p for p in pods if _label(p, "app.kubernetes.io/component") == "server"],
            sites={s: deployments.get(owner.site(s)) for s in names},
            site_pods={s: [p for p in pods if _label(p, "medfl.io/site") == s] for s in names},
            job=job,
            job_pods=job_pods,
            progress=self._progress(ns, job, job_pods, finished_too=_log_only(target)),
            on_ray=target.on_ray,
        )

    def _progress(
        self, namespace: str, job: Manifest | None, pods: list[Manifest], finished_too: bool
    ) -> dict[str, Any] | None:
        """The submission's newest progress line: a fourth read, while the run goes on
        (and once more at its end where the log is the only channel, see _log_only)."""
        state = job_state(job)
        if not pods or state == "absent" or (state != "running" and not finished_too):
            return None
        newest = max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
        log = self.kube.pod_log(namespace, newest["metadata"]["name"], PROGRESS_TAIL)
        return last_progress(log)

    def _job(self, target: Target) -> Manifest | None:
        """The submission Job, or a RayJob's outcome in a Job's terms."""
        owner = target.owner
        if target.on_ray:
            return job_of_ray(self.kube.read("RayJob", owner.namespace, owner.submit_job))
        return self.kube.read("Job", owner.namespace, owner.submit_job)

    def _job_pods(self, target: Target, pods: list[Manifest]) -> list[Manifest]:
        """The submission's pods: the experiment's own, or KubeRay's submitter's (a Job of
        the RayJob's name, whose pods carry none of the operator's labels)."""
        name = target.owner.submit_job
        if target.on_ray:
            return self.kube.list("Pod", target.owner.namespace, {"job-name": name})
        return [p for p in pods if _label(p, "job-name") == name]

    def _ensure_secrets(self, target: Target, body: Mapping[str, Any]) -> None:
        """TLS material and site keys, made only where their Secret does not exist yet:
        never again on a later reconcile."""
        owner, ns = target.owner, target.owner.namespace
        if self.kube.read("Secret", ns, owner.server_tls) is None:
            secret = server_tls_secret(target, server_files(owner))
            self.kube.create(_adopted(secret, body))
        for site in target.experiment.sites:
            if self.kube.read("Secret", ns, owner.site_key(site.name)) is None:
                secret = site_key_secret(target, site.name, site_files(site.name))
                self.kube.create(_adopted(secret, body))

    @staticmethod
    def _previous(body: Mapping[str, Any]) -> ExperimentStatus:
        return previous_status(dict(body.get("status") or {}))

    def _write(self, body: Mapping[str, Any], status: ExperimentStatus) -> None:
        """Patch the status only when it changed (times of unchanged conditions are kept,
        so a steady experiment costs no writes)."""
        raw = dict(body.get("status") or {})
        if previous_status(raw).to_wire() == status.to_wire():
            return
        meta = body["metadata"]
        self.kube.patch_status(meta["namespace"], meta["name"], to_patch(status, raw))


PROGRESS_TAIL = 200  # lines of the Job's log read for its newest progress line


def _log_only(target: Target) -> bool:
    """A RayJob's submitter leaves no summary of ours as its termination message: its log
    gives the final figures too, read until the outcome is written."""
    return target.on_ray and not target.run_over


def _label(obj: Manifest, key: str) -> str | None:
    return (obj["metadata"].get("labels") or {}).get(key)


def _missing_children(observed: Observed) -> bool:
    return observed.server is None or any(d is None for d in observed.sites.values())


def _ready_to_submit(observed: Observed, previous: ExperimentStatus) -> bool:
    """The run is submitted once: when the server and every site are up (a search on
    Ray: at once), and never again after a Job existed (start time set)."""
    if observed.job is not None or previous.start_time is not None:
        return False
    if observed.on_ray:
        return True
    return available(observed.server) and all(available(d) for d in observed.sites.values())


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
