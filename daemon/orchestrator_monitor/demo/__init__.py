"""`orchestrator demo`: a simulated executor (`simulator`) and the monitor beside it (`run`)."""
