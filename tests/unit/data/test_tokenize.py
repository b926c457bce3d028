"""Tokenizers (GPT-2 facts, trained BPE) and the tokenize/pack stage (split, EOS, shards, index)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from corpus_helpers import WORDS, random_text, synthetic_raw, write_raw

from cgpt.core.errors import DataError
from cgpt.data.clean.cleaner import clean
from cgpt.data.clean.params import CleanParams
from cgpt.data.tokenize.pack import tokenize_corpus
from cgpt.data.tokenize.params import SplitParams, TokenizeParams
from cgpt.data.tokenize.split import assign_split, document_units, split_pieces
from cgpt.data.tokenize.tokenizer import load_tokenizer, train_tokenizer
from cgpt.data.tokens import HEADER_BYTES, MAGIC, TokenFileWriter, dtype_for_vocab, open_split, read_header, read_index


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("tok")
    raw = synthetic_raw(tmp / "raw", n_docs=200, seed=7)
    clean(CleanParams(workers=1, part_docs=64), raw, tmp / "clean", progress=False)
    return tmp / "clean"


def small_params(**kw) -> TokenizeParams:
    base = {"tokenizer": {"vocab_size": 400}, "split": {"val": 0.1, "test": 0.1, "chunk_chars": 200}}
    base.update(kw)
    return TokenizeParams.model_validate(base)


def files_bytes(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


# ---------------------------------------------------------------------------------------------- tokenizers


def test_gpt2_facts_from_vocab_and_merges(gpt2_tokenizer_dir):
    tok = load_tokenizer(gpt2_tokenizer_dir)
    assert tok.get_vocab_size() == 50257
    assert tok.token_to_id("<|endoftext|>") == 50256
    assert tok.encode("Hello world").ids == [15496, 995]
    assert tok.encode("hello world").ids == [31373, 995]
    assert tok.encode("Generative AI is ").ids == [8645, 876, 9552, 318, 220]
    assert tok.encode("a<|endoftext|>b").ids == [64, 50256, 65]
    assert tok.decode([15496, 995]) == "Hello world"


def test_gpt2_roundtrip_through_tokenizer_json(gpt2_tokenizer_dir, tmp_path):
    tok = load_tokenizer(gpt2_tokenizer_dir)
    (tmp_path / "tokenizer.json").write_text(tok.to_str(), encoding="utf-8")
    for src in (tmp_path, tmp_path / "tokenizer.json", gpt2_tokenizer_dir / "vocab.json"):
        t2 = load_tokenizer(src)
        assert t2.encode("a<|endoftext|>b").ids == [64, 50256, 65]


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_tokenizer(tmp_path / "nope")
    with pytest.raises(DataError, match="no tokenizer.json or vocab.json"):
        load_tokenizer(tmp_path)


def test_trained_tokenizer_is_deterministic_and_byte_level():
    rng = random.Random(0)
    texts = [random_text(rng, 80, 2) for _ in range(200)]
    a = train_tokenizer(iter(texts), vocab_size=350, min_frequency=2)
    b = train_tokenizer(iter(texts), vocab_size=350, min_frequency=2)
    assert a.to_str() == b.to_str()
    assert a.get_vocab_size() <= 350 and a.token_to_id("<|endoftext|>") is not None
    s = "Unseen ünïcödé 漢字 <|endoftext|> ok"
    ids = a.encode(s).ids
    assert a.token_to_id("<|endoftext|>") in ids
    assert a.decode(ids, skip_special_tokens=False) == s


# ---------------------------------------------------------------------------------------------- split


def test_split_pieces_rejoin_and_size():
    rng = random.Random(1)
    text = random_text(rng, 40, 60)
    pieces = split_pieces(text, 500)
    assert "".join(pieces) == text and len(pieces) > 5
    assert all(len(p) >= 500 for p in pieces[:-1])
    assert split_pieces("no newline " * 100, 50) == ["no newline " * 100]
    assert split_pieces(text, 0) == [text]


def test_official_split_wins_and_assignment_is_stable():
    sp = SplitParams(val=0.3, test=0.3, seed=5, chunk_chars=100)
    text = random_text(random.Random(2), 30, 20)
    assert document_units(text, "val", sp) == [("val", text)]
    units = document_units(text, None, sp)
    assert "".join(t for _, t in units) == text
    assert {s for s, _ in units} <= {"train", "val", "test"}
    assert all(a[0] != b[0] for a, b in zip(units, units[1:]))  # runs are merged
    assert units == document_units(text, None, sp)
    assert document_units(text, None, sp.model_copy(update={"seed": 6})) != units


def test_default_split_gives_shakespeare_sized_corpus_val_and_test():
    """42 documents of ~130 k characters (like the default Shakespeare corpus) -> usable val/test."""
    rng = random.Random(42)
    sp = SplitParams()
    counts = {"train": 0, "val": 0, "test": 0}
    for _ in range(42):
        paras = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60))) for _ in range(700)]
        for s, t in document_units("\n\n".join(paras), None, sp):
            counts[s] += len(t)
    total = sum(counts.values())
    assert counts["val"] > 0.004 * total and counts["test"] > 0.004 * total
    assert counts["train"] > 0.95 * total


# ---------------------------------------------------------------------------------------------- pack


def test_tokenize_index_header_and_eos(clean_dir, tmp_path):
    stats = tokenize_corpus(small_params(), clean_dir, tmp_path / "tokens", progress=False)
    out = tmp_path / "tokens"
    index = read_index(out)
    assert set(index) >= {"format_version", "vocab_size", "eos_token_id", "dtype", "tokenizer_sha256", "splits"}
    assert index["dtype"] == "uint16" and index["vocab_size"] <= 400
    assert (out / "tokenizer.json").is_file()
    tok = load_tokenizer(out / "tokenizer.json")
    assert tok.get_vocab_size() == index["vocab_size"]
    eos = index["eos_token_id"]
    for split in ("train", "val", "test"):
        info = index["splits"][split]
        assert info["tokens"] == stats["tokens"][split] > 0
        assert info["documents"] == stats["documents"][split] > 0
        stream = open_split(out, split)
        toks = stream.read(0, len(stream))
        assert toks[-1] == eos  # EOS after every document ...
        assert int((toks == eos).sum()) == info["documents"]  # ... and only there
        for shard in info["shards"]:
            raw = (out / shard["path"]).read_bytes()
            assert raw[:8] == MAGIC and len(raw) == HEADER_BYTES + 2 * shard["tokens"]
    assert stats["timing"]["tokens_per_s"] > 0 and stats["documents_in"] > 0
    # val keeps the raw val file's documents whole: the official split wins
    assert index["splits"]["val"]["documents"] >= 50


def test_split_stable_when_shard_tokens_and_batching_change(clean_dir, tmp_path):
    tokenize_corpus(small_params(), clean_dir, tmp_path / "a", progress=False)
    tokenize_corpus(small_params(shard_tokens=997, batch_docs=7, workers=1), clean_dir, tmp_path / "b", progress=False)
    ia, ib = read_index(tmp_path / "a"), read_index(tmp_path / "b")
    assert len(ib["splits"]["train"]["shards"]) > 1
    for split in ("train", "val", "test"):
        sa, sb = open_split(tmp_path / "a", split), open_split(tmp_path / "b", split)
        assert np.array_equal(sa.read(0, len(sa)), sb.read(0, len(sb)))
        assert ia["splits"][split]["documents"] == ib["splits"][split]["documents"]
        assert all(s["tokens"] <= 997 for s in ib["splits"][split]["shards"])
    assert files_bytes(tmp_path / "a")["tokenizer.json"] == files_bytes(tmp_path / "b")["tokenizer.json"]


def test_tokenize_is_byte_identical_on_rerun(clean_dir, tmp_path):
    tokenize_corpus(small_params(), clean_dir, tmp_path / "a", progress=False)
    tokenize_corpus(small_params(), clean_dir, tmp_path / "b", progress=False)
    assert files_bytes(tmp_path / "a") == files_bytes(tmp_path / "b")


def test_pretrained_gpt2_pack(gpt2_tokenizer_dir, clean_dir, tmp_path):
    p = small_params(tokenizer={"kind": "pretrained", "path": str(gpt2_tokenizer_dir)})
    tokenize_corpus(p, clean_dir, tmp_path / "t", progress=False)
    index = read_index(tmp_path / "t")
    assert index["vocab_size"] == 50257 and index["eos_token_id"] == 50256 and index["dtype"] == "uint16"


def test_dtype_choice_and_uint32_shards(tmp_path):
    assert dtype_for_vocab(50257) == np.uint16
    assert dtype_for_vocab(65536) == np.uint16
    assert dtype_for_vocab(65537) == np.uint32
    w = TokenFileWriter(tmp_path, "train", np.dtype("<u4"), shard_tokens=5)
    data = np.array([0, 70000, 3, 100000, 5, 6, 7], dtype=np.int64)
    w.write(data)
    w.close()
    assert [s["tokens"] for s in w.shards] == [5, 2]
    dtype, count = read_header(tmp_path / "train-00000.bin")
    assert dtype == np.uint32 and count == 5
    index = {
        "format_version": 1,
        "vocab_size": 100001,
        "eos_token_id": 0,
        "dtype": "uint32",
        "splits": {"train": {"tokens": 7, "documents": 1, "shards": w.shards}},
    }
    (tmp_path / "index.json").write_text(json.dumps(index))
    s = open_split(tmp_path, "train")
    assert s.read(0, 7).tolist() == data.tolist()


def test_empty_train_split_is_an_error(tmp_path):
    raw = write_raw(tmp_path / "raw", [("v.jsonl", "val", "S", [{"text": "only validation text", "meta": {}}])])
    clean(CleanParams(workers=1), raw, tmp_path / "clean", progress=False)
    with pytest.raises(DataError, match="train split is empty"):
        tokenize_corpus(small_params(), tmp_path / "clean", tmp_path / "tokens", progress=False)
    assert not (tmp_path / "tokens").exists()


def test_assign_split_fractions():
    sp = SplitParams(val=0.2, test=0.1, seed=0)
    got = [assign_split(f"doc {i}", sp) for i in range(5000)]
    assert 0.17 < got.count("val") / 5000 < 0.23
    assert 0.08 < got.count("test") / 5000 < 0.12


def _literal_eos_corpus(tmp_path: Path) -> Path:
    docs = [
        {"text": "The end<|endoftext|>is text here.", "meta": {}},
        {"text": "A plain document.", "meta": {}},
        {"text": "<|endoftext|>", "meta": {}},
    ]
    raw = write_raw(tmp_path / "raw", [("a.jsonl", None, "S", docs)])
    clean(CleanParams(workers=1), raw, tmp_path / "clean", progress=False)
    return tmp_path / "clean"


def test_a_literal_endoftext_in_a_document_is_text_not_the_eos(gpt2_tokenizer_dir, tmp_path):
    """The recipe's plain GPT-2 BPE encodes "<|endoftext|>" inside a document as its characters; only the
    separator appended after each document is id 50256."""
    p = small_params(tokenizer={"kind": "pretrained", "path": str(gpt2_tokenizer_dir)}, split={"val": 0.0, "test": 0.0})
    tokenize_corpus(p, _literal_eos_corpus(tmp_path), tmp_path / "t", progress=False)
    stream = open_split(tmp_path / "t", "train")
    toks = stream.read(0, len(stream)).tolist()
    literal = [27, 91, 437, 1659, 5239, 91, 29]  # "<", "|", "end", "of", "text", "|", ">"
    tok = load_tokenizer(gpt2_tokenizer_dir)
    plain = lambda s: tok.encode(s, add_special_tokens=False).ids  # noqa: E731
    assert toks == (
        plain("The end") + literal + plain("is text here.") + [50256] + plain("A plain document.") + [50256]
        + literal + [50256]
    )  # fmt: skip
    saved = json.loads((tmp_path / "t" / "tokenizer.json").read_text())
    assert saved == json.loads(tok.to_str(pretty=True))  # the flag is not part of the tokenizer file


def test_a_literal_endoftext_with_a_trained_tokenizer(tmp_path):
    tokenize_corpus(
        small_params(split={"val": 0.0, "test": 0.0}), _literal_eos_corpus(tmp_path), tmp_path / "t", progress=False
    )
    index = read_index(tmp_path / "t")
    stream = open_split(tmp_path / "t", "train")
    toks = stream.read(0, len(stream))
    assert int((toks == index["eos_token_id"]).sum()) == index["splits"]["train"]["documents"] == 3
    assert toks[-1] == index["eos_token_id"]


# ---------------------------------------------------------------------------------------------- kind: bytes


def test_byte_tokenizer_ids_are_the_utf8_bytes_plus_one():
    from cgpt.data.tokenize.tokenizer import EOS_TOKEN, byte_tokenizer

    tok = byte_tokenizer()
    tok.encode_special_tokens = True
    text = "Héllo, world!\n\tROMEO: <|endoftext|> ☃ \x00\xff"
    enc = tok.encode(text)
    assert [i - 1 for i in enc.ids] == list(text.encode("utf-8"))  # one id per byte, nothing merged
    assert tok.decode(enc.ids) == text
    assert tok.get_vocab_size() == 257 and tok.token_to_id(EOS_TOKEN) == 0
    assert byte_tokenizer().to_str() == byte_tokenizer().to_str()  # the same file every time


def test_bytes_kind_packs_the_corpus_byte_for_byte(clean_dir, tmp_path):
    stats = tokenize_corpus(small_params(tokenizer={"kind": "bytes"}), clean_dir, tmp_path / "b", progress=False)
    index = read_index(tmp_path / "b")
    assert index["vocab_size"] == 257 and index["eos_token_id"] == 0 and index["dtype"] == "uint16"
    assert stats["tokens"]["train"] > 0
    # the split is the same documents as any other tokenizer's: same documents per split
    other = read_index(tokenize_corpus(small_params(), clean_dir, tmp_path / "t", progress=False) and tmp_path / "t")
    for split in ("train", "val", "test"):
        assert index["splits"][split]["documents"] == other["splits"][split]["documents"]


@pytest.mark.parametrize(
    ("keys", "fragment"),
    [({"vocab_size": 300}, "vocab_size = 300: only used with kind: train"), ({"path": "x"}, "only used with kind")],
)
def test_bytes_kind_takes_no_vocabulary_or_path(keys, fragment):
    with pytest.raises(ValueError, match=fragment):
        TokenizeParams.model_validate({"tokenizer": {"kind": "bytes", **keys}})
