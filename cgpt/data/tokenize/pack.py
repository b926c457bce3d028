"""The tokenize stage's work: data/clean/ -> data/tokens/ (tokenizer.json, token shards, index.json).

* Tokenizer: trained on the train split of the cleaned corpus (``kind: train``), GPT-2's
  (``kind: gpt2``, the Cerebras-GPT tokenizer, :mod:`cgpt.data.tokenize.gpt2`) or loaded from a
  folder, file or URL (``kind: pretrained``).
* Split: :mod:`cgpt.data.tokenize.split` (a seeded hash of ~4 kB pieces; official splits kept);
  each run of consecutive pieces of one document in one split is one "document" of that split.
* Packing: every document is encoded and followed by ``<|endoftext|>`` (no BOS; a literal
  ``<|endoftext|>`` inside a document's text is encoded as text, as the recipe's plain BPE does), and the documents
  of a split are concatenated into shards ``{split}-{k:05d}.bin`` of at most ``shard_tokens``
  tokens (:mod:`cgpt.data.tokens` has the format). The recipe's 2049-token chunking happens at
  read time (:mod:`cgpt.train.sampler`, :mod:`cgpt.train.validation`).
* Sharding: ``shard: {index, count}`` encodes only the clean parts ``k % count == index`` with a
  tokenizer made once for all shards (:func:`train_shared_tokenizer`);
  :func:`cgpt.data.tokenize.merge.merge_token_shards` concatenates the shards per split in part order
  and re-cuts the files at ``shard_tokens``: the same bytes as one unsharded run.
* Speed: ``tokenizers.Tokenizer.encode_batch_fast`` encodes batches of ``batch_docs`` documents
  on its own Rust thread pool (all cores, or ``workers`` threads); a reader thread decompresses
  and parses the next batches meanwhile (the encoder releases the GIL).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cgpt.core.errors import DataError
from cgpt.core.fsutil import atomic_dir, write_json_atomic, write_text_atomic
from cgpt.data.clean.parts import clean_manifest_sha256, iter_clean_documents, read_clean_manifest
from cgpt.data.tokenize.gpt2 import load_gpt2_tokenizer
from cgpt.data.tokenize.params import SplitParams, TokenizeParams, TokenizerParams
from cgpt.data.tokenize.split import document_units
from cgpt.data.tokenize.tokenizer import (
    byte_tokenizer,
    eos_token_id,
    load_tokenizer,
    save_tokenizer,
    tokenizer_json,
    tokenizer_sha256,
    train_tokenizer,
)
from cgpt.data.tokens import SPLITS, SubsetRuns, TokenFileWriter, dtype_for_vocab, token_index, write_subsets
from cgpt.faults import fault_point

log = logging.getLogger(__name__)
_QUEUE_BATCHES = 4


def selected_parts(manifest: dict[str, Any], index: int = 0, count: int = 1) -> list[int]:
    """Indices of the clean parts shard ``index`` of ``count`` encodes: ``k % count == index``."""
    return [k for k in range(len(manifest["files"])) if k % count == index]


def _iter_units(
    clean_dir: Path, manifest: dict[str, Any], split: SplitParams, parts: list[int] | None = None
) -> Iterator[tuple[int, list[tuple[str, str]], int, str]]:
    """(1, units, part index, pile_set_name) per cleaned document, in corpus order (only ``parts`` when given)."""
    files = manifest["files"]
    for k in range(len(files)) if parts is None else parts:
        part = files[k]
        official = part.get("split")
        for doc in iter_clean_documents(clean_dir, part):
            subset = str((doc.get("meta") or {}).get("pile_set_name", "unknown"))
            yield 1, document_units(doc["text"], official, split), k, subset


# ----------------------------------------------------------------------------------------------
# the stage


def _background(it: Iterator, maxsize: int) -> Iterator:
    """Run ``it`` in a thread, ``maxsize`` items ahead; errors re-raise in the consumer."""
    q: queue.Queue = queue.Queue(maxsize=maxsize)
    done = object()
    stop = threading.Event()

    def run() -> None:
        try:
            for item in it:
                if stop.is_set():
                    return
                q.put(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(("__error__", exc))
            return
        q.put(done)

    t = threading.Thread(target=run, daemon=True, name="cgpt-tokenize-reader")
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, tuple) and len(item) == 2 and item[0] == "__error__":
                raise item[1]
            yield item
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.05)


def _batches(
    clean_dir: Path, manifest: dict[str, Any], split: SplitParams, batch_docs: int, parts: list[int] | None = None
) -> Iterator[tuple[int, list[tuple[str, str]], list[int], list[str]]]:
    """(documents, units, part index of each unit, subset of each unit) batches of about ``batch_docs`` units."""
    docs, units, unit_parts, unit_subsets = 0, [], [], []
    for n, u, k, subset in _iter_units(clean_dir, manifest, split, parts):
        docs += n
        units.extend(u)
        unit_parts.extend([k] * len(u))
        unit_subsets.extend([subset] * len(u))
        if len(units) >= batch_docs:
            yield docs, units, unit_parts, unit_subsets
            docs, units, unit_parts, unit_subsets = 0, [], [], []
    if units or docs:
        yield docs, units, unit_parts, unit_subsets


def _set_threads(workers: int) -> None:
    """Best effort: the tokenizers (Rayon) pool size is fixed the first time it is used in a process."""
    if workers > 0 and "RAYON_NUM_THREADS" not in os.environ:
        os.environ["RAYON_NUM_THREADS"] = str(workers)


def _train_on_corpus(params: TokenizeParams, clean_dir: Path, manifest: dict[str, Any]):
    """Train on the train split of the *whole* corpus (every part, whatever ``params.shard``)."""
    tp = params.tokenizer

    def train_texts() -> Iterator[str]:
        for _, units, _k, _subset in _iter_units(clean_dir, manifest, params.split):
            for s, text in units:
                if s == "train":
                    yield text

    return train_tokenizer(train_texts(), tp.vocab_size, tp.min_frequency)


def load_configured_tokenizer(tp: TokenizerParams, clean_dir: Path):
    """The tokenizer of ``kind: gpt2``, ``kind: bytes`` or ``kind: pretrained``. GPT-2's files are looked for (and
    fetched into) the project's download cache beside ``clean_dir`` (``data/.download-cache``) among
    the folders :func:`cgpt.data.tokenize.gpt2.cache_dirs` names."""
    if tp.kind == "gpt2":
        return load_gpt2_tokenizer(Path(clean_dir).parent / ".download-cache")
    if tp.kind == "bytes":
        return byte_tokenizer()
    return load_tokenizer(tp.path)


def _get_tokenizer(
    params: TokenizeParams, clean_dir: Path, manifest: dict[str, Any], tokenizer_file: Path | None = None
):
    tp = params.tokenizer
    if tokenizer_file is not None:
        return load_tokenizer(tokenizer_file)
    if tp.kind != "train":
        return load_configured_tokenizer(tp, clean_dir)
    if params.shard.count > 1:
        raise DataError(
            f"tokenize shard {params.shard.index} of {params.shard.count}: tokenizer.kind=train needs the shared "
            "tokenizer "
            "trained once on the whole corpus; run cgpt.data.tokenize.pack.train_shared_tokenizer(params, clean_dir, "
            "path) first "
            "and pass tokenizer_file=path (flows/data_shards.py --stage tokenize does both)"
        )
    return _train_on_corpus(params, clean_dir, manifest)


def train_shared_tokenizer(params: TokenizeParams, clean_dir: Path, path: Path) -> dict[str, Any]:
    """Make the one tokenizer every tokenize shard loads, once, before the fan-out: ``kind: train``
    trains on the train split of the whole corpus (exactly what an unsharded run trains),
    ``kind: gpt2`` / ``kind: pretrained`` loads GPT-2's files / ``tokenizer.path``. Writes ``path``
    (a tokenizer.json, atomically) and returns ``{"path", "tokenizer_sha256", "seconds"}``."""
    clean_dir, path = Path(clean_dir), Path(path)
    manifest = read_clean_manifest(clean_dir)
    _set_threads(params.workers)
    t0 = time.perf_counter()
    tp = params.tokenizer
    trained = tp.kind == "train"
    tok = _train_on_corpus(params, clean_dir, manifest) if trained else load_configured_tokenizer(tp, clean_dir)
    write_text_atomic(path, tokenizer_json(tok))
    return {"path": str(path), "tokenizer_sha256": tokenizer_sha256(tok), "seconds": round(time.perf_counter() - t0, 3)}


def shard_fingerprint(params: TokenizeParams) -> dict[str, Any]:
    """The params that change the bytes of a shard run, the same for all its shards (not workers,
    batch_docs or the shard index)."""
    return params.model_dump(mode="json", exclude={"workers", "batch_docs", "shard"})


def check_split_sizes(tokens: dict[str, int], docs_in: int, where: str) -> None:
    """An empty train split is an error; an empty val or test split only a warning."""
    if tokens["train"] == 0:
        raise DataError(
            f"{where}: the train split is empty after tokenizing {docs_in} documents; "
            "lower tokenize.split.val/test or add training data"
        )
    for s in ("val", "test"):
        if tokens[s] == 0:
            log.warning("tokenize: the %s split is empty; raise tokenize.split.%s or lower split.chunk_chars", s, s)


def tokenize_corpus(
    params: TokenizeParams, clean_dir: Path, out_dir: Path, *, progress: bool = True, tokenizer_file: Path | None = None
) -> dict[str, Any]:
    """Tokenize and pack ``clean_dir`` into ``out_dir``; return stats (tokens/documents per split, rates).

    ``tokenizer_file``: load this tokenizer.json instead of training/loading per ``params.tokenizer``
    (the shared tokenizer of a sharded run). With ``params.shard.count > 1`` only the clean parts
    ``k % count == index`` are encoded and index.json gets a ``shard`` block (parts, token counts)
    that :func:`cgpt.data.tokenize.merge.merge_token_shards` needs; such a run needs ``tokenizer_file``
    when ``tokenizer.kind`` is ``train``, and an empty train split is left to the merge to judge.
    """
    clean_dir, out_dir = Path(clean_dir), Path(out_dir)
    manifest = read_clean_manifest(clean_dir)
    sh = params.shard
    sharded = sh.count > 1
    parts = selected_parts(manifest, sh.index, sh.count) if sharded else None
    _set_threads(params.workers)
    t0 = time.perf_counter()
    tok = _get_tokenizer(params, clean_dir, manifest, tokenizer_file)
    t_tok = time.perf_counter() - t0
    eos = eos_token_id(tok)
    vocab_size = tok.get_vocab_size()
    dtype = dtype_for_vocab(vocab_size)
    # A literal "<|endoftext|>" inside a document is ordinary text, as the recipe's plain GPT-2 BPE
    # encodes it; only the separator appended after each document is the EOS id. (A runtime flag of
    # the tokenizer: tokenizer.json and its sha256 do not change.)
    tok.encode_special_tokens = True

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            desc="tokenize" if not sharded else f"tokenize {sh.index}/{sh.count}", unit="doc", dynamic_ncols=True
        )
    t1 = time.perf_counter()
    docs_in = 0
    # per split: part index -> [tokens, documents] (parts arrive in increasing order), shard runs only
    part_counts: dict[str, dict[int, list[int]]] = {s: {} for s in SPLITS}
    # per split: which subset (meta.pile_set_name) each token belongs to, as runs [name, tokens]
    runs: dict[str, SubsetRuns] = {s: SubsetRuns() for s in SPLITS}
    part_runs: dict[str, dict[int, SubsetRuns]] = {s: {} for s in SPLITS}  # the same per clean part (shards)
    with atomic_dir(out_dir) as tmp:
        writers = {s: TokenFileWriter(tmp, s, dtype, params.shard_tokens) for s in SPLITS}
        batches = _batches(clean_dir, manifest, params.split, params.batch_docs, parts)
        for n_docs, units, unit_parts, unit_subsets in _background(batches, _QUEUE_BATCHES):
            encs = tok.encode_batch_fast([t for _, t in units], add_special_tokens=False)
            by_split: dict[str, list[int]] = {}
            for (s, _), enc, k, subset in zip(units, encs, unit_parts, unit_subsets):
                buf = by_split.setdefault(s, [])
                buf.extend(enc.ids)
                buf.append(eos)
                writers[s].documents += 1
                runs[s].add(subset, len(enc.ids) + 1)
                if sharded:
                    c = part_counts[s].setdefault(k, [0, 0])
                    c[0] += len(enc.ids) + 1
                    c[1] += 1
                    part_runs[s].setdefault(k, SubsetRuns()).add(subset, len(enc.ids) + 1)
            for s in SPLITS:  # fixed order: the bytes do not depend on dict order
                if s in by_split:
                    writers[s].write(np.asarray(by_split[s], dtype=np.int64))
            docs_in += n_docs
            fault_point("tokenize.batch")
            if bar is not None:
                bar.update(n_docs)
        for w in writers.values():
            w.close()
        if bar is not None:
            bar.close()
        if not sharded:
            check_split_sizes({s: w.tokens for s, w in writers.items()}, docs_in, str(clean_dir))
        save_tokenizer(tok, tmp)
        write_subsets(tmp, {s: r.runs for s, r in runs.items()})
        index = token_index(
            vocab_size,
            eos,
            dtype,
            tokenizer_sha256(tok),
            params.split.model_dump(mode="json"),
            {s: w.split_entry() for s, w in writers.items()},
        )
        if sharded:
            index["shard"] = {
                "index": sh.index,
                "count": sh.count,
                "shard_tokens": params.shard_tokens,
                "params": shard_fingerprint(params),
                "clean_manifest_sha256": clean_manifest_sha256(clean_dir),
                "parts_total": len(manifest["files"]),
                "parts": {s: [[k, c[0], c[1]] for k, c in part_counts[s].items()] for s in SPLITS},
                "part_subsets": {s: {str(k): r.runs for k, r in part_runs[s].items()} for s in SPLITS},
                "documents_in": docs_in,
            }
        write_json_atomic(tmp / "index.json", index)

    t_enc = max(time.perf_counter() - t1, 1e-9)
    total = sum(w.tokens for w in writers.values())
    return {
        "vocab_size": vocab_size,
        "tokens": {s: w.tokens for s, w in writers.items()},
        "documents": {s: w.documents for s, w in writers.items()},
        "documents_in": docs_in,
        "tokens_total": total,
        "timing": {
            "tokenizer_seconds": round(t_tok, 3),
            "seconds": round(t_enc, 3),
            "tokens_per_s": round(total / t_enc, 1),
            "docs_per_s": round(docs_in / t_enc, 1),
        },
    }
