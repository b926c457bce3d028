"""The ``clean:`` section of params.yaml.

Defaults are the Cerebras-GPT / Pile recipe (``shared/spec/cerebras-gpt-recipe.md`` section 3):
``ftfy.fix_text(doc, normalization="NFC")`` per document, no quality or length filter, no dedup.
Validators raise ``ValueError``; :mod:`cgpt.config` turns that into one line naming the key.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Normalization = Literal["NFC", "NFKC", "NFD", "NFKD"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DedupParams(_Strict):
    """Optional deduplication (the recipe uses none; the model card names Pythia's dedup).

    ``exact``: drop a document whose normalized text equals an earlier document's (64-bit hash).
    ``near``: drop a document whose MinHash (word ``shingle``-grams, ``num_perm`` permutations)
    collides in LSH with an earlier document and whose estimated Jaccard is >= ``near_threshold``.
    "Earlier" means earlier in the corpus order, whether or not that document was itself kept.
    """

    exact: bool = False
    near: bool = False
    near_threshold: float = Field(0.8, gt=0.0, le=1.0)
    num_perm: int = Field(128, ge=16, le=1024)
    shingle: int = Field(5, ge=1, le=64)


class ShardParams(_Strict):
    """Which slice of the corpus this run processes.

    The unit of work is a *block*: ``clean.part_docs`` consecutive records of one raw file.
    ``by: block`` assigns block ``b`` of file ``f`` to shard ``(f + b) % count`` (every shard reads
    every file, but only cleans its blocks); ``by: file`` assigns whole files (``f % count``) and a
    shard never opens the other files. Both are independent of the worker count, and
    :func:`cgpt.data.clean.merge.merge_clean_shards` of shards ``0..count-1`` gives the same bytes as one run.
    """

    index: int = Field(0, ge=0)
    count: int = Field(1, ge=1)
    by: Literal["block", "file"] = "block"

    @model_validator(mode="after")
    def _index_below_count(self) -> ShardParams:
        if self.index >= self.count:
            raise ValueError(f"shard.index={self.index} must be < shard.count={self.count}")
        return self


class CleanParams(_Strict):
    """The ``clean:`` section."""

    fix_text: bool = True
    normalization: Normalization | None = "NFC"
    min_chars: int = Field(1, ge=0)
    max_chars: int | None = Field(None, ge=1)
    dedup: DedupParams = DedupParams()
    on_bad_line: Literal["error", "skip"] = "error"
    workers: int = Field(0, ge=0)
    part_docs: int = Field(10_000, ge=1)
    shard: ShardParams = ShardParams()

    @model_validator(mode="after")
    def _min_le_max(self) -> CleanParams:
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError(f"max_chars={self.max_chars} must be >= min_chars={self.min_chars}")
        return self
