"""OpenLineage: a RunEvent per run (START, then COMPLETE, FAIL or ABORT) through openlineage-python's transports."""
