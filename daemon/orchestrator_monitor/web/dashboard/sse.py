"""`/events`: the bus as Server-Sent Events, resumable by `Last-Event-ID` (the event's `seq`).

A reconnecting client gets what it missed first, from the hub's ring of recent events or,
further back, fetched again from the event log; then the live stream. The client is
attached before the backlog is read, so nothing falls between the two, and anything seen
twice is skipped by `seq`. A gap too large to replay gets a `reset` event instead: the
page reloads its data, which is cheaper than replaying hours of events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ...events.subscription import Missed
from ...events.types import Event
from .hub import EventHub, format_event
from .params import BadParameter, parse_last_event_id

MAX_REPLAY_EVENTS = 10_000
REPLAY_CHUNK = 500  # events of a backlog sent in one write
KEEPALIVE_SECONDS = 15.0
RETRY_MILLISECONDS = 1000  # how soon a browser reconnects after the stream ends
_UNBOUNDED_SEQ = 2**62


async def read_backlog(hub: EventHub, recent: list[Event], latest_seq: int, last_id: int) -> list[Event] | None:
    """Events after `last_id` up to what `recent` holds; None when there are too many to replay."""
    if last_id == 0:
        return []
    if recent and last_id >= recent[0].seq - 1:
        return [event for event in recent if event.seq > last_id]
    if latest_seq - last_id > MAX_REPLAY_EVENTS:
        return None
    until = recent[0].seq - 1 if recent else _UNBOUNDED_SEQ
    older = await to_thread.run_sync(hub.refetch, Missed(last_id + 1, until, 0), None)
    backlog = [*older, *recent]
    return backlog if len(backlog) <= MAX_REPLAY_EVENTS else None


async def _stream(hub: EventHub, last_id: int) -> AsyncIterator[bytes]:
    client, recent, latest = hub.attach()
    try:
        yield b"retry: %d\n\n" % RETRY_MILLISECONDS
        backlog = await read_backlog(hub, recent, latest, last_id)
        sent = last_id
        if backlog is None:
            yield b"event: reset\ndata: {}\n\n"
            sent = latest
        else:
            for start in range(0, len(backlog), REPLAY_CHUNK):  # a write per chunk, not one per event
                chunk = backlog[start : start + REPLAY_CHUNK]
                yield b"".join(format_event(event) for event in chunk)
                sent = chunk[-1].seq
        while not client.dropped:
            batch = await client.next_batch(KEEPALIVE_SECONDS)
            if not batch and not client.dropped:
                yield b": keep-alive\n\n"
            fresh = [frame for seq, frame in batch if seq > sent]
            if fresh:  # one write for the whole batch: 200 clients, one send each, not one per event
                yield b"".join(fresh)
                sent = batch[-1][0]
    finally:
        hub.detach(client)


async def stream_events(request: Request, hub: EventHub) -> Response:
    try:
        last_id = parse_last_event_id(request.headers.get("last-event-id"), request.query_params.get("last_event_id"))
    except BadParameter as err:
        return JSONResponse({"error": str(err)}, 400)
    if hub.client_count >= hub.max_clients:
        return JSONResponse({"error": f"{hub.max_clients} event streams are open already"}, 503)
    return StreamingResponse(
        _stream(hub, last_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
