"""What the endpoints do, on the database and the run folders; the routes only
translate HTTP to these calls."""

from __future__ import annotations

import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from medfl.api._db import (
    CANCELLED,
    FINAL,
    IN_FLIGHT,
    INTERRUPTED,
    QUEUED,
    Database,
    ExperimentRow,
    RoundRow,
    RunRow,
    now,
)
from medfl.api._requests import experiment_from, public_spec
from medfl.api._schemas import (
    ArtifactPublic,
    ExperimentPublic,
    RoundPublic,
    RunPublic,
    ValidationPublic,
)
from medfl.api._sites import ServedSite
from medfl.api._worker import Worker
from medfl.errors import ConflictError, DataError, NotFoundError, SiteExcluded, SitesDataError
from medfl.results._store import CHECKPOINT_FILE
from medfl.spec import Experiment, parse_experiment

RESUMABLE = (CANCELLED, INTERRUPTED)
ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# What a run folder may hand out (never experiment.yaml: it holds the sites' data paths).
MEDIA_TYPES = {
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
    ".png": "image/png",
    ".pt": "application/octet-stream",
    ".npz": "application/octet-stream",
}
SHOWN_FILES = {"result.json", "report.md", "model.pt", "model.npz", "preprocessing.json"}


def _utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; they were written in UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _utc_or_none(moment: datetime | None) -> datetime | None:
    return None if moment is None else _utc(moment)


def _experiment_public(row: ExperimentRow) -> ExperimentPublic:
    experiment = parse_experiment(row.spec)
    return ExperimentPublic(
        id=row.id,
        name=row.name,
        created_at=_utc(row.created_at),
        sites=[s.name for s in experiment.sites],
        rounds=experiment.training.rounds,
        model=experiment.model.type,
        strategy=experiment.strategy.name,
        privacy=experiment.privacy.mode,
        spec=public_spec(experiment),
    )


@dataclass
class Service:
    db: Database
    sites: dict[str, ServedSite]
    worker: Worker
    runs_dir: Path
    backends: tuple[str, ...]

    # --- experiments --------------------------------------------------------

    def parse(self, doc: Any) -> Experiment:
        return experiment_from(doc, self.sites)

    def create_experiment(self, doc: Any) -> ExperimentPublic:
        experiment = self.parse(doc)
        row = ExperimentRow(id=str(uuid.uuid4()), name=experiment.name, spec=experiment.to_wire())
        with self.db.session() as session:
            session.add(row)
        return _experiment_public(row)

    def experiments(self) -> list[ExperimentPublic]:
        with self.db.session() as session:
            rows = session.scalars(select(ExperimentRow).order_by(ExperimentRow.created_at.desc()))
            return [_experiment_public(r) for r in rows]

    def _experiment_row(self, experiment_id: str) -> ExperimentRow:
        with self.db.session() as session:
            row = session.get(ExperimentRow, experiment_id)
        if row is None:
            raise NotFoundError(f"no experiment {experiment_id!r}")
        return row

    def stored(self, experiment_id: str) -> Experiment:
        return parse_experiment(self._experiment_row(experiment_id).spec)

    def experiment(self, experiment_id: str) -> ExperimentPublic:
        return _experiment_public(self._experiment_row(experiment_id))

    def delete_experiment(self, experiment_id: str) -> None:
        self._experiment_row(experiment_id)
        with self.db.session() as session:
            runs = list(
                session.scalars(select(RunRow).where(RunRow.experiment_id == experiment_id))
            )
            busy = [r.id for r in runs if r.status in IN_FLIGHT]
            if busy:
                raise ConflictError(
                    f"experiment {experiment_id!r} has a run in flight ({busy[0]}): cancel it first"
                )
            ids = [r.id for r in runs]
            session.execute(delete(RoundRow).where(RoundRow.run_id.in_(ids)))
            session.execute(delete(RunRow).where(RunRow.id.in_(ids)))
            session.execute(delete(ExperimentRow).where(ExperimentRow.id == experiment_id))
        for run_id in ids:
            shutil.rmtree(self.runs_dir / run_id, ignore_errors=True)

    def validate(self, experiment: Experiment) -> ValidationPublic:
        """Every site reads its data and reports it, as ``medfl validate`` does."""
        from medfl.training import SiteWorker

        reports: list[dict[str, Any]] = []
        skipped: list[DataError] = []
        errors: list[DataError] = []
        for site in experiment.sites:
            try:
                worker = SiteWorker(experiment, site.name, policy=self.sites[site.name].policy())
                reports.append(worker.hello().report.to_dict())
            except SiteExcluded as exc:
                skipped.append(exc)
            except DataError as exc:
                errors.append(exc)
        if len(reports) < experiment.min_sites:
            errors, skipped = errors + skipped, []
        if errors:
            raise SitesDataError(errors)
        return ValidationPublic(
            sites=reports, skipped=[str(e) for e in skipped], features=self._features(experiment)
        )

    def _features(self, experiment: Experiment) -> list[str]:
        from medfl.training import Federation, InProcessTransport

        policies = {s.name: self.sites[s.name].policy() for s in experiment.sites}
        setup = Federation(experiment, InProcessTransport(experiment, policies=policies)).setup()
        return list(setup.preprocessor.feature_names)

    # --- runs ---------------------------------------------------------------

    def launch(self, experiment_id: str, backend: str) -> RunPublic:
        if backend not in self.backends:
            raise ConflictError(
                f"backend {backend!r} is not enabled on this service "
                f"(enabled: {', '.join(self.backends)})"
            )
        row = self._experiment_row(experiment_id)
        if backend == "fast" and parse_experiment(row.spec).privacy.secure:
            raise ConflictError(
                "privacy.secureAggregation: the fast backend runs every site in this "
                "service's process, and SecAgg+ needs Flower's messages: launch it on the "
                "kubernetes backend"
            )
        rounds = int(row.spec["training"]["rounds"])
        run = RunRow(
            id=str(uuid.uuid4()),
            experiment_id=experiment_id,
            backend=backend,
            status=QUEUED,
            total_rounds=rounds,
            cancel_requested=False,
        )
        with self.db.session() as session:
            session.add(run)
        self.worker.submit(run.id)
        return self.run(run.id)

    def _run_public(self, run: RunRow, name: str, done: int) -> RunPublic:
        return RunPublic(
            id=run.id,
            experiment_id=run.experiment_id,
            experiment_name=name,
            backend=run.backend,
            status=run.status,  # type: ignore[arg-type]
            created_at=_utc(run.created_at),
            started_at=_utc_or_none(run.started_at),
            finished_at=_utc_or_none(run.finished_at),
            rounds_done=done,
            total_rounds=run.total_rounds,
            error=run.error,
            phase=run.phase,
            resumes=run.resumes,
        )

    def runs(self, experiment_id: str | None = None) -> list[RunPublic]:
        done = select(RoundRow.run_id, func.count().label("n")).group_by(RoundRow.run_id).subquery()
        query = (
            select(RunRow, ExperimentRow.name, func.coalesce(done.c.n, 0))
            .join(ExperimentRow, ExperimentRow.id == RunRow.experiment_id)
            .outerjoin(done, done.c.run_id == RunRow.id)
            .order_by(RunRow.created_at.desc())
        )
        if experiment_id is not None:
            self._experiment_row(experiment_id)
            query = query.where(RunRow.experiment_id == experiment_id)
        with self.db.session() as session:
            return [self._run_public(r, n, d) for r, n, d in session.execute(query)]

    def run(self, run_id: str) -> RunPublic:
        with self.db.session() as session:
            run = session.get(RunRow, run_id)
            if run is None:
                raise NotFoundError(f"no run {run_id!r}")
            name = session.get_one(ExperimentRow, run.experiment_id).name
            done = session.scalar(select(func.count()).where(RoundRow.run_id == run_id)) or 0
            return self._run_public(run, name, done)

    def cancel(self, run_id: str) -> RunPublic:
        with self.db.session() as session:
            run = session.get(RunRow, run_id)
            if run is None:
                raise NotFoundError(f"no run {run_id!r}")
            if run.status in FINAL:
                raise ConflictError(f"run {run_id!r} already ended ({run.status})")
            run.cancel_requested = True
            if run.status == QUEUED:
                run.status, run.finished_at = CANCELLED, now()
        return self.run(run_id)

    def resume(self, run_id: str) -> RunPublic:
        """An interrupted or cancelled run goes on from its last checkpoint (queued)."""
        with self.db.session() as session:
            run = session.get(RunRow, run_id)
            if run is None:
                raise NotFoundError(f"no run {run_id!r}")
            if run.status not in RESUMABLE or run.backend != "fast":
                raise ConflictError(
                    f"run {run_id!r} is {run.status} on {run.backend}: only an interrupted or "
                    "cancelled run of the fast backend can be resumed"
                )
            if not (self.runs_dir / run_id / CHECKPOINT_FILE).is_file():
                raise ConflictError(f"run {run_id!r} has no checkpoint (no round finished)")
            run.status, run.error, run.finished_at = QUEUED, None, None
            run.cancel_requested, run.resumes = False, run.resumes + 1
        self.worker.submit(run_id)
        return self.run(run_id)

    def rounds(self, run_id: str, after: int = 0) -> list[RoundPublic]:
        query = (
            select(RoundRow)
            .where(RoundRow.run_id == run_id, RoundRow.round > after)
            .order_by(RoundRow.round)
        )
        with self.db.session() as session:
            return [
                RoundPublic(round=r.round, seconds=r.seconds, metrics=r.metrics, sites=r.sites)
                for r in session.scalars(query)
            ]

    # --- run folders --------------------------------------------------------

    def _folder(self, run_id: str) -> Path:
        self.run(run_id)  # 404 for an unknown run
        folder = self.runs_dir / run_id
        if not folder.is_dir():
            raise NotFoundError(f"run {run_id!r} has no results yet")
        return folder

    def artifacts(self, run_id: str) -> list[ArtifactPublic]:
        folder = self._folder(run_id)
        found = []
        for path in sorted(folder.iterdir()):
            if path.is_file() and (path.name in SHOWN_FILES or path.suffix == ".png"):
                kind = MEDIA_TYPES.get(path.suffix, "application/octet-stream")
                found.append(
                    ArtifactPublic(name=path.name, size=path.stat().st_size, media_type=kind)
                )
        return found

    def artifact(self, run_id: str, name: str) -> tuple[Path, str]:
        """The file ``name`` of the run folder: only a name the listing shows."""
        if not ARTIFACT_NAME.match(name):
            raise NotFoundError(f"no artifact {name!r}")
        listed = {a.name: a.media_type for a in self.artifacts(run_id)}
        if name not in listed:
            raise NotFoundError(f"run {run_id!r} has no artifact {name!r}")
        path = (self.runs_dir / run_id / name).resolve()
        if path.parent != (self.runs_dir / run_id).resolve():  # a link pointing out
            raise NotFoundError(f"run {run_id!r} has no artifact {name!r}")
        return path, listed[name]

    def result(self, run_id: str) -> dict[str, Any]:
        import json

        path, _ = self.artifact(run_id, "result.json")
        return dict(json.loads(path.read_text()))
