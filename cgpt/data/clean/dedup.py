"""Document deduplication: exact (64-bit hash of the normalized text) and near (MinHash + LSH).

The rule is order-based and decomposes over shards: a document is dropped when it is an exact
(or near) duplicate of *any earlier* document of the corpus order that passed the filters, kept
or not. So deduplicating each shard locally and then re-checking the survivors against the
earlier shards at merge time gives exactly the single-run result.

Signatures are computed in the worker processes (:func:`doc_signature`); the ordered decision is
taken in one process (:class:`Deduper`). Memory: the exact set costs ~70 bytes per document; the
near index (datasketch ``MinHashLSH`` in memory) ~1 KB per document, so near dedup suits corpora
up to ~10 M documents on one machine (the Pile's 210 M documents need a distributed LSH).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from cgpt.data.clean.params import DedupParams

MINHASH_SEED = 1


def exact_hash(text: str) -> int:
    """A stable 64-bit hash of ``text`` (blake2b); collisions ~n^2/2^65."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def shingles(text: str, k: int) -> list[bytes]:
    """Lower-cased word ``k``-grams; a text of fewer than ``k`` words is one shingle."""
    words = text.lower().split()
    if len(words) <= k:
        return [" ".join(words).encode("utf-8", "surrogatepass")]
    return [" ".join(words[i : i + k]).encode("utf-8", "surrogatepass") for i in range(len(words) - k + 1)]


def minhash_values(text: str, num_perm: int, k: int) -> np.ndarray:
    """The MinHash signature (datasketch, fixed seed) of ``text``'s word shingles."""
    from datasketch import MinHash

    m = MinHash(num_perm=num_perm, seed=MINHASH_SEED)
    m.update_batch(shingles(text, k))
    return m.hashvalues


@dataclass(frozen=True)
class DocSignature:
    exact: int | None
    minhash: np.ndarray | None


def doc_signature(text: str, params: DedupParams) -> DocSignature | None:
    """What the ordered dedup decision needs about one document (None when dedup is off)."""
    if not (params.exact or params.near):
        return None
    return DocSignature(
        exact=exact_hash(text) if params.exact else None,
        minhash=minhash_values(text, params.num_perm, params.shingle) if params.near else None,
    )


class Deduper:
    """Ordered dedup decisions: call :meth:`check` once per filter-passing document, in corpus order.

    Returns ``None`` (keep), ``"exact_dup"`` or ``"near_dup"``. Every checked document enters the
    index, so "duplicate of any earlier document" holds whether or not that document was kept.
    """

    def __init__(self, params: DedupParams) -> None:
        self.params = params
        self._seen: set[int] = set()
        self._lsh = None
        self._scheme = None
        self._n = 0
        if params.near:
            from datasketch import MinHash, MinHashLSH

            self._lsh = MinHashLSH(threshold=params.near_threshold, num_perm=params.num_perm)
            self._scheme = MinHash(num_perm=params.num_perm, seed=MINHASH_SEED).scheme

    def check(self, sig: DocSignature | None) -> str | None:
        if sig is None:
            return None
        if sig.exact is not None:
            if sig.exact in self._seen:
                return "exact_dup"  # identical text: its signature is already in the LSH index
            self._seen.add(sig.exact)
        if self._lsh is not None and sig.minhash is not None:
            from datasketch import LeanMinHash

            lean = LeanMinHash(seed=MINHASH_SEED, hashvalues=sig.minhash, scheme=self._scheme)
            hit = bool(self._lsh.query(lean))
            self._lsh.insert(self._n, lean, check_duplication=False)
            self._n += 1
            if hit:
                return "near_dup"
        return None
