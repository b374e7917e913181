"""Batch checks before sending: duplicate ids are found in any row order, and a batch is put
in the primary key's order (bytewise, like ``COLLATE "C"``) with its rows intact. Compared with
plain-Python references on generated and hand-picked ids."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from effigate_engine.store.batches import (
    STORED_TIME_LOGS,
    ids_ascending,
    in_key_order,
    prepare_batch,
)
from effigate_engine.store.errors import StoreError
from tests.store.helpers import time_log_batch

# short ids over a few characters (repeats are likely), including multi-byte ones whose
# bytewise order differs from their code-point order only in UTF-16, and the empty-prefix case
IDS = st.lists(st.text(alphabet="ab-Zé€😀", min_size=1, max_size=3), max_size=40)


def first_repeat(ids: list[str]) -> tuple[int, str] | None:
    """Reference: the second position of the first id (in order of first appearance) that
    appears more than once, with that id; ``None`` when all ids differ."""
    for value in dict.fromkeys(ids):
        positions = [i for i, v in enumerate(ids) if v == value]
        if len(positions) > 1:
            return positions[1], value
    return None


def batch_of(ids: list[str]) -> pa.Table:
    """Time logs with these ids; each row's agent is its id, so moved rows stay whole."""
    batch = time_log_batch(7, ids)
    return batch.set_column(4, "agent", batch.column("id"))


@settings(max_examples=300, deadline=None)
@given(IDS)
def test_a_repeated_id_is_refused_naming_its_second_position_in_any_order(
    ids: list[str],
) -> None:
    expected = first_repeat(ids)
    if expected is None:
        assert prepare_batch(STORED_TIME_LOGS, batch_of(ids)).column("id").to_pylist() == ids
        return
    with pytest.raises(StoreError) as refused:
        prepare_batch(STORED_TIME_LOGS, batch_of(ids))
    position, value = expected
    assert refused.value.field == f"time_logs.id[{position}]" and refused.value.value == value


@settings(max_examples=300, deadline=None)
@given(IDS.map(lambda ids: list(dict.fromkeys(ids))))
def test_key_order_is_bytewise_and_keeps_each_row_whole(ids: list[str]) -> None:
    ordered = in_key_order(prepare_batch(STORED_TIME_LOGS, batch_of(ids)))
    assert ordered.column("id").to_pylist() == sorted(ids, key=lambda s: s.encode())
    assert ordered.column("agent").to_pylist() == ordered.column("id").to_pylist()
    assert ids_ascending(ordered.column("id"))


@pytest.mark.parametrize(
    ("ids", "ascending"),
    [
        ([], True),
        (["x"], True),
        (["a", "b", "c"], True),
        (["a", "a", "b"], False),  # equal neighbours are not ascending: a repeat
        (["b", "a"], False),
        (["Z", "a"], True),  # bytewise: upper case sorts first
        (["é", "z"], False),  # é is two bytes starting 0xC3, after z (0x7A)
        (["€", "😀"], True),  # 0xE2… before 0xF0…
    ],
)
def test_ascending_ids_hand_picked(ids: list[str], ascending: bool) -> None:
    assert ids_ascending(pa.array(ids, pa.string())) is ascending
    chunks = [pa.array(ids[:1], pa.string()), pa.array(ids[1:], pa.string())]
    assert ids_ascending(pa.chunked_array(chunks)) is ascending  # compared across chunks
