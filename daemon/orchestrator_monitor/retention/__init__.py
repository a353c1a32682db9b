"""Retention: deleting run directories and local bags the operator's policies let go, and only safely.

`policy` decides over plain data (pure), `check` compares a run directory with its bag, `removal`
deletes so that a crash leaves nothing looking live, and `prune` is one pass: plan, re-verify,
delete, record, announce. Off by default; SPEC.md: the monitor deletes under runs/ only under a
retention policy the operator enabled.
"""
