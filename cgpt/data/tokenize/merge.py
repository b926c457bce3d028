"""Merge tokenize shard runs into one tokens folder: the same bytes as one unsharded run.

A shard run (``tokenize.shard: {index: i, count: n}``, see :func:`cgpt.data.tokenize.pack.tokenize_corpus`)
encodes the clean parts ``k % n == i`` and records in its index.json, per split, the tokens and
documents each part contributed (``shard.parts``). One unsharded run writes, per split, the
documents of every part in part order. So the merge walks the parts of each split in order, copies
each part's token range out of the shard that holds it, and re-cuts the stream into
``{split}-{k:05d}.bin`` files of at most ``shard_tokens`` tokens with the writer one run uses.
Reading goes through memmaps in slices of ``_CHUNK_TOKENS``: memory stays bounded whatever the
corpus size. The merged ``tokenizer.json``, token files and ``index.json`` equal one run's bytes
(the shard-only ``shard`` block is dropped); only the returned timing stats differ.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from cgpt.core.errors import DataError
from cgpt.core.fsutil import atomic_dir, read_json, write_json_atomic
from cgpt.data.tokenize.pack import check_split_sizes
from cgpt.data.tokens import SPLITS, SubsetRuns, TokenFileWriter, TokenStream, token_index, write_subsets

log = logging.getLogger(__name__)
_CHUNK_TOKENS = 1 << 22  # 4 M tokens (32 MB as int64) per read


def _read_shard_index(d: Path) -> dict[str, Any]:
    path = d / "index.json"
    index = read_json(
        path,
        missing="tokenize shard output not found; run tokenize for that shard first",
        invalid="rerun that tokenize shard",
    )
    if not isinstance(index, dict) or not isinstance(index.get("shard"), dict):
        raise DataError(f"{path}: not a tokenize shard output (no 'shard' block); run tokenize with shard.count > 1")
    return index


def _same(indexes: list[dict[str, Any]], dirs: list[Path], get, what: str, fix: str) -> None:
    values = [json.dumps(get(i), sort_keys=True) for i in indexes]
    if len(set(values)) != 1:
        odd = next(d for d, v in zip(dirs, values) if v != values[0])
        raise DataError(f"merge_token_shards: {odd} has a different {what} than {dirs[0]}; {fix}")


def merge_token_shards(shard_dirs: list[Path], out_dir: Path, *, progress: bool = False) -> dict[str, Any]:
    """Merge tokenize shards ``0..n-1`` (any order) into ``out_dir`` (atomically); return stats
    shaped like :func:`cgpt.data.tokenize.pack.tokenize_corpus`'s, plus ``shards``. The shard dirs are left
    untouched. Every check failure is a one-line :class:`DataError`."""
    t0 = time.perf_counter()
    dirs = [Path(d) for d in shard_dirs]
    if not dirs:
        raise DataError("merge_token_shards: no shard folders given")
    indexes = [_read_shard_index(d) for d in dirs]
    counts = {i["shard"]["count"] for i in indexes}
    got = sorted(i["shard"]["index"] for i in indexes)
    if len(counts) != 1 or got != list(range(next(iter(counts)))):
        raise DataError(
            f"merge_token_shards: got shard indices {got} of counts {sorted(counts)}; pass every shard 0..n-1 exactly "
            "once"
        )
    order = sorted(range(len(dirs)), key=lambda j: indexes[j]["shard"]["index"])
    dirs, indexes = [dirs[j] for j in order], [indexes[j] for j in order]

    tok_bytes = []
    for d in dirs:
        p = d / "tokenizer.json"
        if not p.is_file():
            raise DataError(f"{p}: missing; rerun that tokenize shard")
        tok_bytes.append(p.read_bytes())
    shas = [i["tokenizer_sha256"] for i in indexes]
    file_shas = [hashlib.sha256(b).hexdigest() for b in tok_bytes]
    if len(set(shas)) != 1 or len(set(file_shas)) != 1:
        odd = next(d for d, a, b in zip(dirs, shas, file_shas) if a != shas[0] or b != file_shas[0])
        raise DataError(
            f"merge_token_shards: {odd} was tokenized with a different tokenizer than {dirs[0]} "
            f"(sha256 {shas[0][:12]}... vs another); rerun every shard with the same shared tokenizer"
        )
    rerun = "rerun every shard with the same tokenize params and clean data"
    _same(indexes, dirs, lambda i: i["shard"]["params"], "tokenize params", rerun)
    _same(indexes, dirs, lambda i: i["shard"]["clean_manifest_sha256"], "clean data (clean manifest)", rerun)
    _same(
        indexes,
        dirs,
        lambda i: [i["vocab_size"], i["eos_token_id"], i["dtype"], i["split_params"]],
        "vocab/eos/dtype/split",
        rerun,
    )

    first = indexes[0]
    dtype = np.dtype(first["dtype"])
    shard_tokens = int(first["shard"]["shard_tokens"])
    parts_total = int(first["shard"]["parts_total"])

    # per split: [(part, shard position, offset in that shard's split stream, tokens)] in part order
    plan: dict[str, list[tuple[int, int, int, int]]] = {}
    documents = dict.fromkeys(SPLITS, 0)
    for s in SPLITS:
        rows = []
        for j, idx in enumerate(indexes):
            off, docs, n = 0, 0, idx["shard"]["count"]
            for k, tokens, ndocs in idx["shard"]["parts"][s]:
                if k % n != idx["shard"]["index"] or not 0 <= k < parts_total:
                    raise DataError(
                        f"merge_token_shards: {dirs[j]} holds part {k}, which is not its part; rerun that shard"
                    )
                rows.append((k, j, off, tokens))
                off += tokens
                docs += ndocs
            if off != idx["splits"][s]["tokens"] or docs != idx["splits"][s]["documents"]:
                raise DataError(
                    f"merge_token_shards: {dirs[j]}/index.json: {s} part counts disagree with the split totals; rerun "
                    "that shard"
                )
            documents[s] += docs
        rows.sort()
        plan[s] = rows

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            desc="merge tokens",
            unit="tok",
            unit_scale=True,
            dynamic_ncols=True,
            total=sum(i["splits"][s]["tokens"] for i in indexes for s in SPLITS),
        )
    with atomic_dir(Path(out_dir)) as tmp:
        writers = {}
        for s in SPLITS:
            w = writers[s] = TokenFileWriter(tmp, s, dtype, shard_tokens)
            streams: dict[int, TokenStream] = {}
            for _k, j, off, tokens in plan[s]:
                if j not in streams:
                    streams[j] = TokenStream(dirs[j], s, indexes[j])
                pos, end = off, off + tokens
                while pos < end:
                    n = min(_CHUNK_TOKENS, end - pos)
                    w.write(streams[j].read(pos, n))
                    pos += n
                    if bar is not None:
                        bar.update(n)
            w.documents = documents[s]
            w.close()
            del streams
        if bar is not None:
            bar.close()
        docs_in = sum(int(i["shard"]["documents_in"]) for i in indexes)
        check_split_sizes({s: w.tokens for s, w in writers.items()}, docs_in, "merge_token_shards")
        (tmp / "tokenizer.json").write_bytes(tok_bytes[0])
        subsets = {}
        for s in SPLITS:  # the parts' subset runs in part order: what one run records
            merged = SubsetRuns()
            for k, j, _off, _tokens in plan[s]:
                merged.extend(indexes[j]["shard"].get("part_subsets", {}).get(s, {}).get(str(k), []))
            subsets[s] = merged.runs
        write_subsets(tmp, subsets)
        index = token_index(
            first["vocab_size"],
            first["eos_token_id"],
            dtype,
            shas[0],
            first["split_params"],
            {s: w.split_entry() for s, w in writers.items()},
        )
        write_json_atomic(tmp / "index.json", index)

    secs = max(time.perf_counter() - t0, 1e-9)
    total = sum(w.tokens for w in writers.values())
    return {
        "vocab_size": first["vocab_size"],
        "tokens": {s: w.tokens for s, w in writers.items()},
        "documents": {s: w.documents for s, w in writers.items()},
        "documents_in": docs_in,
        "tokens_total": total,
        "shards": len(dirs),
        "timing": {"merge_seconds": round(secs, 3), "merge_tokens_per_s": round(total / secs, 1)},
    }


__all__ = ["merge_token_shards"]
