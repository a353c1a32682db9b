"""What a configuration reloaded on SIGHUP may change in a running daemon: the [reload] keys.

`config/monitor.toml` marks every key [reload] or [restart]; `RELOADABLE` is the same list in
code (a test keeps the two equal). The rest of a new configuration waits for a restart, and
the operator is told which keys those are.
"""

from __future__ import annotations

from ..config import SECTIONS, Settings

RELOADABLE: dict[str, tuple[str, ...]] = {
    "completion": ("settle_seconds", "stall_after_seconds"),
    "archive": ("quiet_seconds", "reserve_bytes"),
    "escalation": ("repeat_seconds", "command", "webhook", "timeout_seconds"),
    "health": ("stale_after_seconds", "quick_check_seconds", "min_free_percent"),
    "alerts": ("urls", "rules", "queue_size", "max_attempts", "retry_seconds", "max_retry_seconds"),
}


def merge_reloadable(current: Settings, new: Settings) -> tuple[Settings, list[str]]:
    """`current` with the [reload] keys of `new`, and the `section.key` names that changed but wait for a restart."""
    updates = {}
    waiting: list[str] = []
    for section in SECTIONS:
        old_values, new_values = getattr(current, section), getattr(new, section)
        changed = {key for key in type(old_values).model_fields if getattr(old_values, key) != getattr(new_values, key)}
        taken = changed & set(RELOADABLE.get(section, ()))
        waiting += [f"{section}.{key}" for key in sorted(changed - taken)]
        updates[section] = old_values.model_copy(update={key: getattr(new_values, key) for key in taken})
    return current.model_copy(update=updates), waiting
