"""Per-document metrics and their aggregates, computed as lm-eval 0.4.13 computes them.

* Multiple choice (``api/task.py`` ``process_results``): ``acc`` = argmax(lls) == gold;
  ``acc_norm`` = argmax(lls / len(choice)) == gold with the length in characters of the choice
  string (``doc_to_choice``, without the delimiter), both by ``np.argmax`` (first index on ties).
* LAMBADA: ``acc`` = is_greedy; ``perplexity`` = exp(-mean(ll)) over documents, per word (each ll
  is the sum over the word's tokens).
* Aggregates are plain means; ``acc`` stderr = sample std / sqrt(n) (``api/metrics.py``
  ``mean_stderr``); perplexity stderr is a bootstrap (:func:`bootstrap_perplexity_stderr`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np


def multiple_choice_metrics(lls: Sequence[float], choices: Sequence[str], gold: int) -> tuple[float, float]:
    """(acc, acc_norm) of one document."""
    lls_arr = np.asarray(lls, dtype=np.float64)
    lengths = np.array([float(len(c)) for c in choices])
    with np.errstate(divide="ignore", invalid="ignore"):  # an empty choice divides by 0, as in the harness
        pred_norm = int(np.argmax(lls_arr / lengths))
    pred = int(np.argmax(lls_arr))
    return (1.0 if pred == gold else 0.0), (1.0 if pred_norm == gold else 0.0)


def mean(xs: Sequence[float]) -> float:
    """``sum(xs) / len(xs)`` with Python's ``sum`` (the harness's ``mean``)."""
    return sum(xs) / len(xs)


def sample_stddev(xs: Sequence[float]) -> float:
    mu = mean(xs)
    return math.sqrt(sum([(x - mu) ** 2 for x in xs]) / (len(xs) - 1))


def mean_stderr(xs: Sequence[float]) -> float | None:
    """Standard error of the mean; None for fewer than 2 documents (the harness reports "N/A")."""
    if len(xs) < 2:
        return None
    return sample_stddev(xs) / math.sqrt(len(xs))


def perplexity(lls: Sequence[float]) -> float:
    return math.exp(-mean(lls))


def _python_rng_as_numpy(seed: int) -> np.random.RandomState:
    """A numpy MT19937 in the exact state of ``random.Random(seed)``: the same doubles, drawn fast."""
    state = random.Random(seed).getstate()[1]
    rs = np.random.RandomState()
    rs.set_state(("MT19937", np.array(state[:624], dtype=np.uint32), int(state[624]), 0, 0.0))
    return rs


def bootstrap_perplexity_stderr(lls: Sequence[float], iters: int = 100_000) -> float | None:
    """The harness's bootstrap standard error of the perplexity, replica for replica.

    ``api/metrics.py`` ``bootstrap_stderr``: ``chunk = min(1000, iters)``; for chunk ``i`` in
    ``range(iters // chunk)``, a fresh ``random.Random(i)`` draws ``chunk`` resamples
    ``rnd.choices(lls, k=n)`` and each gives ``exp(-mean(resample))``; the result is the sample
    standard deviation of all replicates. It is deterministic (seeded by the chunk index), and the
    multiprocessing and single-process paths draw the same numbers. Here each chunk's uniforms come
    from a numpy generator put in the same Mersenne Twister state, ``floor(u * n)`` picks the items
    as ``choices`` does, and the means are sequential sums (``cumsum``), as Python <= 3.11's ``sum``;
    Python >= 3.12 compensates its float sums, a difference of about 1e-16 relative per replicate.
    """
    if iters <= 0 or len(lls) < 2:
        return None
    xs = np.asarray(lls, dtype=np.float64)
    n = len(xs)
    chunk = min(1000, iters)
    reps: list[float] = []
    for i in range(iters // chunk):
        u = _python_rng_as_numpy(i).random_sample((chunk, n))
        sums = np.cumsum(xs[np.floor(u * n).astype(np.int64)], axis=1)[:, -1]
        reps.extend(math.exp(-(s / n)) for s in sums.tolist())  # math.exp: the harness's exact rounding
    return sample_stddev(reps)
