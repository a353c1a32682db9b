"""Read views of the state database: one short read-only transaction each."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Connection

from ..config import Settings
from ..errors import BadInput
from ..ids import validate_run_id
from ..state import queries
from ..state.access import StateDatabase, state_database
from ..state.engine import read_transaction, translate_errors
from ..state.queries import Row
from ..state.tables import StateTables
from .runs import RunDetail, StatusView, build_run_detail, build_status_view


@contextmanager
def state_reader(settings: Settings) -> Iterator[StateDatabase]:
    """The configured database, read-only, checked against its schema mapping."""
    with state_database(settings, readonly=True) as state:
        yield state


def read_status(state: StateDatabase, now: datetime) -> StatusView:
    with translate_errors(state.name), read_transaction(state.engine) as connection:
        run_rows = queries.fetch_runs(connection, state.tables)
        counts = queries.fetch_task_counts(connection, state.tables)
    return build_status_view(run_rows, counts, now)


def read_run(state: StateDatabase, run_id: str, now: datetime) -> RunDetail:
    """One run's detail; an unknown run is bad input (exit 2) naming it."""
    validate_run_id(run_id)
    with translate_errors(state.name), read_transaction(state.engine) as connection:
        rows = fetch_run_rows(connection, state.tables, run_id)
    if rows is None:
        raise BadInput(f"unknown run: {run_id} (not in {state.name})")
    return build_run_detail(*rows, now)


def fetch_run_rows(connection: Connection, tables: StateTables, run_id: str) -> tuple[Row, list[Row], list[Row]] | None:
    """What a run's detail is built from (inside the caller's transaction); None for an unknown run."""
    run_row = queries.fetch_run(connection, tables, run_id)
    if run_row is None:
        return None
    return (
        run_row,
        queries.fetch_workstreams(connection, tables, run_id),
        queries.fetch_task_groups(connection, tables, run_id),
    )
