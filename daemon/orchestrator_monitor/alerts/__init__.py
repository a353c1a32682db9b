"""Alert rules: events matched against `[[alerts.rules]]`, throttled, kept in an outbox, delivered through apprise."""
