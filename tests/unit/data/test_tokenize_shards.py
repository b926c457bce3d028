"""Tokenize shard runs (``tokenize.shard: {index, count}``) merged by ``merge_token_shards`` give the
same bytes as one unsharded ``tokenize_corpus``; the shared-tokenizer rule; the Prefect flow."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml
from corpus_helpers import random_text, write_raw
from pydantic import ValidationError

from cgpt.core.errors import DataError
from cgpt.data.clean.cleaner import clean
from cgpt.data.clean.params import CleanParams
from cgpt.data.clean.parts import read_clean_manifest
from cgpt.data.shards import (
    merge_tokenize_shards,
    prepare_tokenize_shards,
    shard_dir,
    shards_root,
    shared_tokenizer_path,
    tokenize_shard,
    tokenize_shard_params,
)
from cgpt.data.tokenize.merge import merge_token_shards
from cgpt.data.tokenize.pack import selected_parts, tokenize_corpus, train_shared_tokenizer
from cgpt.data.tokenize.params import TokenizeParams
from cgpt.data.tokens import read_index
from flows.data_shards import sharded_tokenize_flow

# small shard_tokens: merged files cross shard-run boundaries; official val and test files
TOKENIZE = {
    "tokenizer": {"vocab_size": 400},
    "split": {"val": 0.1, "test": 0.1, "chunk_chars": 200},
    "shard_tokens": 997,
    "workers": 1,
}


def _docs(rng: random.Random, k: int) -> list[dict]:
    return [{"text": random_text(rng, rng.randint(5, 120), rng.randint(1, 3)), "meta": {}} for _ in range(k)]


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("tokshards")
    rng = random.Random(3)
    raw = write_raw(
        tmp / "raw",
        [
            ("train0.jsonl.zst", None, "Gamma", _docs(rng, 120)),
            ("val.jsonl.zst", "val", "Gamma", _docs(rng, 30)),
            ("train1.jsonl", None, "Delta", _docs(rng, 60)),
            ("test.jsonl", "test", "Delta", _docs(rng, 25)),
        ],
    )
    clean(CleanParams(workers=1, part_docs=16), raw, tmp / "clean", progress=False)
    return tmp / "clean"


def params(**kw) -> TokenizeParams:
    return TokenizeParams.model_validate({**TOKENIZE, **kw})


def files_bytes(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


@pytest.fixture(scope="module")
def single(clean_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "tokens"
    tokenize_corpus(params(), clean_dir, out, progress=False)
    return out


def test_shard_params_validate_and_select_parts_by_modulo(clean_dir):
    assert params().shard.count == 1
    with pytest.raises(ValidationError, match="shard.index=3 must be < shard.count=3"):
        params(shard={"index": 3, "count": 3})
    manifest = read_clean_manifest(clean_dir)
    n = len(manifest["files"])
    assert n >= 10 and {f["split"] for f in manifest["files"]} == {None, "val", "test"}
    got = [selected_parts(manifest, i, 3) for i in range(3)]
    assert sorted(k for g in got for k in g) == list(range(n))
    assert all(k % 3 == i for i, g in enumerate(got) for k in g)


def test_train_kind_shards_merge_byte_identical(clean_dir, single, tmp_path):
    tok_file = tmp_path / "shared" / "tokenizer.json"
    info = train_shared_tokenizer(params(), clean_dir, tok_file)
    assert info["tokenizer_sha256"] == read_index(single)["tokenizer_sha256"]
    dirs = []
    for i in range(3):  # batching and workers per shard do not change the bytes
        p = params(shard={"index": i, "count": 3}, batch_docs=5 + 7 * i)
        dirs.append(tmp_path / f"s{i}")
        tokenize_corpus(p, clean_dir, dirs[-1], progress=False, tokenizer_file=tok_file)
        assert read_index(dirs[-1])["shard"]["index"] == i
    stats = merge_token_shards([dirs[2], dirs[0], dirs[1]], tmp_path / "merged")  # any order
    assert files_bytes(tmp_path / "merged") == files_bytes(single)
    index = read_index(single)
    assert len(index["splits"]["train"]["shards"]) > 3 and len(index["splits"]["val"]["shards"]) > 1
    assert stats["tokens"] == {s: v["tokens"] for s, v in index["splits"].items()}
    assert stats["documents"] == {s: v["documents"] for s, v in index["splits"].items()}
    assert stats["shards"] == 3 and stats["documents_in"] == 235
    assert all(d.is_dir() for d in dirs)  # the merge leaves its inputs alone


def test_pretrained_shards_via_parallel_helpers(gpt2_tokenizer_dir, clean_dir, tmp_path):
    base = params(tokenizer={"kind": "pretrained", "path": str(gpt2_tokenizer_dir)}, shard_tokens=1500)
    tokenize_corpus(base, clean_dir, tmp_path / "single", progress=False)
    out = tmp_path / "tokens"
    assert not prepare_tokenize_shards(base, clean_dir, out)["skipped"]
    assert prepare_tokenize_shards(base, clean_dir, out)["skipped"]  # made once
    n = 4
    for i in reversed(range(n)):
        tokenize_shard(tokenize_shard_params(base, i, n), clean_dir, out)
    merge_tokenize_shards([shard_dir(out, i, n) for i in range(n)], out)
    assert files_bytes(out) == files_bytes(tmp_path / "single")
    assert read_index(out)["vocab_size"] == 50257 and not shards_root(out).exists()


def test_pretrained_shard_without_shared_file_loads_the_path(gpt2_tokenizer_dir, clean_dir, tmp_path):
    base = params(tokenizer={"kind": "pretrained", "path": str(gpt2_tokenizer_dir)})
    tokenize_corpus(base, clean_dir, tmp_path / "single", progress=False)
    for i in range(2):
        tokenize_shard(tokenize_shard_params(base, i, 2), clean_dir, tmp_path / "t")
    merge_tokenize_shards([shard_dir(tmp_path / "t", i, 2) for i in range(2)], tmp_path / "t")
    assert files_bytes(tmp_path / "t") == files_bytes(tmp_path / "single")


def test_more_shards_than_parts_and_relaunch_skips(clean_dir, single, tmp_path):
    n = len(read_clean_manifest(clean_dir)["files"]) + 2  # the last shards get no part at all
    out = tmp_path / "tokens"
    prepare_tokenize_shards(params(), clean_dir, out)
    first = tokenize_shard(tokenize_shard_params(params(), 1, n), clean_dir, out)
    again = tokenize_shard(tokenize_shard_params(params(), 1, n, workers=2), clean_dir, out)
    assert not first["skipped"] and again["skipped"] and again["tokens"] == first["tokens"]
    for i in range(n):
        tokenize_shard(tokenize_shard_params(params(), i, n), clean_dir, out)
    assert read_index(shard_dir(out, n - 1, n))["splits"]["train"]["tokens"] == 0
    merge_tokenize_shards([shard_dir(out, i, n) for i in range(n)], out)
    assert files_bytes(out) == files_bytes(single)


def test_train_shard_without_shared_tokenizer_is_one_line_error(clean_dir, tmp_path):
    p = params(shard={"index": 0, "count": 2})
    with pytest.raises(DataError, match="train_shared_tokenizer") as e1:
        tokenize_corpus(p, clean_dir, tmp_path / "s0", progress=False)
    with pytest.raises(DataError, match="shared tokenizer not found.*prepare_tokenize_shards") as e2:
        tokenize_shard(p, clean_dir, tmp_path / "tokens")
    assert str(shared_tokenizer_path(tmp_path / "tokens")) in str(e2.value)
    for e in (e1, e2):
        assert "\n" not in str(e.value)
    assert not (tmp_path / "s0").exists()


def test_tokenizer_mismatch_and_missing_shard_are_errors(clean_dir, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    train_shared_tokenizer(params(), clean_dir, a)
    train_shared_tokenizer(params(tokenizer={"vocab_size": 300}), clean_dir, b)  # another tokenizer
    tokenize_corpus(
        params(shard={"index": 0, "count": 2}), clean_dir, tmp_path / "s0", progress=False, tokenizer_file=a
    )
    tokenize_corpus(
        params(shard={"index": 1, "count": 2}), clean_dir, tmp_path / "s1", progress=False, tokenizer_file=b
    )
    with pytest.raises(DataError, match="different tokenizer") as exc:
        merge_token_shards([tmp_path / "s0", tmp_path / "s1"], tmp_path / "merged")
    assert "\n" not in str(exc.value) and not (tmp_path / "merged").exists()
    with pytest.raises(DataError, match="exactly once"):
        merge_token_shards([tmp_path / "s0"], tmp_path / "merged")
    tokenize_corpus(params(), clean_dir, tmp_path / "single", progress=False)
    with pytest.raises(DataError, match="not a tokenize shard output"):
        merge_token_shards([tmp_path / "single"], tmp_path / "merged")


# ---------------------------------------------------------------------------------------------- the Prefect flow


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["thread", "dask"])
def test_sharded_tokenize_flow_equals_single_run(harness, clean_dir, single, tmp_path, runner):
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump({"tokenize": TOKENIZE}), encoding="utf-8")
    out = tmp_path / "tokens"
    stats = sharded_tokenize_flow(
        params_path=str(params_path),
        n_shards=3,
        runner=runner,
        clean_dir=str(clean_dir),
        out_dir=str(out),
        workers_per_shard=1,
    )
    assert files_bytes(out) == files_bytes(single)
    assert (
        stats["shards"] == 3
        and stats["tokens_total"] == sum(stats["tokens"].values())
        and stats["timing"]["tokens_per_s"] > 0
    )
    assert not shards_root(out).exists()  # shard folders and the shared tokenizer removed after the merge
