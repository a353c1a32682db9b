"""The daemon's HTTP side: the app (`app`) with health, metrics and the dashboard (`dashboard/`), served by
uvicorn in a thread (`server`)."""
