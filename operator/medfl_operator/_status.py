"""The experiment's status, derived from what its children report: a pure function.

Only ``medfl.k8s.ExperimentStatus`` is written, so every field is one the CRD declares.
Sites count as online when their SuperNode Deployment is available: its pod is ready,
and its readiness probe passes only while Flower's SuperNode says it is connected to
the server (medfl_operator._render.CONNECTED_PROBE). A site the server refuses exits,
so its pod restarts and is not ready either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from medfl.k8s import Condition, ExperimentStatus, PrivacySpent, ResultsLocation, SiteStatus
from medfl.k8s._config import OperatorConfig
from medfl.k8s._names import Owner
from medfl.k8s._status import Phase, SiteState
from medfl.spec import Experiment
from medfl_operator._job import MARK

Manifest = dict[str, Any]
JobState = Literal["absent", "running", "succeeded", "failed"]
FINISHED = ("Succeeded", "Failed")
_COMPUTED = ("round", "sitesReady")  # written for kubectl's columns, not read back
# A container waiting for one of these will not start by itself.
_STUCK = {
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
}


@dataclass(frozen=True)
class Observed:
    """What the operator read from the API server for one experiment."""

    server: Manifest | None = None  # the SuperLink Deployment
    server_pods: list[Manifest] = field(default_factory=list)
    sites: dict[str, Manifest | None] = field(default_factory=dict)  # site -> Deployment
    site_pods: dict[str, list[Manifest]] = field(default_factory=dict)
    job: Manifest | None = None
    job_pods: list[Manifest] = field(default_factory=list)
    progress: dict[str, Any] | None = None  # the Job's newest progress line (its log)
    on_ray: bool = False  # a search as a KubeRay RayJob: no server, no site pods


def previous_status(raw: Manifest | None) -> ExperimentStatus:
    """The status as last written; anything unreadable counts as none."""
    data = {k: v for k, v in (raw or {}).items() if k not in _COMPUTED}
    try:
        return ExperimentStatus.model_validate(data)
    except ValidationError:
        return ExperimentStatus()


def _condition(
    previous: ExperimentStatus,
    kind: str,
    true: bool,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> Condition:
    status = "True" if true else "False"
    old = next((c for c in previous.conditions if c.type == kind), None)
    since = old.last_transition_time if old is not None and old.status == status else now
    return Condition.model_validate(
        {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "observedGeneration": generation,
            "lastTransitionTime": since,
        }
    )


def invalid(owner: Owner, message: str, previous: ExperimentStatus, now: datetime):
    """An experiment whose spec does not validate: Failed, with the reason."""
    g = owner.generation
    conditions = [
        _condition(previous, "Valid", False, "InvalidSpec", message, g, now),
        _condition(previous, "Failed", True, "InvalidSpec", message, g, now),
    ]
    return ExperimentStatus(phase="Failed", conditions=conditions, observed_generation=g)


# --- reading the children ----------------------------------------------------------


def available(deployment: Manifest | None) -> bool:
    status = (deployment or {}).get("status") or {}
    return int(status.get("availableReplicas") or 0) >= 1


def _waiting(pods: list[Manifest]) -> str | None:
    """Why a pod's container does not run, where Kubernetes says so."""
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _STUCK:
                return f"{waiting['reason']}: {waiting.get('message', '')}".rstrip(": ")
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                return f"not scheduled: {cond.get('message', cond.get('reason', ''))}"
    return None


def _restarts(pods: list[Manifest]) -> int:
    statuses = [c for p in pods for c in (p.get("status") or {}).get("containerStatuses") or []]
    return sum(int(c.get("restartCount") or 0) for c in statuses)


def site_status(deployment: Manifest | None, pods: list[Manifest]) -> SiteStatus:
    restarts = _restarts(pods)
    if available(deployment):
        return SiteStatus(state="Online", restarts=restarts)
    reason = _waiting(pods)
    if reason is not None:  # stuck: a failing container, or no node takes the pod
        stuck: SiteState = "Pending" if reason.startswith("not scheduled") else "Failed"
        return SiteStatus(state=stuck, message=reason, restarts=restarts)
    if deployment is None or not pods:
        return SiteStatus(state="Pending", message="no pod yet", restarts=restarts)
    return SiteStatus(state="Starting", message="pod not ready", restarts=restarts)


def _job_condition(job: Manifest, kind: str) -> Manifest | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def job_of_ray(ray_job: Manifest | None) -> Manifest | None:
    """A KubeRay RayJob's outcome in a Job's terms (conditions Complete / Failed, start
    and completion times), so the status reads either the same way."""
    if ray_job is None:
        return None
    said = ray_job.get("status") or {}
    job, deployment = said.get("jobStatus"), said.get("jobDeploymentStatus")
    status: Manifest = {"startTime": said.get("startTime")}
    end = said.get("endTime")
    if job == "SUCCEEDED" and deployment == "Complete":
        status["completionTime"] = end
        status["conditions"] = [{"type": "Complete", "status": "True"}]
    elif job in ("FAILED", "STOPPED") or deployment == "Failed":
        message = said.get("message") or f"the Ray job ended {job or deployment}"
        cond = {"type": "Failed", "status": "True", "message": message}
        status["conditions"] = [dict(cond, lastTransitionTime=end)]
    return {"metadata": ray_job.get("metadata") or {}, "status": status}


def job_state(job: Manifest | None) -> JobState:
    if job is None:
        return "absent"
    if _job_condition(job, "Complete") is not None:
        return "succeeded"
    if _job_condition(job, "Failed") is not None:
        return "failed"
    return "running"


def _terminated(pods: list[Manifest]) -> list[Manifest]:
    found = []
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated")
            if terminated:
                found.append(dict(terminated))
    return found


def run_summary(pods: list[Manifest]) -> dict[str, Any] | None:
    """The summary medfl_operator._job left as the submission's termination message."""
    for terminated in _terminated(pods):
        try:
            said = json.loads(terminated.get("message") or "")
        except ValueError:
            continue
        if isinstance(said, dict) and said.get(MARK):
            return said
    return None


def failure_reason(job: Manifest, pods: list[Manifest]) -> str:
    """Why the run failed: the run's own error (the summary), else the submission's
    last words (its termination message falls back to its last log lines), else what
    the Job says."""
    summary = run_summary(pods)
    if summary is not None and summary.get("error"):
        return str(summary["error"])
    for terminated in _terminated(pods):
        said = (terminated.get("message") or "").strip()
        if terminated.get("exitCode") and not said.startswith("{"):
            return said or f"the submission exited with code {terminated['exitCode']}"
    cond = _job_condition(job, "Failed") or {}
    return str(cond.get("message") or cond.get("reason") or "the submission Job failed")


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


# --- the status ----------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    experiment: Experiment
    config: OperatorConfig
    owner: Owner
    previous: ExperimentStatus
    now: datetime

    def condition(self, kind: str, true: bool, reason: str, message: str) -> Condition:
        return _condition(
            self.previous, kind, true, reason, message, self.owner.generation, self.now
        )


def _server_condition(ctx: Context, observed: Observed) -> Condition:
    if available(observed.server):
        return ctx.condition("ServerReady", True, "Available", "the SuperLink pod is ready")
    # e.g. the results claim missing from this namespace: the pod is not scheduled
    stuck = _waiting(observed.server_pods)
    message = f"the SuperLink pod: {stuck}" if stuck else "waiting for the SuperLink pod"
    return ctx.condition("ServerReady", False, "NotAvailable", message)


def _sites_condition(ctx: Context, sites: dict[str, SiteStatus]) -> Condition:
    if sites and all(s.state == "Finished" for s in sites.values()):
        message = "the site pods were stopped after the run (their nodes and GPUs are free)"
        return ctx.condition("SitesReady", False, "RunFinished", message)
    waiting = [
        f"{name}: {s.message or s.state}" for name, s in sites.items() if s.state != "Online"
    ]
    online = len(sites) - len(waiting)
    if not waiting:
        return ctx.condition(
            "SitesReady", True, "AllOnline", f"{online}/{len(sites)} site pods ready"
        )
    reason = "SiteFailed" if any(s.state == "Failed" for s in sites.values()) else "Waiting"
    message = f"{online}/{len(sites)} site pods ready; " + "; ".join(waiting)
    return ctx.condition("SitesReady", False, reason, message)


def _run_conditions(ctx: Context, state: JobState, reason: str) -> list[Condition]:
    running = {
        "absent": (
            False,
            "NotStarted",
            "the run is submitted once the server and every site are ready",
        ),
        "running": (True, "Running", "the run is submitted; the submission Job follows it"),
        "succeeded": (False, "Finished", "the run finished"),
        "failed": (False, "Finished", "the run ended without finishing"),
    }[state]
    done = state == "succeeded"
    failed = state == "failed"
    return [
        ctx.condition("Training", *running),
        ctx.condition("Succeeded", done, "RunCompleted" if done else "NotFinished", ""),
        ctx.condition("Failed", failed, "RunFailed" if failed else "NoFailure", reason),
    ]


_PHASES: dict[JobState, Phase] = {
    "absent": "Pending",
    "running": "Running",
    "succeeded": "Succeeded",
    "failed": "Failed",
}


def _phase(state: JobState, previous: ExperimentStatus) -> Phase:
    if state == "absent" and run_over(previous):
        return previous.phase  # the finished Job was removed: the outcome stands
    return _PHASES[state]


def _sites(ctx: Context, observed: Observed, over: bool) -> dict[str, SiteStatus]:
    names = [s.name for s in ctx.experiment.sites]
    if over:
        return {name: _finished(ctx.previous, name) for name in names}
    return {
        name: site_status(observed.sites.get(name), observed.site_pods.get(name, []))
        for name in names
    }


def derive(ctx: Context, observed: Observed) -> ExperimentStatus:
    """The whole status of a valid experiment, from its children."""
    state = job_state(observed.job)
    phase = _phase(state, ctx.previous)
    sites = _sites(ctx, observed, over=phase in FINISHED)
    job = observed.job
    reason = failure_reason(job, observed.job_pods) if job and state == "failed" else ""
    if observed.on_ray:
        sites = {}
        federation = _not_used(ctx)
    else:
        federation = [_server_condition(ctx, observed), _sites_condition(ctx, sites)]
    conditions = [
        ctx.condition("Valid", True, "Validated", "the spec is valid"),
        *federation,
        *_run_conditions(ctx, state, reason),
    ]
    total = ctx.experiment.training.rounds
    results = None if observed.on_ray else ctx.config.results
    # the summary at the end, the Job's progress lines while it runs
    summary = run_summary(observed.job_pods) or observed.progress or {}
    return ExperimentStatus(
        phase=phase,
        conditions=conditions,
        observed_generation=ctx.owner.generation,
        current_round=_rounds(summary, state, total, ctx.previous),
        total_rounds=total,
        sites=sites,
        start_time=_started(job) or ctx.previous.start_time,
        completion_time=_completion(job) or ctx.previous.completion_time,
        results=ResultsLocation(claim_name=results.claim_name, path=ctx.owner.results_path)
        if results is not None
        else None,
        metrics=summary.get("metrics") or ctx.previous.metrics,
        privacy_spent=_privacy(observed.progress) or ctx.previous.privacy_spent,
    )


def _not_used(ctx: Context) -> list[Condition]:
    said = "a search on Ray (tuning.runOn: ray) starts no Flower server or site pods"
    return [
        ctx.condition("ServerReady", False, "NotUsed", said),
        ctx.condition("SitesReady", False, "NotUsed", said),
    ]


def _privacy(progress: dict[str, Any] | None) -> dict[str, PrivacySpent]:
    said = (progress or {}).get("privacySpent") or {}
    try:
        return {site: PrivacySpent.model_validate(spent) for site, spent in said.items()}
    except (ValidationError, AttributeError):
        return {}


def _rounds(
    summary: dict[str, Any], state: JobState, total: int, previous: ExperimentStatus
) -> int:
    if "rounds" in summary:
        return int(summary["rounds"])
    return total if state == "succeeded" else previous.current_round


def _finished(previous: ExperimentStatus, site: str) -> SiteStatus:
    before = previous.sites.get(site)
    restarts = before.restarts if before is not None else 0
    return SiteStatus(state="Finished", message="stopped after the run", restarts=restarts)


def run_over(previous: ExperimentStatus) -> bool:
    """The run was submitted and ended: its outcome stands, the sites are stopped."""
    return previous.phase in FINISHED and previous.start_time is not None


def _started(job: Manifest | None) -> datetime | None:
    if job is None:
        return None
    status, meta = job.get("status") or {}, job.get("metadata") or {}
    return _time(status.get("startTime")) or _time(meta.get("creationTimestamp"))


def _completion(job: Manifest | None) -> datetime | None:
    if job is None:
        return None
    done = _time((job.get("status") or {}).get("completionTime"))
    if done is not None:
        return done
    failed = _job_condition(job, "Failed")
    return _time(failed.get("lastTransitionTime")) if failed else None


def to_patch(status: ExperimentStatus, previous: Manifest | None) -> Manifest:
    """The status as a JSON merge patch over ``previous``: a merge patch keeps what it
    does not mention, so fields that were written and are now unset (a site's message
    once it is online, a site no longer in the spec) are sent as null."""
    return _with_nulls(dict(status.to_wire()), previous or {})


def _with_nulls(new: Manifest, old: Manifest) -> Manifest:
    out: Manifest = dict(new)
    for key, value in old.items():
        if key not in new:
            out[key] = None
        elif isinstance(value, dict) and isinstance(new[key], dict):
            out[key] = _with_nulls(new[key], value)
    return out
