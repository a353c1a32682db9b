"""Read views of the state database: one short read-only transaction each."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Connection, Engine

from ..config import Settings
from ..errors import BadInput
from ..ids import validate_run_id
from ..state import queries
from ..state.engine import database_url, describe_database, open_engine, read_transaction, translate_errors
from ..state.queries import Row
from .runs import RunDetail, StatusView, build_run_detail, build_status_view


@contextmanager
def state_reader(settings: Settings) -> Iterator[tuple[Engine, str]]:
    """A read-only engine on the configured database and its name for messages."""
    url = database_url(settings)
    engine = open_engine(url, busy_timeout_seconds=settings.database.busy_timeout_seconds, readonly=True)
    try:
        yield engine, describe_database(url)
    finally:
        engine.dispose()


def read_status(engine: Engine, name: str, now: datetime) -> StatusView:
    with translate_errors(name), read_transaction(engine) as connection:
        run_rows = queries.fetch_runs(connection)
        counts = queries.fetch_task_counts(connection)
    return build_status_view(run_rows, counts, now)


def read_run(engine: Engine, name: str, run_id: str, now: datetime) -> RunDetail:
    """One run's detail; an unknown run is bad input (exit 2) naming it."""
    validate_run_id(run_id)
    with translate_errors(name), read_transaction(engine) as connection:
        rows = fetch_run_rows(connection, run_id)
    if rows is None:
        raise BadInput(f"unknown run: {run_id} (not in {name})")
    return build_run_detail(*rows, now)


def fetch_run_rows(connection: Connection, run_id: str) -> tuple[Row, list[Row], list[Row]] | None:
    """What a run's detail is built from (inside the caller's transaction); None for an unknown run."""
    run_row = queries.fetch_run(connection, run_id)
    if run_row is None:
        return None
    return run_row, queries.fetch_workstreams(connection, run_id), queries.fetch_task_groups(connection, run_id)
