"""Change detected -> state read -> decision -> mark: the watchers, the detection job, the detector, the
completion rule (pure), the completions it records and announces, and the guard against monitoring loops."""
