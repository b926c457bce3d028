"""Zero-copy reading of the packed token shards written by :mod:`cgpt.data.pack`.

A shard ``{split}-{k:05d}.bin`` is a 32-byte little-endian header followed by the tokens::

    offset 0   8 bytes  magic  b"CGPTTOK\\0"
    offset 8   uint32   format version (1)
    offset 12  uint32   bytes per token (2 = uint16, 4 = uint32)
    offset 16  uint64   token count
    offset 24  uint64   reserved (0)

``index.json`` lists the shards of each split in order; a split is the concatenation of its
shards (documents may straddle a shard boundary), each document followed by ``eos_token_id``.
Readable without cgpt: ``np.memmap(path, dtype=np.uint16, mode="r", offset=32)``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cgpt.errors import DataError
from cgpt.fsutil import read_json

MAGIC = b"CGPTTOK\0"
FORMAT_VERSION = 1
HEADER = struct.Struct("<8sIIQQ")
HEADER_BYTES = HEADER.size  # 32
DTYPES = {2: np.dtype("<u2"), 4: np.dtype("<u4")}
SPLITS = ("train", "val", "test")


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """uint16 while every id fits (vocab <= 65536), else uint32."""
    return DTYPES[2] if vocab_size <= 1 << 16 else DTYPES[4]


def pack_header(itemsize: int, count: int) -> bytes:
    return HEADER.pack(MAGIC, FORMAT_VERSION, itemsize, count, 0)


def read_header(path: Path) -> tuple[np.dtype, int]:
    """(dtype, token count) of one shard; a bad magic, version, dtype or size is a DataError."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(HEADER_BYTES)
    except OSError as exc:
        raise DataError(f"{path}: cannot read token shard ({exc.strerror}); rerun the tokenize stage") from None
    if len(raw) < HEADER_BYTES:
        raise DataError(f"{path}: truncated token shard ({len(raw)} bytes < {HEADER_BYTES}-byte header); rerun the tokenize stage")
    magic, version, itemsize, count, _ = HEADER.unpack(raw)
    if magic != MAGIC:
        raise DataError(f"{path}: not a cgpt token shard (magic {magic!r}, expected {MAGIC!r}); rerun the tokenize stage")
    if version != FORMAT_VERSION:
        raise DataError(f"{path}: token shard format version {version}, this cgpt reads {FORMAT_VERSION}; rerun the tokenize stage")
    if itemsize not in DTYPES:
        raise DataError(f"{path}: token shard has {itemsize} bytes per token, expected 2 or 4; rerun the tokenize stage")
    size = path.stat().st_size
    if size != HEADER_BYTES + itemsize * count:
        raise DataError(
            f"{path}: token shard is {size} bytes but its header says {count} tokens "
            f"({HEADER_BYTES + itemsize * count} bytes); the file is truncated or corrupt, rerun the tokenize stage"
        )
    return DTYPES[itemsize], count


def read_index(tokens_dir: Path) -> dict[str, Any]:
    path = Path(tokens_dir) / "index.json"
    index = read_json(
        path, missing="token index not found; run the tokenize stage first (dvc repro tokenize)", invalid="rerun the tokenize stage"
    )
    if index.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{path}: token format version {index.get('format_version')!r}, this cgpt reads {FORMAT_VERSION}; rerun the tokenize stage"
        )
    return index


class TokenStream:
    """One split as a single read-only token sequence over its memmapped shards."""

    def __init__(self, tokens_dir: Path, split: str, index: dict[str, Any] | None = None) -> None:
        self.tokens_dir = Path(tokens_dir)
        self.split = split
        index = index or read_index(tokens_dir)
        if split not in index["splits"]:
            raise DataError(f"{self.tokens_dir / 'index.json'}: no split {split!r}; expected one of {sorted(index['splits'])}")
        self.vocab_size: int = int(index["vocab_size"])
        self.eos_token_id: int = int(index["eos_token_id"])
        self.dtype = np.dtype(index["dtype"])
        self._maps: list[np.memmap] = []
        starts = [0]
        for shard in index["splits"][split]["shards"]:
            path = self.tokens_dir / shard["path"]
            dtype, count = read_header(path)
            if count != shard["tokens"] or dtype != self.dtype:
                raise DataError(
                    f"{path}: header says {count} {dtype.name} tokens, index.json says {shard['tokens']} {self.dtype.name}; rerun the tokenize stage"
                )
            if count:
                self._maps.append(np.memmap(path, dtype=dtype, mode="r", offset=HEADER_BYTES, shape=(count,)))
                starts.append(starts[-1] + count)
        self._starts = np.asarray(starts, dtype=np.int64)
        self._len = int(starts[-1])

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        return f"TokenStream({str(self.tokens_dir)!r}, {self.split!r}, tokens={self._len}, shards={len(self._maps)})"

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens ``[start, start + length)`` as int64, crossing shard boundaries as needed."""
        if start < 0 or length < 0 or start + length > self._len:
            raise IndexError(f"read({start}, {length}) outside the {self.split} split of {self._len} tokens")
        out = np.empty(length, dtype=np.int64)
        if length == 0:
            return out
        k = int(np.searchsorted(self._starts, start, side="right")) - 1
        pos, filled = start, 0
        while filled < length:
            m = self._maps[k]
            off = pos - int(self._starts[k])
            n = min(length - filled, len(m) - off)
            out[filled : filled + n] = m[off : off + n]
            filled += n
            pos += n
            k += 1
        return out


def open_split(tokens_dir: Path, split: str) -> TokenStream:
    return TokenStream(tokens_dir, split)


def iter_windows(stream: TokenStream, seq_len: int, *, drop_last: bool = True) -> Iterator[np.ndarray]:
    """Non-overlapping windows of ``seq_len + 1`` tokens (the recipe's 2049-token chunks: input =
    w[:-1], labels = w[1:]), from the start of the stream. The tail shorter than ``seq_len + 1``
    is dropped (``drop_last=False`` yields it too, when it has at least 2 tokens)."""
    if seq_len < 1:
        raise ValueError(f"seq_len={seq_len} must be >= 1")
    w = seq_len + 1
    n = len(stream) // w
    for i in range(n):
        yield stream.read(i * w, w)
    tail = len(stream) - n * w
    if not drop_last and tail >= 2:
        yield stream.read(n * w, tail)
