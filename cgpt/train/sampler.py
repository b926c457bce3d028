"""The training data order: the recipe's packing, with a global order that a step number alone fixes.

The Model Zoo cuts the token stream into non-overlapping 2049-token chunks (input = chunk[:-1],
labels = chunk[1:]) and shuffles them globally (spec section 3). Here chunk ``i`` is
``stream[i*(T+1) : (i+1)*(T+1)]`` and epoch ``e`` visits the chunks in a permutation drawn from
``seed + e``. The data order is one sequence of *positions* 0, 1, 2, ... (position ``p`` is
offset ``p mod num_chunks`` of epoch ``p div num_chunks``); update ``s`` trains on the positions
from :func:`cgpt.train.schedule.sequences_seen` (the sequences consumed before it) onwards, so the
batch of every update is a pure function of (seed, s, the batch sizes), a resumed run sees exactly
the batches an uninterrupted run would have seen, and :meth:`ChunkSampler.indices` tells what any
step trained on (as OLMo's data-order tool does).

Distributed training: every rank computes the same global batch positions and reads only its
contiguous share (``part=(rank, world)``), so the global batch and its order do not depend on the
number of ranks.
"""

from __future__ import annotations

import numpy as np
import torch

from cgpt.core.errors import DataError


class ChunkSampler:
    def __init__(self, stream: object, seq_len: int, seed: int) -> None:
        self.stream = stream
        self.chunk = seq_len + 1
        self.seed = seed
        self._orders: dict[int, np.ndarray] = {}
        self.num_chunks = len(stream) // self.chunk  # type: ignore[arg-type]
        if self.num_chunks == 0:
            raise DataError(
                f"the train split has {len(stream)} tokens, fewer than one window of seq_len + 1 = {self.chunk}; "  # type: ignore[arg-type]
                "use a larger corpus or a smaller train.seq_len"
            )

    def _permutation(self, epoch: int) -> np.ndarray:
        """The chunk order of ``epoch`` (the last two are kept: a batch can straddle an epoch boundary)."""
        if epoch not in self._orders:
            if len(self._orders) >= 2:
                self._orders.pop(next(iter(self._orders)))
            self._orders[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.num_chunks)
        return self._orders[epoch]

    def indices(self, start: int, count: int) -> list[int]:
        """Chunk indices at data-order positions ``start .. start + count - 1``."""
        out = []
        for pos in range(start, start + count):
            epoch, offset = divmod(pos, self.num_chunks)
            out.append(int(self._permutation(epoch)[offset]))
        return out

    def batch_indices(self, step: int, batch_size: int) -> list[int]:
        """Chunk indices of update ``step`` when every update has ``batch_size`` sequences."""
        return self.indices(step * batch_size, batch_size)

    def rows(self, start: int, count: int, part: tuple[int, int] = (0, 1)) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, labels) of the ``count`` sequences at positions ``start`` onwards, or of share
        ``part = (rank, world)`` of them: the rank-th of ``world`` equal contiguous slices."""
        rank, world = part
        share = count // world
        rows = [self.stream.read(i * self.chunk, self.chunk) for i in self.indices(start + rank * share, share)]  # type: ignore[attr-defined]
        data = torch.from_numpy(np.stack(rows).astype(np.int64, copy=False))
        return data[:, :-1], data[:, 1:]

    def batch(self, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and labels of update ``step`` when every update has ``batch_size`` sequences."""
        return self.rows(step * batch_size, batch_size)
