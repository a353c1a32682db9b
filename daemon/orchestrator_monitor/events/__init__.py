"""Every step as an event: the types, the bus and its subscriptions, ids and sequence numbers, log records
as lines, the event log that `orchestrator events` replays, and the sinks that write the lines."""
