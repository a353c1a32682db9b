"""The `orchestrator` command (`main`), its terminal rendering, live views and archival commands."""
