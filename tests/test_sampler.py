import numpy as np
import pytest

from cgpt.errors import DataError
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
