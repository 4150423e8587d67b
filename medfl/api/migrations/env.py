"""Alembic's environment: the connection comes from medfl.api (``migrate``)."""

from alembic import context

from medfl.api._db import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
