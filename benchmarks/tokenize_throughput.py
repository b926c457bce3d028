"""Tokenize throughput: cgpt's tokenize stage vs raw ``tokenizers`` ``encode_batch`` (baseline).

Both encode the same documents with the same tokenizer on the same cores (tokenizers' Rust thread
pool). The baseline is only ``Tokenizer.encode_batch`` over in-memory texts in batches; cgpt's path
adds reading the clean parts (zstd + JSON), the split hash, EOS, and writing the token shards.
Prints ``ratio = ours / baseline`` (target >= 0.8).

    python benchmarks/tokenize_throughput.py --mb 20 [--tokenizer ../shared/gpt2-tokenizer]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import zstandard

from cgpt.data.clean.parts import iter_clean_documents, read_clean_manifest
from cgpt.data.tokenize.pack import tokenize_corpus
from cgpt.data.tokenize.params import TokenizeParams
from cgpt.data.tokenize.tokenizer import load_tokenizer, train_tokenizer

REPO = Path(__file__).resolve().parents[1]


def make_clean_dir(d: Path, mb: float, seed: int = 0) -> int:
    """A clean-stage output of ~``mb`` MB of varied English-like text (one part per 2000 docs)."""
    rng = random.Random(seed)
    vocab = [
        ("".join(rng.choice("etaoinshrdlucmfwypvbgkqjxz") for _ in range(rng.randint(1, 10)))) for _ in range(20000)
    ]
    d.mkdir(parents=True)
    files, size, k, docs = [], 0, 0, 0
    while size < mb * 1e6:
        lines = []
        for _ in range(2000):
            paras = [
                "".join(" " + rng.choice(vocab) for _ in range(rng.randint(20, 200))).strip().capitalize() + "."
                for _ in range(rng.randint(1, 8))
            ]
            text = "\n\n".join(paras)
            size += len(text)
            lines.append(json.dumps({"text": text, "meta": {"pile_set_name": "Bench"}}))
        name = f"part-{k:05d}.jsonl.zst"
        (d / name).write_bytes(zstandard.ZstdCompressor(level=3).compress(("\n".join(lines) + "\n").encode()))
        files.append({"path": name, "split": None, "documents": len(lines)})
        docs += len(lines)
        k += 1
    (d / "manifest.json").write_text(json.dumps({"version": 1, "files": files, "params": {}, "stats": {}}))
    return size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=20.0, help="corpus size in MB of text")
    ap.add_argument(
        "--tokenizer",
        default=str(REPO.parent / "shared" / "gpt2-tokenizer"),
        help="pretrained tokenizer (default: ../shared GPT-2; trained 8k BPE if absent)",
    )
    ap.add_argument("--batch-docs", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        size = make_clean_dir(td / "clean", a.mb)
        manifest = read_clean_manifest(td / "clean")
        texts = [doc["text"] for part in manifest["files"] for doc in iter_clean_documents(td / "clean", part)]
        if Path(a.tokenizer).exists():
            tok_path, tok = a.tokenizer, load_tokenizer(a.tokenizer)
        else:
            tok = train_tokenizer(iter(texts[:2000]), 8192, 2)
            tok_path = str(td / "tok.json")
            Path(tok_path).write_text(tok.to_str())
        params = TokenizeParams.model_validate(
            {"tokenizer": {"kind": "pretrained", "path": tok_path}, "batch_docs": a.batch_docs}
        )
        tok.encode_batch(texts[:100])  # warm the thread pool
        base_best = ours_best = float("inf")
        for r in range(a.repeats):
            t = time.perf_counter()
            n_tok = 0
            for i in range(0, len(texts), a.batch_docs):
                n_tok += sum(len(e.ids) for e in tok.encode_batch(texts[i : i + a.batch_docs]))
            base_best = min(base_best, time.perf_counter() - t)
            t = time.perf_counter()
            stats = tokenize_corpus(params, td / "clean", td / f"tokens{r}", progress=False)
            ours_best = min(ours_best, time.perf_counter() - t)
        print(f"corpus: {size / 1e6:.1f} MB, {len(texts)} docs, {n_tok} tokens; tokenizer {tok_path}")
        print(f"baseline tokenizers.encode_batch : {n_tok / base_best / 1e6:.3f} M tokens/s ({base_best:.2f} s)")
        print(
            f"cgpt tokenize_corpus (end to end): {stats['tokens_total'] / ours_best / 1e6:.3f} M tokens/s "
            f"({ours_best:.2f} s)"
        )
        ratio = (stats["tokens_total"] / ours_best) / (n_tok / base_best)
        print(f"ratio ours/baseline = {ratio:.2f} (target >= 0.80)")
        sys.exit(0)


if __name__ == "__main__":
    main()
