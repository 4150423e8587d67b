"""The status the operator derives from its children: phases, conditions with reasons,
sites, times; and every field it writes is one the generated CRD declares."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from medfl_operator import Owner, Target
from medfl_operator._status import (
    Context,
    Observed,
    derive,
    invalid,
    job_of_ray,
    previous_status,
    to_patch,
)

from medfl.k8s import ExperimentStatus, crd_manifest
from tests.k8s.schemas import problems

NOW = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
LATER = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
STATUS_SCHEMA = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
    "status"
]


def deployment(ready: bool) -> dict[str, Any]:
    return {"status": {"replicas": 1, "availableReplicas": 1 if ready else 0}}


def pod(waiting: str | None = None, restarts: int = 0, unscheduled: bool = False) -> dict[str, Any]:
    state = (
        {"waiting": {"reason": waiting, "message": "back-off 5m0s"}} if waiting else {"running": {}}
    )
    status: dict[str, Any] = {"containerStatuses": [{"restartCount": restarts, "state": state}]}
    if unscheduled:
        status = {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "message": "0/3 nodes have nvidia.com/gpu",
                }
            ]
        }
    return {"metadata": {"labels": {}}, "status": status}


def job(condition: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"startTime": "2026-12-04T08:01:00Z", "active": 1}
    if condition:
        cond = {"type": condition, "status": "True", "reason": "BackoffLimitExceeded"}
        cond["message"] = "Job has reached the specified backoff limit"
        cond["lastTransitionTime"] = "2026-12-04T08:30:00Z"
        status["conditions"] = [cond]
        if condition == "Complete":
            status["completionTime"] = "2026-12-04T08:20:00Z"
    return {"metadata": {"creationTimestamp": "2026-12-04T08:00:30Z"}, "status": status}


def all_ready(target: Target, **changes: Any) -> Observed:
    sites = {s.name: deployment(True) for s in target.experiment.sites}
    pods = {s.name: [pod()] for s in target.experiment.sites}
    base: dict[str, Any] = {"server": deployment(True), "sites": sites, "site_pods": pods}
    return Observed(**{**base, **changes})


def status_of(
    target: Target,
    observed: Observed,
    previous: ExperimentStatus | None = None,
    now: datetime = NOW,
):
    ctx = Context(
        target.experiment, target.config, target.owner, previous or ExperimentStatus(), now
    )
    return derive(ctx, observed)


def conditions(status: ExperimentStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def test_a_new_experiment_is_pending_waiting_for_its_pods(target: Target) -> None:
    status = status_of(target, Observed())
    assert status.phase == "Pending"
    assert conditions(status) == {
        "Valid": ("True", "Validated"),
        "ServerReady": ("False", "NotAvailable"),
        "SitesReady": ("False", "Waiting"),
        "Training": ("False", "NotStarted"),
        "Succeeded": ("False", "NotFinished"),
        "Failed": ("False", "NoFailure"),
    }
    assert (status.current_round, status.total_rounds, status.round) == (0, 15, "0/15")
    assert status.sites_ready == "0/4"
    assert status.observed_generation == 3
    assert status.results is not None and status.results.path == "research/heart-disease-0f1e2d3c"


def test_ready_pods_make_the_server_and_sites_ready(target: Target) -> None:
    status = status_of(target, all_ready(target))
    assert conditions(status)["ServerReady"] == ("True", "Available")
    assert conditions(status)["SitesReady"] == ("True", "AllOnline")
    assert status.sites_ready == "4/4"
    assert status.phase == "Pending"  # until the run is submitted


def test_a_running_job_means_training(target: Target) -> None:
    status = status_of(target, all_ready(target, job=job()))
    assert status.phase == "Running"
    assert conditions(status)["Training"] == ("True", "Running")
    assert status.start_time == datetime(2026, 12, 4, 8, 1, tzinfo=UTC)


def test_a_complete_job_succeeds_with_every_round(target: Target) -> None:
    status = status_of(target, all_ready(target, job=job("Complete")))
    assert status.phase == "Succeeded"
    assert conditions(status)["Succeeded"] == ("True", "RunCompleted")
    assert conditions(status)["Training"] == ("False", "Finished")
    assert (status.round, status.completion_time) == (
        "15/15",
        datetime(2026, 12, 4, 8, 20, tzinfo=UTC),
    )


def test_after_the_run_the_sites_are_finished(target: Target) -> None:
    status = status_of(target, all_ready(target, job=job("Complete")))
    assert {s.state for s in status.sites.values()} == {"Finished"}
    assert conditions(status)["SitesReady"] == ("False", "RunFinished")


def test_a_failed_job_fails_with_the_submissions_own_words(target: Target) -> None:
    said = "medfl: error: only 2 of 4 sites connected within 180 s"
    terminated = {"terminated": {"exitCode": 4, "message": said}}
    job_pod = {"status": {"containerStatuses": [{"restartCount": 0, "state": terminated}]}}
    status = status_of(target, all_ready(target, job=job("Failed"), job_pods=[job_pod]))
    assert status.phase == "Failed"
    failed = next(c for c in status.conditions if c.type == "Failed")
    assert (failed.status, failed.reason, failed.message) == ("True", "RunFailed", said)
    assert status.completion_time == datetime(2026, 12, 4, 8, 30, tzinfo=UTC)


def _summary_pod(code: int, **summary: Any) -> dict[str, Any]:
    said = json.dumps({"medflSummary": 1, **summary})
    terminated = {"terminated": {"exitCode": code, "message": said}}
    return {"status": {"containerStatuses": [{"restartCount": 0, "state": terminated}]}}


def test_the_runs_summary_gives_rounds_and_metrics(target: Target) -> None:
    pod = _summary_pod(0, rounds=15, status="succeeded", metrics={"auc": 0.81, "accuracy": 0.7})
    status = status_of(target, all_ready(target, job=job("Complete"), job_pods=[pod]))
    assert (status.round, status.metrics) == ("15/15", {"auc": 0.81, "accuracy": 0.7})


def test_a_failed_run_says_its_own_error_and_the_rounds_it_finished(target: Target) -> None:
    pod = _summary_pod(4, rounds=3, status="failed", metrics={}, error="only 1 site left")
    status = status_of(target, all_ready(target, job=job("Failed"), job_pods=[pod]))
    failed = next(c for c in status.conditions if c.type == "Failed")
    assert (failed.reason, failed.message, status.round) == (
        "RunFailed",
        "only 1 site left",
        "3/15",
    )


def test_a_failed_job_without_a_message_says_what_the_job_says(target: Target) -> None:
    status = status_of(target, all_ready(target, job=job("Failed")))
    failed = next(c for c in status.conditions if c.type == "Failed")
    assert failed.message == "Job has reached the specified backoff limit"


@pytest.mark.parametrize(
    ("deployment_ready", "pods", "state", "message"),
    [
        (False, [pod("CrashLoopBackOff", restarts=3)], "Failed", "CrashLoopBackOff: back-off 5m0s"),
        (False, [pod("ImagePullBackOff")], "Failed", "ImagePullBackOff: back-off 5m0s"),
        (False, [pod(unscheduled=True)], "Pending", "not scheduled: 0/3 nodes have nvidia.com/gpu"),
        (False, [pod()], "Starting", "pod not ready"),
        (False, [], "Pending", "no pod yet"),
        (True, [pod(restarts=2)], "Online", None),
    ],
)
def test_a_sites_state_says_why_it_is_not_online(
    target: Target,
    deployment_ready: bool,
    pods: list[dict[str, Any]],
    state: str,
    message: str | None,
) -> None:
    observed = all_ready(target)
    observed.sites["hungary"] = deployment(deployment_ready)
    observed.site_pods["hungary"] = pods
    site = status_of(target, observed).sites["hungary"]
    assert (site.state, site.message) == (state, message)


def test_a_crashing_site_makes_sites_ready_false_naming_it(target: Target) -> None:
    observed = all_ready(target)
    observed.sites["hungary"] = deployment(False)
    observed.site_pods["hungary"] = [pod("CrashLoopBackOff", restarts=3)]
    status = status_of(target, observed)
    sites_ready = next(c for c in status.conditions if c.type == "SitesReady")
    assert (sites_ready.status, sites_ready.reason) == ("False", "SiteFailed")
    assert "hungary: CrashLoopBackOff" in sites_ready.message
    assert status.sites["hungary"].restarts == 3


def test_a_condition_keeps_its_transition_time_until_it_changes(target: Target) -> None:
    first = status_of(target, Observed(), now=NOW)
    again = status_of(target, all_ready(target), previous=first, now=LATER)
    times = {c.type: c.last_transition_time for c in again.conditions}
    assert times["Valid"] == NOW  # unchanged: True both times
    assert times["ServerReady"] == LATER


def test_the_outcome_stands_once_the_finished_job_is_removed(target: Target) -> None:
    done = status_of(target, all_ready(target, job=job("Complete")))
    after = status_of(target, all_ready(target), previous=done)
    assert after.phase == "Succeeded"


def test_an_invalid_spec_fails_with_the_reason(owner: Owner) -> None:
    status = invalid(
        owner,
        "invalid experiment spec:\n  spec.sites: site name(s) used twice",
        ExperimentStatus(),
        NOW,
    )
    assert status.phase == "Failed"
    assert conditions(status) == {
        "Valid": ("False", "InvalidSpec"),
        "Failed": ("True", "InvalidSpec"),
    }
    assert "used twice" in status.conditions[0].message


def test_the_status_read_back_parses_with_its_computed_columns(target: Target) -> None:
    status = status_of(target, all_ready(target, job=job()))
    assert previous_status(status.to_wire()) == status
    assert previous_status({"phase": "Exploded"}) == ExperimentStatus()


def test_what_is_no_longer_so_is_removed_by_the_merge_patch(target: Target) -> None:
    status = status_of(target, all_ready(target))
    before = {"sites": {"basel": {"state": "Online"}, "hungary": {"message": "no pod yet"}}}
    patch = to_patch(status, {**before, "completionTime": "2026-12-04T08:00:00Z"})
    assert patch["sites"]["basel"] is None
    assert patch["sites"]["hungary"] == {"state": "Online", "restarts": 0, "message": None}
    assert patch["completionTime"] is None


def _written(target: Target, owner: Owner) -> list[dict[str, Any]]:
    ready = all_ready(target)
    failed_site = all_ready(target)
    failed_site.sites["hungary"] = deployment(False)
    failed_site.site_pods["hungary"] = [pod("CrashLoopBackOff", restarts=1)]
    observed = [Observed(), ready, failed_site, all_ready(target, job=job())]
    observed += [all_ready(target, job=job("Complete")), all_ready(target, job=job("Failed"))]
    out = [to_patch(status_of(target, o), {"sites": {"gone": {}}}) for o in observed]
    return [*out, invalid(owner, "bad", ExperimentStatus(), NOW).to_wire()]


def test_every_status_field_the_operator_writes_is_declared_in_the_crd(
    target: Target, owner: Owner
) -> None:
    """A real API server silently drops undeclared status fields: this schema check is
    closed (no unknown field passes), as kubectl's strict field validation is."""
    for wire in _written(target, owner):
        assert problems(wire, STATUS_SCHEMA) == [], wire
    assert problems({"phase": "Running", "kopf": {}}, STATUS_SCHEMA) != []  # the check bites


def test_a_server_pod_that_cannot_be_scheduled_says_why(target: Target) -> None:
    """e.g. the results claim is not in the experiment's namespace (claims are namespaced)."""
    unscheduled = pod(unscheduled=True)
    observed = all_ready(target, server=deployment(False), server_pods=[unscheduled])
    server = next(c for c in status_of(target, observed).conditions if c.type == "ServerReady")
    assert server.status == "False"
    assert server.message.startswith("the SuperLink pod: not scheduled: ")


def test_while_the_job_runs_its_progress_gives_rounds_metrics_and_privacy(target: Target) -> None:
    progress = {
        "rounds": 4,
        "metrics": {"auc": 0.7},
        "privacySpent": {"hungary": {"epsilon": 0.8, "delta": 1e-5}},
    }
    status = status_of(target, all_ready(target, job=job(), progress=progress))
    assert (status.phase, status.round, status.metrics) == ("Running", "4/15", {"auc": 0.7})
    assert status.privacy_spent["hungary"].epsilon == 0.8
    garbled = dict(progress, privacySpent={"hungary": {"epsilon": -1}})
    assert status_of(target, all_ready(target, job=job(), progress=garbled)).privacy_spent == {}


def _ray(job_status: str, deployment: str, message: str = "") -> dict[str, Any]:
    status = {"jobStatus": job_status, "jobDeploymentStatus": deployment}
    status |= {"startTime": "2026-12-04T08:01:00Z", "endTime": "2026-12-04T08:40:00Z"}
    if message:
        status["message"] = message
    return {"metadata": {"name": "heart-disease-submit"}, "status": status}


@pytest.mark.parametrize(
    ("ray_job", "phase", "reason"),
    [
        (_ray("RUNNING", "Running"), "Running", ""),
        (_ray("SUCCEEDED", "Complete"), "Succeeded", ""),
        (_ray("FAILED", "Complete", "Job entrypoint command failed"), "Failed",
         "Job entrypoint command failed"),
        (_ray("STOPPED", "Complete"), "Failed", "the Ray job ended STOPPED"),
    ],
    ids=["running", "succeeded", "failed", "stopped"],
)  # fmt: skip
def test_a_search_on_ray_reads_its_rayjob_and_has_no_server_or_sites(
    target: Target, ray_job: dict[str, Any], phase: str, reason: str
) -> None:
    observed = Observed(job=job_of_ray(ray_job), on_ray=True, progress={"rounds": 15})
    status = status_of(target, observed)

    assert status.phase == phase
    said = {c.type: c for c in status.conditions}
    assert (said["ServerReady"].reason, said["SitesReady"].reason) == ("NotUsed", "NotUsed")
    assert said["Failed"].message == reason
    assert (status.sites, status.results) == ({}, None)  # the folder stays on the Ray head
    assert status.current_round == 15
