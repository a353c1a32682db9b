"""Brings a Textual `DataTable` to a new list of rows by changing only what differs.

Clearing a table and adding every row again on each event made the console's refresh cost
grow with the rows it holds; here a row is keyed by its first cell (a run id, a task id), a
changed cell is `update_cell`'d, rows that left are removed, new ones added, and the order is
set once with `sort` when it moved. `row_changes` is the decision, over plain data;
`sync_table` applies it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from textual.widgets import DataTable

Row = tuple[Any, ...]  # a row's cells; the first is its key, as a string


@dataclass(frozen=True)
class RowChanges:
    removed: list[str]
    added: list[Row]
    cells: list[tuple[str, int, Any]]  # (row key, column index, new value)
    reorder: bool

    @property
    def empty(self) -> bool:
        return not (self.removed or self.added or self.cells or self.reorder)


def row_changes(shown: Sequence[Row], wanted: Sequence[Row]) -> RowChanges:
    """What turns the rows `shown` (in order) into `wanted`: per row key, only the cells that differ."""
    before = {str(row[0]): row for row in shown}
    after = {str(row[0]): row for row in wanted}
    removed = [key for key in before if key not in after]
    added = [row for key, row in after.items() if key not in before]
    cells = [
        (key, index, value)
        for key, row in after.items()
        if key in before
        for index, value in enumerate(row)
        if index > 0 and before[key][index] != value
    ]
    appended = [key for key in before if key in after] + [key for key in after if key not in before]
    return RowChanges(removed, added, cells, reorder=appended != list(after))


def sync_table(table: DataTable[Any], shown: Sequence[Row], wanted: Sequence[Row]) -> RowChanges:
    """Make `table`, which shows `shown` (what it was last given), show `wanted`; its columns' keys are their
    labels, and the cursor stays on its row's key."""
    changes = row_changes(shown, wanted) if shown != wanted else RowChanges([], [], [], reorder=False)
    if changes.empty:
        return changes
    current = _cursor_key(table)
    columns = list(table.columns)
    for key in changes.removed:
        table.remove_row(key)
    for row in changes.added:
        table.add_row(*row, key=str(row[0]))
    for key, index, value in changes.cells:
        table.update_cell(key, columns[index], value)
    if changes.reorder:
        position = {str(row[0]): n for n, row in enumerate(wanted)}
        table.sort(columns[0], key=lambda first: position[str(first)])
    if current is not None and current in table.rows:
        table.move_cursor(row=table.get_row_index(current))
    elif table.row_count:
        table.move_cursor(row=min(table.cursor_row, table.row_count - 1))
    return changes


def _cursor_key(table: DataTable[Any]) -> str | None:
    if not table.row_count or table.cursor_row < 0:
        return None
    return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
