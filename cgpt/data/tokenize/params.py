"""The ``tokenize:`` section of params.yaml (tokenizer, split, sharding, parallelism).

Defaults are the recipe (``shared/spec/cerebras-gpt-recipe.md`` section 3): a byte-level BPE
(GPT-2's for the Cerebras models, or one trained on the corpus), ``<|endoftext|>`` appended after
every document, no BOS. Validators raise ``ValueError``; :mod:`cgpt.config` turns that into one
line naming the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenizeShardParams(_Strict):
    """Which clean parts a tokenize run encodes: part ``k`` of ``data/clean/manifest.json`` belongs
    to shard ``k % count`` (independent of workers and batching). A run with ``count > 1`` writes a
    shard folder (same format plus a ``shard`` block in index.json) for
    :func:`cgpt.data.tokenize.merge.merge_token_shards`; every shard must use the same tokenizer file
    (see :func:`cgpt.data.tokenize.pack.train_shared_tokenizer`)."""

    index: int = Field(0, ge=0)
    count: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _index_below_count(self) -> TokenizeShardParams:
        if self.index >= self.count:
            raise ValueError(f"shard.index={self.index} must be < shard.count={self.count}")
        return self


class TokenizerParams(_Strict):
    """``kind: train`` trains a byte-level BPE on the cleaned train split; ``kind: bytes`` is plain bytes
    (a byte-level BPE without merges, vocab 257: the scaling family's); ``kind: gpt2`` is OpenAI's
    GPT-2 BPE, the Cerebras-GPT tokenizer (vocab 50257, ``<|endoftext|>`` = 50256), its files found in
    a cache or fetched and verified by sha256 (:mod:`cgpt.data.tokenize.gpt2`); ``kind: pretrained``
    loads ``path`` (a dir with vocab.json + merges.txt, a tokenizer.json, or an http(s) URL to either)."""

    kind: Literal["train", "pretrained", "gpt2", "bytes"] = "train"
    path: str | None = None
    vocab_size: int = Field(8192, ge=258, le=1 << 24)
    min_frequency: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _keys_fit_the_kind(self) -> TokenizerParams:
        if self.kind == "pretrained" and not self.path:
            raise ValueError(
                "tokenizer.kind=pretrained needs tokenizer.path (a dir with vocab.json+merges.txt, "
                "a tokenizer.json, or an http(s) URL)"
            )
        # a key that does nothing is a mistake to report, not to ignore (it was probably meant to matter)
        if self.kind in ("pretrained", "gpt2", "bytes"):
            for key in ("vocab_size", "min_frequency"):
                if key in self.model_fields_set:
                    raise ValueError(
                        f"{key} = {getattr(self, key)}: only used with kind: train (kind: {self.kind} "
                        "brings its own vocabulary); remove it"
                    )
        if self.kind == "gpt2" and self.path is not None:
            raise ValueError(
                f"path = {self.path!r}: kind: gpt2 finds GPT-2's files itself (cache, PyPI, publisher); "
                "remove path, or use kind: pretrained to load a folder of your own"
            )
        if self.kind in ("train", "bytes") and self.path is not None:
            raise ValueError(
                f"path = {self.path!r}: only used with kind: pretrained; remove it or set kind: pretrained"
            )
        return self

    @field_validator("path")
    @classmethod
    def _resolve_path(cls, v: str | None, info: ValidationInfo) -> str | None:
        """A relative local path means relative to the params file's folder (the project root)."""
        if v is None or v.startswith(("http://", "https://")):
            return v
        root = (info.context or {}).get("root")
        path = Path(os.path.expanduser(os.path.expandvars(v)))
        return str(path if path.is_absolute() or root is None else Path(root) / path)


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
    def _fractions(self) -> SplitParams:
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


class TokensSpec(BaseModel):
    """The ``tokenize:`` keys that decide what ``data/tokens`` holds (the tokenizer, the split, the
    shard size), not how fast it is made: the view of the section that later stages read (a run's
    tokenizer, the family's identity). Other keys of the section are ignored here."""

    model_config = ConfigDict(extra="ignore", validate_default=True)

    tokenizer: TokenizerParams = TokenizerParams()
    split: SplitParams = SplitParams()
    shard_tokens: int = Field(100_000_000, ge=1)
