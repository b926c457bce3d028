"""Few-shot example selection, draw for draw as lm-evaluation-harness 0.4.13 does it.

``api/samplers.py`` ``ContextSampler`` with ``--seed``'s fourth slot, ``fewshot_random_seed``
(1234): one ``random.Random(seed)`` per task (and shot count), consumed in document order (0.4.x
does not shuffle the documents). Per document it calls ``rnd.sample(pool, k)``, except for the
tasks whose few-shot split equals their (absent) test split, HellaSwag, PIQA and WinoGrande: they
draw ``k + 1``, drop every draw equal to the evaluated document and keep the first k; if that
leaves fewer than k (the pool held copies of the document), they draw k again from the pool
without it. 0 shots draw nothing. The early-2023 harness Cerebras used (v0.3) shuffled documents
with ``Random(42)`` and drew differently, so only 0-shot prompts are the same across versions.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from cgpt.core.errors import DataError
from cgpt.eval.tasks import Doc

DEFAULT_FEWSHOT_SEED = 1234


class FewshotSampler:
    """Draws the shots of each document in turn; call :meth:`sample` once per document, in order."""

    def __init__(self, pool: Sequence[Doc], *, exclude_eval_doc: bool, seed: int = DEFAULT_FEWSHOT_SEED) -> None:
        self.pool = list(pool)
        self.exclude_eval_doc = exclude_eval_doc
        self.rnd = random.Random(seed)

    def sample(self, k: int, doc: Doc) -> list[Doc]:
        if k == 0:
            return []
        need = k + 1 if self.exclude_eval_doc else k
        if len(self.pool) < need:
            raise DataError(f"few-shot pool has {len(self.pool)} documents; {k} shots need at least {need}")
        if not self.exclude_eval_doc:
            return self.rnd.sample(self.pool, k)
        shots = [d for d in self.rnd.sample(self.pool, k + 1) if d.raw != doc.raw][:k]
        if len(shots) < k:
            rest = [d for d in self.pool if d.raw != doc.raw]
            if len(rest) < k:
                raise DataError(f"few-shot pool has only {len(rest)} documents other than document {doc.index}")
            shots = self.rnd.sample(rest, k)
        return shots
