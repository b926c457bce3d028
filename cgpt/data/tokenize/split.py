"""Which split (train / val / test) each piece of text goes to: a seeded hash of its text.

A document longer than ``split.chunk_chars`` is first cut on paragraph boundaries into pieces of
about ``chunk_chars`` characters, and each piece goes to val/test/train by a keyed hash of (seed,
piece text); consecutive pieces of one document that land in the same split are joined again. So
the split depends only on the text and the seed, never on workers, shards or ``shard_tokens``.
A document from a raw file with an official split (the Pile's val/test files) keeps it.
"""

from __future__ import annotations

import hashlib

from cgpt.data.tokenize.params import SplitParams


def split_pieces(text: str, chunk_chars: int) -> list[str]:
    """Cut ``text`` after a blank line (else after a newline) once a piece reaches ``chunk_chars``.
    ``"".join(pieces) == text``; a text without newlines stays whole."""
    if chunk_chars <= 0 or len(text) <= chunk_chars:
        return [text]
    pieces, pos, n = [], 0, len(text)
    while n - pos > chunk_chars:
        cut = text.find("\n\n", pos + chunk_chars)
        if cut < 0:
            cut = text.find("\n", pos + chunk_chars)
        if cut < 0:
            break
        while cut < n and text[cut] == "\n":
            cut += 1
        if cut >= n:
            break
        pieces.append(text[pos:cut])
        pos = cut
    pieces.append(text[pos:])
    return pieces


def assign_split(text: str, split: SplitParams) -> str:
    """val / test / train for one piece, from a keyed 64-bit hash of its text."""
    h = hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8, key=str(split.seed).encode()).digest()
    u = int.from_bytes(h, "little") / 2.0**64
    if u < split.val:
        return "val"
    if u < split.val + split.test:
        return "test"
    return "train"


def document_units(text: str, official: str | None, split: SplitParams) -> list[tuple[str, str]]:
    """The (split, text) units one cleaned document contributes, in order."""
    if official is not None:
        return [(official, text)]
    units: list[tuple[str, str]] = []
    for piece in split_pieces(text, split.chunk_chars):
        s = assign_split(piece, split)
        if units and units[-1][0] == s:
            units[-1] = (s, units[-1][1] + piece)
        else:
            units.append((s, piece))
    return units
