"""Zero-copy token loading: reads across shard boundaries, header validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cgpt.core.errors import DataError
from cgpt.data.tokens import HEADER_BYTES, TokenFileWriter, open_split, pack_header, read_index


def make_tokens(d: Path, tokens: np.ndarray, shard_tokens: int, vocab: int = 1000) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    w = TokenFileWriter(d, "train", np.dtype("<u2"), shard_tokens)
    w.write(tokens)
    w.close()
    index = {
        "format_version": 1,
        "vocab_size": vocab,
        "eos_token_id": 0,
        "dtype": "uint16",
        "tokenizer_sha256": "x",
        "splits": {
            "train": {"tokens": len(tokens), "documents": 1, "shards": w.shards},
            "val": {"tokens": 0, "documents": 0, "shards": []},
        },
    }
    (d / "index.json").write_text(json.dumps(index))
    return d


def test_read_across_shard_boundaries(tmp_path):
    data = np.arange(1, 1001, dtype=np.int64) % 997
    d = make_tokens(tmp_path, data, shard_tokens=64)
    s = open_split(d, "train")
    assert len(s) == 1000 and s.vocab_size == 1000 and s.eos_token_id == 0
    assert len(read_index(d)["splits"]["train"]["shards"]) == 16
    for start, length in [(0, 1000), (60, 10), (63, 1), (64, 64), (10, 300), (999, 1), (500, 0)]:
        out = s.read(start, length)
        assert out.dtype == np.int64
        assert np.array_equal(out, data[start : start + length])
    with pytest.raises(IndexError):
        s.read(995, 10)
    assert len(open_split(d, "val")) == 0


@pytest.mark.parametrize(
    "corrupt, needle",
    [
        (lambda b: b"NOTMAGIC" + b[8:], "not a cgpt token shard"),
        (lambda b: b[:8] + (9).to_bytes(4, "little") + b[12:], "format version 9"),
        (lambda b: b[:12] + (3).to_bytes(4, "little") + b[16:], "3 bytes per token"),
        (lambda b: b[:-2], "truncated or corrupt"),
        (lambda b: b[:10], "truncated token shard"),
    ],
)
def test_corrupt_header_is_a_one_line_error_naming_the_file(tmp_path, corrupt, needle):
    d = make_tokens(tmp_path, np.arange(100, dtype=np.int64), shard_tokens=40)
    victim = d / "train-00001.bin"
    victim.write_bytes(corrupt(victim.read_bytes()))
    with pytest.raises(DataError) as exc:
        open_split(d, "train")
    assert needle in str(exc.value) and "train-00001.bin" in str(exc.value) and "\n" not in str(exc.value)


def test_index_mismatch_and_missing(tmp_path):
    with pytest.raises(DataError, match="token index not found"):
        open_split(tmp_path, "train")
    d = make_tokens(tmp_path / "t", np.arange(50, dtype=np.int64), shard_tokens=100)
    index = json.loads((d / "index.json").read_text())
    index["splits"]["train"]["shards"][0]["tokens"] = 49
    (d / "index.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match="index.json says 49"):
        open_split(d, "train")
    with pytest.raises(DataError, match="no split 'dev'"):
        open_split(d, "dev")


def test_numpy_can_read_a_shard_without_cgpt(tmp_path):
    d = make_tokens(tmp_path, np.arange(10, dtype=np.int64), shard_tokens=100)
    m = np.memmap(d / "train-00000.bin", dtype=np.uint16, mode="r", offset=HEADER_BYTES)
    assert m.tolist() == list(range(10))
    assert pack_header(2, 10)[:8] == b"CGPTTOK\0" and len(pack_header(2, 10)) == 32
