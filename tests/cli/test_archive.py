"""`orchestrator verify`'s exit codes: an unknown run is bad input, a known one without a bag a problem found."""

from __future__ import annotations

from pathlib import Path

from archive_support import add_terminal_run


def test_verify_tells_an_unknown_run_from_one_not_archived_yet(workspace: Path, cli) -> None:
    add_terminal_run(workspace, "done")
    ws = ("--workspace", str(workspace))
    unknown = cli("verify", *ws, "--run", "nope")
    assert (unknown.code, unknown.out) == (2, "")
    assert unknown.err.startswith("orchestrator: error: unknown run: nope") and unknown.err.count("\n") == 1
    waiting = cli("verify", *ws, "--run", "done")
    assert waiting.code == 1 and waiting.err.startswith("orchestrator: error: run done is not archived")
    assert cli("archive", *ws, "--run", "done").code == 0
    assert cli("verify", *ws, "--run", "done").code == 0
