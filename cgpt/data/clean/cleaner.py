"""The clean stage's work: data/raw/ -> data/clean/ (ftfy NFC per document, filters, optional dedup).

Each part holds the surviving documents of one *block*: ``part_docs`` consecutive records of one
raw file (empty blocks write no part). Parts keep the raw file's official split tag, so the Pile's
val/test files stay val/test. Everything in the output is a pure function of the raw data and the
params: the worker count changes only the speed (order preserved), and ``shard: {index, count}``
runs merged by :func:`cgpt.data.clean.merge.merge_clean_shards` give the same bytes as one run.
The format is described in :mod:`cgpt.data.clean.parts`.

Parallelism: a pool of ``workers`` processes cleans chunks of documents (<= 256 docs or ~4 MB);
at most ``2 * workers`` chunks are in flight and results are consumed in order, so memory stays
bounded by a few chunks plus the current block's output buffer, whatever the corpus size.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from cgpt.core.errors import DataError
from cgpt.core.fsutil import atomic_dir, write_json_atomic
from cgpt.core.runtime import resolve_workers
from cgpt.data.clean.dedup import Deduper, DocSignature, doc_signature
from cgpt.data.clean.fix_text import clean_text
from cgpt.data.clean.params import CleanParams, ShardParams
from cgpt.data.clean.parts import MANIFEST, MANIFEST_VERSION, PartWriter, params_fingerprint
from cgpt.data.clean.stats import SourceStats, nonzero_drops, stats_json
from cgpt.data.download.raw import RawFileEntry, corrupt_file_remedy, raw_manifest_sha256, read_raw_manifest
from cgpt.data.formats import LONG_UNBROKEN_CHARS, CorruptFile, iter_records

CHUNK_DOCS = 256
CHUNK_CHARS = 4_000_000


class DocResult(NamedTuple):
    """One cleaned document as the main process sees it."""

    line: str | None  # the output JSON line; None when dropped
    source: str  # pile_set_name
    drop_reason: str | None
    changed: bool  # ftfy changed the text
    chars_in: int
    chars_out: int
    bytes_in: int
    signature: DocSignature | None  # for dedup (None when dedup is off)


# ----------------------------------------------------------------------------------------------
# per-document work (runs in the worker processes)

_WORKER_PARAMS: CleanParams | None = None


def rate(value: float, decimals: int) -> float:
    """``value`` rounded to ``decimals``, but a positive rate never shown as 0.0: a small input on a
    slow or loaded machine (a few hundred bytes in half a second) keeps 3 significant digits instead."""
    rounded = round(value, decimals)
    return rounded if rounded or value <= 0 else float(f"{value:.3g}")


def _init_worker(params_json: str) -> None:
    global _WORKER_PARAMS
    _WORKER_PARAMS = CleanParams.model_validate_json(params_json)


def _filter_reason(text: str, params: CleanParams) -> str | None:
    if not text.strip():
        return "empty"
    if len(text) < params.min_chars:
        return "too_short"
    if params.max_chars is not None and len(text) > params.max_chars:
        return "too_long"
    return None


def clean_chunk(docs: list[tuple[str, dict]], params: CleanParams | None = None) -> list[DocResult]:
    """Clean, filter and sign a chunk of (text, meta) documents (in a worker: the pool's params)."""
    params = params or _WORKER_PARAMS
    assert params is not None
    out: list[DocResult] = []
    for text, meta in docs:
        cleaned = clean_text(text, params)
        reason = _filter_reason(cleaned, params)
        src = str(meta.get("pile_set_name", "unknown"))
        bytes_in = len(text.encode("utf-8", "replace"))
        if reason is not None:
            out.append(DocResult(None, src, reason, cleaned != text, len(text), 0, bytes_in, None))
            continue
        line = json.dumps({"text": cleaned, "meta": meta}, ensure_ascii=False)
        sig = doc_signature(cleaned, params.dedup)
        out.append(DocResult(line, src, None, cleaned != text, len(text), len(cleaned), bytes_in, sig))
    return out


# ----------------------------------------------------------------------------------------------
# reading the raw data in blocks


def _chunks(
    files: list[RawFileEntry], raw_dir: Path, params: CleanParams, file_counters: list[dict[str, int]]
) -> Iterator[tuple[tuple[int, int], list[tuple[str, dict]]]]:
    """Yield ((file_index, block), docs) for this shard's blocks, chunks of a block consecutive.

    After each file, a warning line for what its reader counted (:func:`warn_about_file`); a corrupt
    file stops the stage with the remedy its origin calls for (:func:`corrupt_file_remedy`)."""
    shard = params.shard
    for fi, entry in enumerate(files):
        if shard.by == "file" and fi % shard.count != shard.index:
            continue
        default_meta = {"pile_set_name": entry.get("pile_set_name") or entry.get("source") or "unknown"}
        counters = file_counters[fi]
        records = iter_records(
            raw_dir / entry["path"],
            entry.get("format"),
            on_bad_line=params.on_bad_line,
            default_meta=default_meta,
            counters=counters,
        )
        try:
            yield from _file_chunks(fi, records, params, default_meta)
        except CorruptFile as exc:
            raise exc.with_remedy(corrupt_file_remedy(raw_dir, entry)) from None
        warn_about_file(raw_dir / entry["path"], counters)


def _file_chunks(
    fi: int, records: Iterable[dict[str, Any]], params: CleanParams, default_meta: dict[str, Any]
) -> Iterator[tuple[tuple[int, int], list[tuple[str, dict]]]]:
    """The chunks of this shard's blocks of one file (index ``fi``)."""
    shard = params.shard
    buf: list[tuple[str, dict]] = []
    chars = 0
    key = None
    for ri, rec in enumerate(records):
        block = ri // params.part_docs
        if shard.by == "block" and (fi + block) % shard.count != shard.index:
            continue
        if key is not None and (fi, block) != key and buf:
            yield key, buf
            buf, chars = [], 0
        key = (fi, block)
        text = rec.get("text", "")
        meta = dict(rec.get("meta") or {})
        meta.setdefault("pile_set_name", default_meta["pile_set_name"])
        buf.append((text, meta))
        chars += len(text)
        if len(buf) >= CHUNK_DOCS or chars >= CHUNK_CHARS:
            yield key, buf
            buf, chars = [], 0
    if buf and key is not None:
        yield key, buf


def warn_about_file(path: Path, counters: dict[str, int]) -> None:
    """One warning line per kind of damage the reader repaired or accepted in ``path`` (the invalid
    UTF-8 count also goes to the stage's statistics): invalid UTF-8 replaced by U+FFFD, and very long documents
    without a line break (several documents run together, or a file that lost its line ends)."""
    invalid = counters.get("invalid_utf8_records", 0)
    if invalid:
        _warn(
            f"warning: {path}: {invalid} record(s) held bytes that are not UTF-8; each was replaced by U+FFFD "
            "(re-encode the file as UTF-8 to keep those characters)"
        )
    long_docs = counters.get("long_unbroken_records", 0)
    if long_docs:
        size = counters.get("long_unbroken_max_bytes", 0) / 1e6
        _warn(
            f"warning: {path}: {long_docs} document(s) of {LONG_UNBROKEN_CHARS:,}+ characters without a line break "
            f"(the largest {size:.1f} MB), each kept as one document; if that is several documents run together, "
            "give them line ends (a .txt file is one document; .jsonl holds one JSON record per line)"
        )


def _warn(line: str) -> None:
    """A warning on its own line, also while a progress bar is drawn (tqdm.write)."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def _ordered_results(params: CleanParams, workers: int, chunks: Iterable) -> Iterator[tuple[Any, list[DocResult]]]:
    """Clean chunks in a process pool with bounded in-flight work, yielding results in input order."""
    if workers <= 1:
        for key, docs in chunks:
            yield key, clean_chunk(docs, params)
        return
    with ProcessPoolExecutor(
        workers, mp_context=_mp_context(), initializer=_init_worker, initargs=(params.model_dump_json(),)
    ) as pool:
        pending: deque = deque()
        for key, docs in chunks:
            pending.append((key, pool.submit(clean_chunk, docs)))
            if len(pending) >= 2 * workers:
                k, fut = pending.popleft()
                yield k, fut.result()
        while pending:
            k, fut = pending.popleft()
            yield k, fut.result()


def _mp_context():
    """fork when this process has one thread (fast, no re-import); forkserver otherwise (fork in a
    threaded process, e.g. under Prefect or Dask, can deadlock)."""
    if threading.active_count() == 1 and "fork" in mp.get_all_start_methods():
        return mp.get_context("fork")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["cgpt.data.clean.cleaner", "ftfy"])
    return ctx


def _add_file_counters(
    files: list[RawFileEntry],
    file_counters: list[dict[str, int]],
    per_source: dict[str, SourceStats],
    shard: ShardParams,
) -> None:
    """Fold the readers' per-file counters (skipped bad lines, invalid UTF-8) into the source stats.

    A file's counters belong to shard ``file_index % count`` only (with ``by: block`` every shard
    reads every file), so merged shard stats equal one run's."""
    for fi, (entry, counters) in enumerate(zip(files, file_counters)):
        if not counters or fi % shard.count != shard.index:
            continue
        bad = sum(counters.get(k, 0) for k in ("malformed_json_skipped", "missing_text_skipped", "bad_meta_skipped"))
        invalid = counters.get("invalid_utf8_records", 0)
        if not (bad or invalid):
            continue
        src = entry.get("pile_set_name") or entry.get("source") or "unknown"
        s = per_source.setdefault(src, SourceStats())
        s.dropped["bad_line"] += bad
        s.invalid_utf8 += invalid


# ----------------------------------------------------------------------------------------------
# the stage


def clean(params: CleanParams, raw_dir: Path, out_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    """Clean ``raw_dir`` (files of its manifest.json) into ``out_dir``; return json-serializable stats.

    With ``params.shard.count > 1`` only this shard's blocks are cleaned; a shard may be empty, and
    dedup decisions are left to the merge (the shard keeps every filter-passing document and saves
    its signatures beside the part).
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    files = read_raw_manifest(raw_dir)
    sharded = params.shard.count > 1
    dedup_on = params.dedup.exact or params.dedup.near
    deduper = Deduper(params.dedup) if (dedup_on and not sharded) else None
    workers = resolve_workers(params.workers)
    per_source: dict[str, SourceStats] = {}
    file_counters: list[dict[str, int]] = [{} for _ in files]
    bytes_in = 0
    t0 = time.perf_counter()

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc="clean", unit="doc", dynamic_ncols=True)

    with atomic_dir(out_dir) as tmp:
        writer = PartWriter(tmp)
        current = None
        for key, results in _ordered_results(params, workers, _chunks(files, raw_dir, params, file_counters)):
            if key != current:
                entry = files[key[0]]
                writer.start(key, {"raw_path": entry["path"], "split": entry.get("split")})
                current = key
            for doc in results:
                s = per_source.setdefault(doc.source, SourceStats())
                s.documents_in += 1
                s.characters_in += doc.chars_in
                s.changed_by_ftfy += int(doc.changed)
                bytes_in += doc.bytes_in
                reason = doc.drop_reason
                if reason is None and deduper is not None:
                    reason = deduper.check(doc.signature)
                if reason is not None:
                    s.dropped[reason] += 1
                    continue
                s.documents_out += 1
                s.characters_out += doc.chars_out
                assert doc.line is not None
                writer.write(doc.line, doc.signature, keep_sig=sharded and dedup_on)
            if bar is not None:
                bar.update(len(results))
        writer.finish()
        if bar is not None:
            bar.close()
        _add_file_counters(files, file_counters, per_source, params.shard)
        stats = stats_json(per_source)
        if stats["total"]["documents_out"] == 0 and not sharded:
            raise DataError(
                f"{raw_dir}: clean kept 0 of {stats['total']['documents_in']} documents "
                f"(dropped: {nonzero_drops(stats['total']['dropped'])}); check the raw data and "
                "clean.min_chars/max_chars"
            )
        manifest = {
            "version": MANIFEST_VERSION,
            "raw_manifest_sha256": raw_manifest_sha256(raw_dir),
            "params": params_fingerprint(params),
            "files": writer.entries,
            "stats": stats,
        }
        if sharded:
            manifest["shard"] = params.shard.model_dump(mode="json")
            manifest["dedup_pending"] = dedup_on
            manifest["raw_files"] = len(files)
        write_json_atomic(tmp / MANIFEST, manifest)

    elapsed = max(time.perf_counter() - t0, 1e-9)
    tot = stats["total"]
    return {
        **stats,
        "parts": len(writer.entries),
        "timing": {
            "workers": workers,
            "seconds": round(elapsed, 3),
            "docs_per_s": rate(tot["documents_in"] / elapsed, 1),
            "mb_per_s": rate(bytes_in / 1e6 / elapsed, 3),
        },
    }
