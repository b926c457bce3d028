"""Synthetic raw corpora for the data tests (clean, tokenize, the sharded flows): random words from a
fixed list, written as the download stage's output (files + manifest)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import zstandard

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "they",
    "you",
    "were",
    "her",
    "she",
    "there",
    "king",
    "lord",
    "love",
    "night",
    "sweet",
    "good",
    "death",
    "heaven",
    "crown",
    "sword",
    "blood",
    "speak",
    "hath",
    "thou",
    "thee",
]


def random_text(rng: random.Random, n_words: int, paragraphs: int = 1) -> str:
    paras = []
    for _ in range(paragraphs):
        paras.append(" ".join(rng.choice(WORDS) for _ in range(n_words)).capitalize() + ".")
    return "\n\n".join(paras)


def write_raw(raw: Path, files: list[tuple[str, str | None, str, list[dict | str]]]) -> Path:
    """files: (name, split, pile_set_name, records); records are dicts or raw lines; .zst compresses."""
    raw.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, split, psn, records in files:
        lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
        data = ("\n".join(lines) + "\n").encode("utf-8")
        if name.endswith(".zst"):
            data = zstandard.ZstdCompressor().compress(data)
        (raw / name).write_bytes(data)
        fmt = "jsonl.zst" if name.endswith(".zst") else "jsonl"
        entries.append(
            {
                "path": name,
                "source": psn,
                "pile_set_name": psn,
                "split": split,
                "format": fmt,
                "bytes": len(data),
                "sha256": "0" * 64,
            }
        )
    (raw / "manifest.json").write_text(json.dumps({"version": 1, "files": entries}), encoding="utf-8")
    return raw


def synthetic_raw(raw: Path, n_docs: int = 120, seed: int = 0) -> Path:
    rng = random.Random(seed)

    def docs(k: int) -> list[dict]:
        out = []
        for i in range(k):
            text = random_text(rng, rng.randint(5, 120), rng.randint(1, 3))
            if i % 9 == 0:
                text = "caf\u00c3\u00a9 " + text  # mojibake that ftfy fixes
            meta = {"pile_set_name": "Alpha" if i % 2 else "Beta"} if i % 3 else {}
            out.append({"text": text, "meta": meta})
        return out

    return write_raw(
        raw,
        [
            ("train0.jsonl.zst", None, "Gamma", docs(n_docs)),
            ("train1.jsonl", None, "Gamma", docs(n_docs // 2)),
            ("val.jsonl.zst", "val", "Gamma", docs(n_docs // 4)),
        ],
    )
