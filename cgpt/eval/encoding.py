"""Context/continuation tokenization at the boundary, as lm-eval 0.4.13's ``TemplateLM._encode_pair``.

For a causal LM the harness (``api/model.py`` ``_encode_pair`` and ``loglikelihood``):

1. moves the context's trailing whitespace to the front of the continuation;
2. encodes the whole string ``ctx + cont`` and the context alone, and takes the continuation
   tokens as ``encode(ctx + cont)[len(encode(ctx)):]`` (not ``encode(cont)``: a merge across the
   boundary would otherwise be scored differently);
3. for an empty context, scores the continuation after the prefix token (BOS, else EOS).

Encoders call the tokenizer in batches (the Rust tokenizers parallelise them); the ids are those
of ``tokenizer.encode(text)`` with the tokenizer's default special tokens, as the harness's
``tok_encode`` (``add_bos_token`` unset) produces.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from cgpt.core.errors import CgptError

_BATCH = 4096  # strings per tokenizer call


class TextEncoder(Protocol):
    """What the scorer needs from a tokenizer."""

    prefix_token_id: int

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]: ...

    def encode_plain(self, text: str) -> list[int]:
        """Without special tokens (the empty-context case)."""
        ...


class TokenizersEncoder:
    """A ``tokenizers.Tokenizer`` (cgpt's tokenizer.json): byte-level BPE, no BOS, EOS = <|endoftext|>."""

    def __init__(self, tokenizer: Any, *, eos_token: str = "<|endoftext|>") -> None:
        self.tokenizer = tokenizer
        eos = tokenizer.token_to_id(eos_token)
        if eos is None:
            raise CgptError(f"tokenizer has no {eos_token} token; cannot form the harness's prefix token")
        # HF's export of this tokenizer sets bos = eos = <|endoftext|>: prefix_token_id is that id.
        self.prefix_token_id = int(eos)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        out: list[list[int]] = []
        for i in range(0, len(texts), _BATCH):
            out.extend(e.ids for e in self.tokenizer.encode_batch(list(texts[i : i + _BATCH])))
        return out

    def encode_plain(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids


class HFEncoder:
    """A transformers tokenizer, used exactly as the harness's HF backend uses it."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        prefix = bos if bos is not None else eos
        if prefix is None:
            raise CgptError("tokenizer has neither a BOS nor an EOS token; cannot form the harness's prefix token")
        self.prefix_token_id = int(prefix)
        # tok_encode passes add_special_tokens=False for a string that already starts with the prefix
        # token's text; that only matters when the tokenizer adds special tokens at all.
        probe = "a"
        self._adds_specials = tokenizer.encode(probe) != tokenizer.encode(probe, add_special_tokens=False)
        self._prefix_text = tokenizer.decode([self.prefix_token_id])

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        if self._adds_specials:
            return [
                self.tokenizer.encode(t, add_special_tokens=not t.startswith(self._prefix_text), verbose=False)
                for t in texts
            ]
        out: list[list[int]] = []
        for i in range(0, len(texts), _BATCH):
            out.extend(self.tokenizer(list(texts[i : i + _BATCH]), verbose=False)["input_ids"])
        return out

    def encode_plain(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False, verbose=False)


def split_trailing_space(context: str, continuation: str) -> tuple[str, str]:
    """Move the context's trailing whitespace to the continuation's front."""
    n = len(context) - len(context.rstrip())
    if n:
        return context[:-n], context[-n:] + continuation
    return context, continuation


def encode_pairs(encoder: TextEncoder, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """(context tokens, continuation tokens) for each (context, continuation), as the harness splits them."""
    moved = [split_trailing_space(c, x) if c else (c, x) for c, x in pairs]
    contexts = sorted({c for c, _ in moved if c})
    wholes = sorted({c + x for c, x in moved if c})
    ctx_ids = dict(zip(contexts, encoder.encode_batch(contexts)))
    whole_ids = dict(zip(wholes, encoder.encode_batch(wholes)))
    out: list[tuple[list[int], list[int]]] = []
    for (orig_ctx, _), (ctx, cont) in zip(pairs, moved):
        if orig_ctx == "":
            cont_ids = encoder.encode_plain(cont)
            if not cont_ids:
                raise CgptError(f"empty context and continuation {cont!r} encodes to no tokens")
            p = encoder.prefix_token_id
            out.append(([p], cont_ids) if cont_ids[0] != p else (cont_ids[:1], cont_ids[1:]))
            continue
        c_ids = ctx_ids.get(ctx, []) if ctx else []
        if not c_ids:
            raise CgptError(f"context {orig_ctx[:40]!r} is only whitespace; the harness cannot score it")
        out.append((c_ids, whole_ids[ctx + cont][len(c_ids) :]))
    return out
