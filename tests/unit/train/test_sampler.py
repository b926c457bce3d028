import numpy as np
import pytest

from cgpt.core.errors import DataError
from cgpt.train.sampler import ChunkSampler


class ArrayStream:
    """The TokenStream protocol (len + read) over an in-memory array."""

    def __init__(self, n: int) -> None:
        self.a = np.arange(n, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.a)

    def read(self, start: int, length: int) -> np.ndarray:
        return self.a[start : start + length]


def test_each_epoch_visits_every_chunk_once():
    s = ChunkSampler(ArrayStream(9 * 10 + 3), seq_len=8, seed=1)
    assert s.num_chunks == 10
    seen = [i for step in range(5) for i in s.batch_indices(step, 2)]
    assert sorted(seen) == list(range(10))


def test_batches_are_a_function_of_step_and_windows_shift_by_one():
    a = ChunkSampler(ArrayStream(1000), seq_len=15, seed=7)
    b = ChunkSampler(ArrayStream(1000), seq_len=15, seed=7)
    x1, y1 = a.batch(3, 4)
    x2, y2 = b.batch(3, 4)
    assert (x1 == x2).all() and x1.shape == (4, 15)
    assert (y1[:, :-1] == x1[:, 1:]).all()
    assert (x1[:, 0] % 16 == 0).all()  # windows start on chunk boundaries (non-overlapping packing)


def test_different_seed_different_order():
    a = ChunkSampler(ArrayStream(10_000), seq_len=15, seed=1).batch_indices(0, 8)
    b = ChunkSampler(ArrayStream(10_000), seq_len=15, seed=2).batch_indices(0, 8)
    assert a != b


def test_too_small_split_is_a_clear_error():
    with pytest.raises(DataError, match="fewer than one window"):
        ChunkSampler(ArrayStream(10), seq_len=64, seed=0)


def test_the_13b_batch_switch_neither_skips_nor_repeats_a_sequence():
    """Update s reads from the sequences consumed before it: 720 per step, then 1080 per step, back to back."""
    from dataclasses import replace

    from cgpt.presets import BatchSwitch, get_preset
    from cgpt.train.schedule import batch_size_at, sequences_seen

    recipe = replace(
        get_preset("cerebras-13b").recipe,
        batch_size=2,
        batch_switch=BatchSwitch(at_step=3, step_reset_to=2, batch_size=3, warmup_steps=1, decay_steps=4),
    )
    assert [sequences_seen(recipe, s) for s in range(7)] == [0, 2, 4, 6, 9, 12, 15]
    assert sequences_seen(get_preset("cerebras-13b").recipe, 58_000) == 57_000 * 720 + 1_000 * 1080
    s = ChunkSampler(ArrayStream(16 * 50), seq_len=15, seed=4)  # 50 chunks
    read = []
    for step in range(recipe.optimizer_steps()):
        x, _ = s.rows(sequences_seen(recipe, step), batch_size_at(recipe, step))
        read += [int(row[0]) // 16 for row in x]  # the chunk each window starts in
    assert read == s.indices(0, len(read)) and len(read) == 3 * 2 + 3 * 3
    assert len(set(read)) == len(read)  # within one epoch: nothing twice, nothing left out
