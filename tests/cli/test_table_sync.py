"""`row_changes`: what a console table must change to show new rows, decided over plain data."""

from __future__ import annotations

from orchestrator_monitor.cli.table_sync import row_changes


def test_only_the_cells_that_differ_change_in_place() -> None:
    shown = [("a", "RUNNING", "1/2"), ("b", "COMPLETED", "2/2")]
    changes = row_changes(shown, [("a", "RUNNING", "2/2"), ("b", "COMPLETED", "2/2")])
    assert changes.cells == [("a", 2, "2/2")] and not (changes.added or changes.removed or changes.reorder)
    assert row_changes(shown, shown).empty


def test_rows_that_leave_go_new_ones_come_and_a_new_order_is_noticed() -> None:
    shown = [("a", 1), ("b", 2), ("c", 3)]
    appended = row_changes(shown, [("b", 2), ("c", 3), ("d", 4)])
    assert appended.removed == ["a"] and appended.added == [("d", 4)] and not appended.reorder
    on_top = row_changes(shown, [("d", 4), ("a", 1), ("b", 2), ("c", 3)])
    assert on_top.added == [("d", 4)] and on_top.reorder  # `add_row` appends: the table must be sorted
    swapped = row_changes(shown, [("b", 2), ("a", 1), ("c", 3)])
    assert swapped.reorder and not swapped.cells
