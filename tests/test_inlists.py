"""IN lists padded to a power of two: few SQL texts, the same rows."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from orchestrator_monitor.inlists import CHUNK, chunks, padded


@given(st.lists(st.text(max_size=3), max_size=1100))
def test_chunks_hold_every_value_in_order_in_power_of_two_lists(values: list[str]) -> None:
    parts = list(chunks(values))
    real = [min(CHUNK, len(values) - index * CHUNK) for index in range(len(parts))]
    assert all(len(part) & (len(part) - 1) == 0 for part in parts)  # a power of two: 1, 2, 4 .. 512
    assert [v for part, n in zip(parts, real, strict=True) for v in part[:n]] == values  # every value once, in order
    assert all(set(part[n:]) <= {part[n - 1]} for part, n in zip(parts, real, strict=True))  # then its last repeated


def test_padding_repeats_the_last_value_and_leaves_empty_lists_empty() -> None:
    assert padded([]) == []
    assert padded(["a"]) == ["a"]
    assert padded(["a", "b", "c"]) == ["a", "b", "c", "c"]
    assert len(padded(list(range(CHUNK)))) == 512
