"""`python -m orchestrator_monitor.cli`: the `orchestrator` command without its console script."""

from __future__ import annotations

import sys

from .main import main

sys.exit(main())
