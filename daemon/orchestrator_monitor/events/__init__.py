"""Every step as an event: the types, the bus and its subscriptions, ids and sequence numbers, log records
as lines, the event log that `orchestrator events` replays, the sinks that write the lines, and the outbox
that holds what alerts and OpenLineage tell other systems until they took it."""
