"""Tokenizer files of an export, derived from a ``tokenizers`` ByteLevel-BPE ``tokenizer.json``.

Writes what ``AutoTokenizer.from_pretrained`` needs offline, for both the fast and the slow
GPT-2 tokenizer and for transformers 4.x and 5.x: ``tokenizer.json`` (as given), ``vocab.json``
and ``merges.txt`` (GPT-2's format, ``#version: 0.2`` header), ``tokenizer_config.json``
(``GPT2Tokenizer``, bos = eos = unk = the EOS token, no prefix space, ``model_max_length`` =
n_positions) and ``special_tokens_map.json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from cgpt.core.errors import CgptError
from cgpt.core.fsutil import read_json


def _load(tokenizer_json: Path) -> dict[str, Any]:
    obj = read_json(
        tokenizer_json,
        missing="tokenizer.json not found; run the tokenize stage or pass tokenizer_json=None",
        error=CgptError,
    )
    model = obj.get("model") if isinstance(obj, dict) else None
    if not isinstance(model, dict) or model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise CgptError(f"{tokenizer_json}: not a tokenizers BPE tokenizer.json (model.type must be 'BPE')")
    pre = json.dumps(obj.get("pre_tokenizer"))
    if "ByteLevel" not in pre:
        raise CgptError(f"{tokenizer_json}: pre_tokenizer is not ByteLevel; the GPT-2 export needs a byte-level BPE")
    return obj


def vocab_and_merges(obj: dict[str, Any]) -> tuple[dict[str, int], list[str]]:
    """Full vocab (BPE vocab + added tokens) and merges as GPT-2 ``"a b"`` lines."""
    vocab = dict(obj["model"]["vocab"])
    for t in obj.get("added_tokens") or []:
        vocab.setdefault(t["content"], int(t["id"]))
    merges = []
    for m in obj["model"].get("merges") or []:
        merges.append(" ".join(m) if isinstance(m, list) else str(m))  # tokenizers >= 0.20 writes pairs
    return dict(sorted(vocab.items(), key=lambda kv: kv[1])), merges


def write_tokenizer_files(tokenizer_json: Path, out_dir: Path, *, eos_token_id: int, model_max_length: int) -> None:
    obj = _load(tokenizer_json)
    vocab, merges = vocab_and_merges(obj)
    by_id = {i: t for t, i in vocab.items()}
    if eos_token_id not in by_id:
        raise CgptError(f"{tokenizer_json}: eos_token_id={eos_token_id} is not in the vocabulary ({len(vocab)} tokens)")
    eos = by_id[eos_token_id]
    if not any(t.get("content") == eos and t.get("special") for t in obj.get("added_tokens") or []):
        raise CgptError(f"{tokenizer_json}: EOS token {eos!r} is not registered as a special token")
    shutil.copyfile(tokenizer_json, out_dir / "tokenizer.json")  # byte for byte: the tokenizer the data used
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges), encoding="utf-8")
    special = {"bos_token": eos, "eos_token": eos, "unk_token": eos}
    added_decoder = {
        str(t["id"]): {
            k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special") if k in t
        }
        for t in obj.get("added_tokens") or []
    }
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        **special,
        "add_prefix_space": False,
        "add_bos_token": False,
        "errors": "replace",
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": added_decoder,
    }
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps(config, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    (out_dir / "special_tokens_map.json").write_text(
        json.dumps(special, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
