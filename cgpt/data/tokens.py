"""The token-file format of ``data/tokens/``: the shard header, the writer, ``index.json``, the zero-copy reader.

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
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from cgpt.core.errors import DataError
from cgpt.core.fsutil import read_json, read_json_if_valid, write_json_atomic
from cgpt.presets import GPT2_VOCAB_SIZE

#: ``tokenize.tokenizer.kind: bytes``: the 256 byte values and ``<|endoftext|>``
BYTE_VOCAB_SIZE = 257

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
        raise DataError(
            f"{path}: truncated token shard ({len(raw)} bytes < {HEADER_BYTES}-byte header); rerun the tokenize stage"
        )
    magic, version, itemsize, count, _ = HEADER.unpack(raw)
    if magic != MAGIC:
        raise DataError(
            f"{path}: not a cgpt token shard (magic {magic!r}, expected {MAGIC!r}); rerun the tokenize stage"
        )
    if version != FORMAT_VERSION:
        raise DataError(
            f"{path}: token shard format version {version}, this cgpt reads {FORMAT_VERSION}; rerun the tokenize stage"
        )
    if itemsize not in DTYPES:
        raise DataError(
            f"{path}: token shard has {itemsize} bytes per token, expected 2 or 4; rerun the tokenize stage"
        )
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
        path,
        missing="token index not found; run the tokenize stage first (dvc repro tokenize)",
        invalid="rerun the tokenize stage",
    )
    if index.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{path}: token format version {index.get('format_version')!r}, this cgpt reads {FORMAT_VERSION}; rerun "
            "the tokenize stage"
        )
    return index


class TokenFileWriter:
    """Appends one split's tokens to ``{split}-{k:05d}.bin`` files of at most ``shard_tokens`` tokens.

    The header is written with count 0 and patched when the file is closed, so a file without a
    final header is detectably incomplete (and lives inside a temporary folder anyway).
    """

    def __init__(self, out_dir: Path, split: str, dtype: np.dtype, shard_tokens: int) -> None:
        self.out_dir, self.split, self.dtype, self.cap = out_dir, split, dtype, shard_tokens
        self.shards: list[dict[str, Any]] = []
        self.tokens = 0
        self.documents = 0
        self._fh: BinaryIO | None = None
        self._count = 0

    def _open(self) -> None:
        name = f"{self.split}-{len(self.shards):05d}.bin"
        self._fh = open(self.out_dir / name, "wb")
        self._fh.write(pack_header(self.dtype.itemsize, 0))
        self._count = 0
        self.shards.append({"path": name, "tokens": 0})

    def _close(self) -> None:
        if self._fh is None:
            return
        self._fh.seek(0)
        self._fh.write(pack_header(self.dtype.itemsize, self._count))
        self._fh.close()
        self.shards[-1]["tokens"] = self._count
        self._fh = None

    def write(self, tokens: np.ndarray) -> None:
        tokens = tokens.astype(self.dtype, copy=False)
        i = 0
        while i < len(tokens):
            if self._fh is None or self._count >= self.cap:
                self._close()
                self._open()
            assert self._fh is not None
            n = min(len(tokens) - i, self.cap - self._count)
            self._fh.write(tokens[i : i + n].tobytes())
            self._count += n
            self.tokens += n
            i += n

    def close(self) -> None:
        self._close()

    def split_entry(self) -> dict[str, Any]:
        """This split's entry of ``index.json``."""
        return {"tokens": self.tokens, "documents": self.documents, "shards": self.shards}


def token_index(
    vocab_size: int,
    eos: int,
    dtype: np.dtype,
    tokenizer_sha256: str,
    split_params: dict[str, Any],
    splits: dict[str, Any],
) -> dict[str, Any]:
    """The ``index.json`` of a tokens folder (one helper, so a shard merge writes what one run writes)."""
    return {
        "format_version": FORMAT_VERSION,
        "header_bytes": HEADER_BYTES,
        "vocab_size": vocab_size,
        "eos_token_id": eos,
        "dtype": dtype.name,
        "tokenizer_sha256": tokenizer_sha256,
        "split_params": split_params,
        "splits": splits,
    }


SUBSETS = "subsets.json"


class SubsetRuns:
    """Which subset (``meta.pile_set_name``) each token of a split belongs to, as run lengths
    ``[[name, tokens], ...]`` in stream order (adjacent documents of one subset share a run), so
    evaluation can report cross-entropy per subset without a per-token table."""

    def __init__(self, runs: list[list[Any]] | None = None) -> None:
        self.runs: list[list[Any]] = [list(r) for r in runs or []]

    def add(self, name: str, tokens: int) -> None:
        if self.runs and self.runs[-1][0] == name:
            self.runs[-1][1] += tokens
        elif tokens:
            self.runs.append([name, tokens])

    def extend(self, other: list[list[Any]]) -> None:
        for name, tokens in other:
            self.add(name, tokens)

    def labels(self, start: int, stop: int) -> tuple[list[str], np.ndarray]:
        """(names, subset index of every token in ``[start, stop)``)."""
        names = sorted({r[0] for r in self.runs})
        ids = {n: i for i, n in enumerate(names)}
        ends = np.cumsum([r[1] for r in self.runs], dtype=np.int64)
        which = np.searchsorted(ends, np.arange(start, stop, dtype=np.int64), side="right")
        table = np.asarray([ids[r[0]] for r in self.runs] + [-1], dtype=np.int64)  # past the end: -1
        return names, table[np.minimum(which, len(self.runs))]


def write_subsets(tokens_dir: Path, runs: dict[str, list[list[Any]]]) -> None:
    """``subsets.json``: the subset runs of every split (see :class:`SubsetRuns`)."""
    write_json_atomic(Path(tokens_dir) / SUBSETS, {"version": 1, "splits": runs})


def read_subsets(tokens_dir: Path, split: str) -> SubsetRuns | None:
    """The subset runs of ``split``, or None for a tokens folder written before they were recorded."""
    obj = read_json_if_valid(Path(tokens_dir) / SUBSETS)
    if not isinstance(obj, dict) or split not in obj.get("splits", {}):
        return None
    return SubsetRuns(obj["splits"][split])


class TokenStream:
    """One split as a single read-only token sequence over its memmapped shards."""

    def __init__(self, tokens_dir: Path, split: str, index: dict[str, Any] | None = None) -> None:
        self.tokens_dir = Path(tokens_dir)
        self.split = split
        index = index or read_index(tokens_dir)
        if split not in index["splits"]:
            raise DataError(
                f"{self.tokens_dir / 'index.json'}: no split {split!r}; expected one of {sorted(index['splits'])}"
            )
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
                    f"{path}: header says {count} {dtype.name} tokens, index.json says {shard['tokens']} "
                    f"{self.dtype.name}; rerun the tokenize stage"
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


def vocab_size_for(tokenizer: Any, tokens_dir: Path | None = None) -> tuple[int, str]:
    """The vocabulary a model is sized with, and where it comes from: ``data/tokens``' once it exists,
    else the configured one (``tokenize.tokenizer``: the size of a trained BPE, at most; GPT-2's
    50257 for ``kind: gpt2`` and for a pretrained tokenizer, the recipe's). ``tokenizer``: a ``TokenizerParams``."""
    index = read_json_if_valid(Path(tokens_dir) / "index.json") if tokens_dir is not None else None
    if isinstance(index, dict) and isinstance(index.get("vocab_size"), int):
        return index["vocab_size"], "from data/tokens"  # a damaged index: the tokenize stage reports it
    if tokenizer.kind == "train":
        return tokenizer.vocab_size, "at most, trained"
    if tokenizer.kind == "gpt2":
        return GPT2_VOCAB_SIZE, "GPT-2's"
    if tokenizer.kind == "bytes":
        return BYTE_VOCAB_SIZE, "bytes"
    return GPT2_VOCAB_SIZE, "GPT-2's, for a pretrained tokenizer"
