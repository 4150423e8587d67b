"""Alembic: a database made by an older release is brought to the newest schema at
start-up, its rows kept."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlalchemy import text

from medfl.api import create_app
from medfl.api._db import MIGRATIONS, make_engine
from tests.api.conftest import AUTH


def test_a_database_at_the_first_revision_is_upgraded_keeping_its_runs(settings):
    engine = make_engine(settings.url())
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.execute(
            text(
                "INSERT INTO experiments (id, name, created_at, spec) VALUES "
                "('e1', 'old', '2026-01-01 00:00:00', :spec)"
            ),
            {"spec": '{"training": {"rounds": 3}}'},
        )
        connection.execute(
            text(
                "INSERT INTO runs (id, experiment_id, backend, status, created_at, "
                "total_rounds, cancel_requested) VALUES "
                "('r1', 'e1', 'fast', 'succeeded', '2026-01-01 00:00:00', 3, false)"
            )
        )
    engine.dispose()
    app = create_app(settings)
    with TestClient(app, headers=AUTH) as client:
        run = client.get("/api/runs/r1").json()
    assert (run["status"], run["resumes"], run["experimentName"]) == ("succeeded", 0, "old")
    with make_engine(settings.url()).connect() as connection:
        assert (
            connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"
        )
