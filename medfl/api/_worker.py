"""Runs launched through the API, one at a time, in a thread of the service.

A run's state lives in the database: each finished round is a row the moment it
ends (the live events read them), so a restart loses nothing that was finished. The
fast engine runs here; the kubernetes backend creates a FederatedExperiment and
follows its status. Cancelling takes effect when the current round ends.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update

from medfl.api._db import (
    CANCELLED,
    FAILED,
    IN_FLIGHT,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Database,
    ExperimentRow,
    RoundRow,
    RunRow,
    now,
)
from medfl.errors import MedflError, RunCancelled
from medfl.results import RoundRecord, RunStore
from medfl.spec import Experiment, parse_experiment

log = logging.getLogger("medfl.api")
STOPPING = "the service stopped while the run was in flight; its finished rounds are kept"


@dataclass(frozen=True)
class FastLaunch:
    """In this process (medfl.runners.FastEngine)."""

    policies: tuple[tuple[str, Path], ...] = ()


@dataclass(frozen=True)
class KubernetesLaunch:
    """A FederatedExperiment in ``namespace``; the operator runs it."""

    namespace: str | None = None
    poll_s: float = 2.0


Launch = FastLaunch | KubernetesLaunch


def round_row(run_id: str, record: RoundRecord) -> RoundRow:
    sites = {
        name: {"status": s.status, "metrics": s.metrics, "numExamples": s.num_examples}
        for name, s in record.sites.items()
    }
    return RoundRow(
        run_id=run_id,
        round=record.round,
        seconds=record.seconds,
        metrics=dict(record.metrics),
        sites=sites,
    )


def mark_interrupted(db: Database, runs_dir: Path) -> list[str]:
    """At start-up (and as the service stops): runs left queued or running are
    interrupted, in the database and in their run folder's result.json."""
    with db.session() as session:
        ids = list(session.scalars(select(RunRow.id).where(RunRow.status.in_(IN_FLIGHT))))
        session.execute(
            update(RunRow)
            .where(RunRow.id.in_(ids))
            .values(status=INTERRUPTED, error=STOPPING, finished_at=now())
        )
    for run_id in ids:
        _interrupted_result(runs_dir / run_id)
    return ids


def _interrupted_result(folder: Path) -> None:
    """A killed run's result.json still says running; its rounds are all there."""
    store = RunStore(folder)
    try:
        result = store.load_result()
    except (MedflError, ValueError):
        return  # the run had not started writing
    if result.status == "running":
        result.status, result.error, result.error_kind = "failed", STOPPING, "interrupted"
        store.save_result(result)


class Worker:
    def __init__(self, db: Database, runs_dir: Path, launches: dict[str, Launch]) -> None:
        self.db = db
        self.runs_dir = runs_dir
        self.launches = launches
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="medfl-runs", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """The run in flight stops after its round and is marked interrupted."""
        self._stopping.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout_s)
        mark_interrupted(self.db, self.runs_dir)

    def submit(self, run_id: str) -> None:
        self._queue.put(run_id)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            run_id = self._queue.get()
            if run_id is None:
                return
            try:
                self._one(run_id)
            except Exception:  # a bug must not kill the worker; the run says it failed
                log.exception("run %s", run_id)
                self._finish(run_id, FAILED, "internal error in the service; see its log")

    def _one(self, run_id: str) -> None:
        with self.db.session() as session:
            run = session.get(RunRow, run_id)
            if run is None or run.status != QUEUED:
                return
            if run.cancel_requested:
                run.status, run.finished_at = CANCELLED, now()
                return
            spec = session.get_one(ExperimentRow, run.experiment_id).spec
            run.status, run.started_at = RUNNING, run.started_at or now()
            backend, resumed = run.backend, run.resumes > 0
        experiment = parse_experiment(spec)
        launch = self.launches[backend]
        try:
            if isinstance(launch, KubernetesLaunch):
                self._on_kubernetes(run_id, experiment, launch)
            else:
                self._fast(run_id, experiment, launch, resumed)
        except RunCancelled as exc:
            status = INTERRUPTED if self._stopping.is_set() else CANCELLED
            self._finish(run_id, status, STOPPING if status == INTERRUPTED else str(exc))
        except MedflError as exc:
            self._finish(run_id, FAILED, str(exc))
        else:
            self._finish(run_id, SUCCEEDED, None)

    def _finish(self, run_id: str, status: str, error: str | None) -> None:
        with self.db.session() as session:
            run = session.get(RunRow, run_id)
            if run is not None:
                run.status, run.error, run.finished_at = status, error, now()

    def _cancelled(self, run_id: str) -> bool:
        if self._stopping.is_set():
            return True
        with self.db.session() as session:
            return bool(session.scalar(select(RunRow.cancel_requested).where(RunRow.id == run_id)))

    def _fast(self, run_id: str, experiment: Experiment, launch: FastLaunch, resumed: bool) -> None:
        from medfl.runners import FastEngine, run

        def progress(record: RoundRecord) -> None:
            with self.db.session() as session:
                session.merge(round_row(run_id, record))
            if self._cancelled(run_id):
                raise RunCancelled(f"cancelled after round {record.round}; its rounds are kept")

        engine = FastEngine(site_policies=launch.policies)
        folder = self.runs_dir / run_id
        if resumed:  # from the checkpoint; rounds after it run again and replace their rows
            self._forget_after_checkpoint(run_id, folder)
            run(None, engine=engine, resume=folder, progress=progress)
        else:
            run(experiment, engine=engine, out=folder, progress=progress)

    def _forget_after_checkpoint(self, run_id: str, folder: Path) -> None:
        done = len(RunStore(folder).load_checkpoint()[2])
        with self.db.session() as session:
            session.execute(
                delete(RoundRow).where(RoundRow.run_id == run_id, RoundRow.round > done)
            )

    def _on_kubernetes(self, run_id: str, experiment: Experiment, launch: KubernetesLaunch) -> None:
        from medfl.runners._kubernetes import KubernetesBackend, outcome, submit

        cluster = submit(experiment, KubernetesBackend(namespace=launch.namespace))

        def changed(status: dict[str, Any]) -> None:
            self._follow(run_id, status)
            if self._cancelled(run_id):
                raise RunCancelled("no longer followed; the FederatedExperiment goes on")

        status = cluster.follow(launch.poll_s, changed)
        self._collect(run_id, cluster, experiment)
        outcome(status)

    def _collect(self, run_id: str, cluster: Any, experiment: Experiment) -> None:
        """result.json from the submission's log into the run folder (the report and
        plots made from it); its rounds, per site, replace those the status gave."""
        from medfl.runners._kubernetes import copy_result

        folder = self.runs_dir / run_id
        if copy_result(cluster, experiment, folder) is None:
            return
        rounds = RunStore(folder).load_result().rounds
        with self.db.session() as session:
            session.execute(delete(RoundRow).where(RoundRow.run_id == run_id))
            session.add_all(round_row(run_id, record) for record in rounds)

    def _follow(self, run_id: str, status: dict[str, Any]) -> None:
        """The custom resource's status into the run: its phase, a row per round."""
        current = int(status.get("currentRound") or 0)
        with self.db.session() as session:
            run = session.get_one(RunRow, run_id)
            run.phase = status.get("phase")
            if current and session.get(RoundRow, (run_id, current)) is None:
                session.add(
                    RoundRow(
                        run_id=run_id,
                        round=current,
                        seconds=0.0,
                        metrics=dict(status.get("metrics") or {}),
                        sites={},
                    )
                )
