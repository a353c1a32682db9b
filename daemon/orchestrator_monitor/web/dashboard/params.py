"""Query parameters of the dashboard's API, checked and bounded before they reach a query.

Anything a client sends is untrusted: a page size is capped, an offset too (a deep offset
is a slow scan), strings are short, sorts come from a fixed list, unknown parameters and
repeated ones are refused. A refusal is `BadParameter`, answered 400 with the reason.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.datastructures import QueryParams

from ...ledger.catalog import ArchiveFilter, glob_to_like
from ...state.pages import RUN_SORTS, TASK_SORTS, RunFilter, TaskFilter
from ...state.records import RUN_STATUSES, TASK_STATUSES
from ...timefmt import format_timestamp, parse_timestamp

MAX_PAGE_SIZE = 200
MAX_OFFSET = 100_000
MAX_TEXT_CHARS = 128
MAX_PARAMETERS = 16
MAX_QUERY_BYTES = 2048

_RUN_PARAMETERS = frozenset({"status", "q", "sort", "order", "limit", "offset"})
_ARCHIVE_PARAMETERS = frozenset({"status", "since", "until", "name", "tool", "error_type", "result", "limit", "offset"})
_TASK_PARAMETERS = frozenset({"status", "tool", "workstream", "q", "sort", "order", "limit", "offset"})


class BadParameter(ValueError):
    """A query parameter the API does not accept; the message says which and why."""


def _check_shape(params: QueryParams, allowed: frozenset[str], query_bytes: int) -> None:
    if query_bytes > MAX_QUERY_BYTES:
        raise BadParameter(f"the query string is longer than {MAX_QUERY_BYTES} bytes")
    items = params.multi_items()
    if len(items) > MAX_PARAMETERS:
        raise BadParameter(f"more than {MAX_PARAMETERS} query parameters")
    names = [name for name, _ in items]
    unknown = sorted(set(names) - allowed)
    if unknown:
        raise BadParameter(f"unknown query parameter {unknown[0]!r} (known: {', '.join(sorted(allowed))})")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise BadParameter(f"query parameter {repeated[0]!r} given more than once")


def _text(params: QueryParams, name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if len(value) > MAX_TEXT_CHARS:
        raise BadParameter(f"{name}: at most {MAX_TEXT_CHARS} characters")
    if not value.isprintable():
        raise BadParameter(f"{name}: control characters are not allowed")
    return value


def _integer(params: QueryParams, name: str, default: int, low: int, high: int) -> int:
    value = params.get(name)
    if value is None or value == "":
        return default
    if not value.isdigit() or len(value) > 9:
        raise BadParameter(f"{name}: expected a whole number from {low} to {high}, got {value[:20]!r}")
    number = int(value)
    if not low <= number <= high:
        raise BadParameter(f"{name}: expected a whole number from {low} to {high}, got {number}")
    return number


def _choice(params: QueryParams, name: str, choices: Collection[str], default: str) -> str:
    value = _text(params, name)
    if value is None:
        return default
    if value not in choices:
        raise BadParameter(f"{name}: {value!r} is not one of {', '.join(sorted(choices))}")
    return value


def _status(params: QueryParams, statuses: tuple[str, ...]) -> str | None:
    status = _text(params, "status")
    if status is not None and status not in statuses:
        raise BadParameter(f"status: {status!r} is not one of {', '.join(statuses)}")
    return status


def _descending(params: QueryParams, default: str) -> bool:
    return _choice(params, "order", ("asc", "desc"), default) == "desc"


def parse_run_filter(params: QueryParams, query_bytes: int) -> RunFilter:
    """`/api/runs?status=&q=&sort=&order=&limit=&offset=`."""
    _check_shape(params, _RUN_PARAMETERS, query_bytes)
    return RunFilter(
        status=_status(params, RUN_STATUSES),
        search=_text(params, "q"),
        sort=_choice(params, "sort", RUN_SORTS, "created_at"),
        descending=_descending(params, "desc"),
        limit=_integer(params, "limit", 50, 1, MAX_PAGE_SIZE),
        offset=_integer(params, "offset", 0, 0, MAX_OFFSET),
    )


def _time(params: QueryParams, name: str) -> str | None:
    value = _text(params, name)
    if value is None:
        return None
    moment = parse_timestamp(value)
    if moment is None:
        raise BadParameter(f"{name}: expected a time YYYY-MM-DDTHH:MM:SSZ, got {value[:40]!r}")
    return format_timestamp(moment)


def parse_archive_filter(params: QueryParams, query_bytes: int) -> tuple[ArchiveFilter, int, int]:
    """`/api/archives?status=&since=&until=&name=&tool=&error_type=&result=&limit=&offset=`: the search and
    its page (limit, offset)."""
    _check_shape(params, _ARCHIVE_PARAMETERS, query_bytes)
    status = _status(params, RUN_STATUSES)
    name = _text(params, "name")
    result = _text(params, "result")
    if result is not None and result not in ("ok", "corrupt", "unverified"):
        raise BadParameter(f"result: {result!r} is not one of corrupt, ok, unverified")
    where = ArchiveFilter(
        statuses=() if status is None else (status,),
        since=_time(params, "since"),
        until=_time(params, "until"),
        name_like=None if name is None else glob_to_like(name),
        tool=_text(params, "tool"),
        error_type=_text(params, "error_type"),
        result=result,
    )
    return where, _integer(params, "limit", 50, 1, MAX_PAGE_SIZE), _integer(params, "offset", 0, 0, MAX_OFFSET)


def parse_task_filter(params: QueryParams, query_bytes: int) -> TaskFilter:
    """`/api/runs/<id>?status=&tool=&workstream=&q=&sort=&order=&limit=&offset=` (the tasks table)."""
    _check_shape(params, _TASK_PARAMETERS, query_bytes)
    return TaskFilter(
        status=_status(params, TASK_STATUSES),
        tool=_text(params, "tool"),
        workstream_id=_text(params, "workstream"),
        search=_text(params, "q"),
        sort=_choice(params, "sort", TASK_SORTS, "task_id"),
        descending=_descending(params, "asc"),
        limit=_integer(params, "limit", 100, 1, MAX_PAGE_SIZE),
        offset=_integer(params, "offset", 0, 0, MAX_OFFSET),
    )


def parse_last_event_id(header: str | None, query: str | None) -> int:
    """`Last-Event-ID` (header, or `last_event_id` in the query for a first connect): a seq, 0 when absent."""
    value = header if header is not None else query
    if value is None or value.strip() == "":
        return 0
    value = value.strip()
    if not value.isdigit() or len(value) > 18:
        raise BadParameter(f"Last-Event-ID: expected an event seq (a whole number), got {value[:20]!r}")
    return int(value)
