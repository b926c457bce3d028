"""The clean stage: data/raw/ -> data/clean/ (ftfy NFC per document, filters, optional dedup).

Output layout (``out_dir``)::

    part-00000.jsonl.zst ...   {"text": ..., "meta": {"pile_set_name": ..., ...}} one per line
    manifest.json              {"version": 1, "params": ..., "files": [...], "stats": {...}}

Each part holds the surviving documents of one *block*: ``part_docs`` consecutive records of one
raw file (empty blocks write no part). Parts keep the raw file's official split tag, so the Pile's
val/test files stay val/test. Everything in the output is a pure function of the raw data and the
params: the worker count changes only the speed (order preserved), and ``shard: {index, count}``
runs merged by :func:`merge_clean_shards` give the same bytes as one run.

Parallelism: a pool of ``workers`` processes cleans chunks of documents (<= 256 docs or ~4 MB);
at most ``2 * workers`` chunks are in flight and results are consumed in order, so memory stays
bounded by a few chunks plus the current block's output buffer, whatever the corpus size.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import os
import shutil
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

from cgpt.data.dedup import Deduper, DocSignature, doc_signature
from cgpt.data.params_clean import CleanParams
from cgpt.errors import DataError
from cgpt.fsutil import atomic_dir, read_json, write_json_atomic

MANIFEST_VERSION = 1
ZSTD_LEVEL = 3
CHUNK_DOCS = 256
CHUNK_CHARS = 4_000_000
DROP_REASONS = ("empty", "too_short", "too_long", "exact_dup", "near_dup", "bad_line")


# ----------------------------------------------------------------------------------------------
# reading the raw manifest


def read_raw_manifest(raw_dir: Path) -> list[dict[str, Any]]:
    """The ``files`` of ``raw_dir/manifest.json`` (written by the download stage), validated."""
    path = Path(raw_dir) / "manifest.json"
    manifest = read_json(
        path, missing="raw manifest not found; run the download stage first (dvc repro download)", invalid="rerun the download stage"
    )
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, list):
        raise DataError(f"{path}: expected {{\"files\": [...]}}; rerun the download stage")
    for i, entry in enumerate(files):
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise DataError(f"{path}: files[{i}] has no 'path'; rerun the download stage")
        if entry.get("split") not in (None, "train", "val", "test"):
            raise DataError(f"{path}: files[{i}].split={entry.get('split')!r}; expected null, train, val or test")
        if not (Path(raw_dir) / entry["path"]).is_file():
            raise DataError(f"{Path(raw_dir) / entry['path']}: listed in {path} but missing; rerun the download stage")
    return files


def raw_manifest_sha256(raw_dir: Path) -> str:
    return hashlib.sha256((Path(raw_dir) / "manifest.json").read_bytes()).hexdigest()


def _iter_records(path: Path, fmt: str | None, on_bad_line: str, default_meta: dict, counters: dict) -> Iterator[dict]:
    from cgpt.data.formats import iter_records

    return iter_records(path, fmt, on_bad_line=on_bad_line, default_meta=default_meta, counters=counters)


# ----------------------------------------------------------------------------------------------
# per-document work (runs in the worker processes)

_WORKER_PARAMS: CleanParams | None = None


def _init_worker(params_json: str) -> None:
    global _WORKER_PARAMS
    _WORKER_PARAMS = CleanParams.model_validate_json(params_json)


def clean_text(text: str, params: CleanParams) -> str:
    """One document through the recipe: ``ftfy.fix_text(text, normalization=...)`` (or only the
    Unicode normalization when ``fix_text`` is off). Lone surrogates become U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if params.fix_text:
        import ftfy

        return ftfy.fix_text(text, normalization=params.normalization)
    if params.normalization:
        return unicodedata.normalize(params.normalization, text)
    return text


def _filter_reason(text: str, params: CleanParams) -> str | None:
    if not text.strip():
        return "empty"
    if len(text) < params.min_chars:
        return "too_short"
    if params.max_chars is not None and len(text) > params.max_chars:
        return "too_long"
    return None


# One cleaned document as the main process sees it:
# (json line or None, source, drop reason or None, changed, chars_in, chars_out, bytes_in, signature)
DocResult = tuple[str | None, str, str | None, bool, int, int, int, DocSignature | None]


def _clean_chunk(docs: list[tuple[str, dict]], params: CleanParams | None = None) -> list[DocResult]:
    params = params or _WORKER_PARAMS
    out: list[DocResult] = []
    for text, meta in docs:
        cleaned = clean_text(text, params)
        reason = _filter_reason(cleaned, params)
        src = str(meta.get("pile_set_name", "unknown"))
        if reason is not None:
            out.append((None, src, reason, cleaned != text, len(text), 0, len(text.encode("utf-8", "replace")), None))
            continue
        line = json.dumps({"text": cleaned, "meta": meta}, ensure_ascii=False)
        sig = doc_signature(cleaned, params.dedup)
        out.append((line, src, None, cleaned != text, len(text), len(cleaned), len(text.encode("utf-8", "replace")), sig))
    return out


# ----------------------------------------------------------------------------------------------
# statistics


def _new_counts() -> dict[str, Any]:
    return {
        "documents_in": 0,
        "documents_out": 0,
        "characters_in": 0,
        "characters_out": 0,
        "changed_by_ftfy": 0,
        "invalid_utf8": 0,
        "dropped": {r: 0 for r in DROP_REASONS},
    }


def _add_counts(into: dict[str, Any], other: dict[str, Any]) -> None:
    for k, v in other.items():
        if isinstance(v, dict):
            _add_counts(into.setdefault(k, {}), v)
        else:
            into[k] = into.get(k, 0) + v


def _totals(per_source: dict[str, dict[str, Any]]) -> dict[str, Any]:
    total = _new_counts()
    for name in sorted(per_source):
        _add_counts(total, per_source[name])
    return total


# ----------------------------------------------------------------------------------------------
# writing parts


class _PartWriter:
    """Streams the JSON lines of one block into ``part-XXXXX.jsonl.zst`` (only if it has lines)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.entries: list[dict[str, Any]] = []
        self._key: tuple[int, int] | None = None
        self._meta: dict[str, Any] = {}
        self._fh = None
        self._writer = None
        self._hasher = None
        self._docs = 0
        self._sigs: list[DocSignature] = []

    def start(self, key: tuple[int, int], meta: dict[str, Any]) -> None:
        self.finish()
        self._key, self._meta, self._docs, self._sigs = key, meta, 0, []

    def write(self, line: str, sig: DocSignature | None = None, keep_sig: bool = False) -> None:
        if self._writer is None:
            name = f"part-{len(self.entries):05d}.jsonl.zst"
            self._path = self.out_dir / name
            self._fh = open(self._path, "wb")
            self._hasher = _HashingFile(self._fh)
            self._writer = zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(self._hasher, closefd=False)
        self._writer.write(line.encode("utf-8"))
        self._writer.write(b"\n")
        self._docs += 1
        if keep_sig:
            self._sigs.append(sig)

    def finish(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._fh.close()
        entry = {
            "path": self._path.name,
            "file_index": self._key[0],
            "block": self._key[1],
            **self._meta,
            "documents": self._docs,
            "bytes": self._hasher.size,
            "sha256": self._hasher.sha.hexdigest(),
        }
        if self._sigs:
            _save_sigs(self._path, self._sigs)
        self.entries.append(entry)
        self._writer = self._fh = self._hasher = None


class _HashingFile(io.RawIOBase):
    def __init__(self, fh) -> None:
        self.fh, self.sha, self.size = fh, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.sha.update(b)
        self.size += len(b)
        return self.fh.write(b)


def _sig_path(part: Path) -> Path:
    return part.with_name(part.name.replace(".jsonl.zst", ".sig.npz"))


def _save_sigs(part: Path, sigs: list[DocSignature]) -> None:
    arrays = {}
    if sigs[0].exact is not None:
        arrays["exact"] = np.array([s.exact for s in sigs], dtype=np.uint64)
    if sigs[0].minhash is not None:
        arrays["minhash"] = np.stack([s.minhash for s in sigs])
    with open(_sig_path(part), "wb") as fh:
        np.savez(fh, **arrays)


def _load_sigs(part: Path, n: int) -> list[DocSignature]:
    with np.load(_sig_path(part)) as z:
        exact = z["exact"] if "exact" in z else None
        minhash = z["minhash"] if "minhash" in z else None
    return [
        DocSignature(int(exact[i]) if exact is not None else None, minhash[i] if minhash is not None else None)
        for i in range(n)
    ]


# ----------------------------------------------------------------------------------------------
# the stage


def _resolve_workers(n: int) -> int:
    if n > 0:
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _params_fingerprint(params: CleanParams) -> dict[str, Any]:
    """The params that decide the output bytes (not workers, not the shard)."""
    return params.model_dump(mode="json", exclude={"workers", "shard"})


def _chunks(
    files: list[dict[str, Any]], raw_dir: Path, params: CleanParams, file_counters: list[dict[str, int]]
) -> Iterator[tuple[tuple[int, int], list[tuple[str, dict]]]]:
    """Yield ((file_index, block), docs) for this shard's blocks, chunks of a block consecutive."""
    shard = params.shard
    for fi, entry in enumerate(files):
        if shard.by == "file" and fi % shard.count != shard.index:
            continue
        default_meta = {"pile_set_name": entry.get("pile_set_name") or entry.get("source") or "unknown"}
        counters = file_counters[fi]
        buf: list[tuple[str, dict]] = []
        chars = 0
        key = None
        for ri, rec in enumerate(
            _iter_records(raw_dir / entry["path"], entry.get("format"), params.on_bad_line, default_meta, counters)
        ):
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
        if buf:
            yield key, buf


def _ordered_results(params: CleanParams, workers: int, chunks: Iterable) -> Iterator[tuple[Any, list[DocResult]]]:
    """Clean chunks in a process pool with bounded in-flight work, yielding results in input order."""
    if workers <= 1:
        for key, docs in chunks:
            yield key, _clean_chunk(docs, params)
        return
    with ProcessPoolExecutor(workers, mp_context=_mp_context(), initializer=_init_worker,
                             initargs=(params.model_dump_json(),)) as pool:
        pending: deque = deque()
        for key, docs in chunks:
            pending.append((key, pool.submit(_clean_chunk, docs)))
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
    ctx.set_forkserver_preload(["cgpt.data.clean", "ftfy"])
    return ctx


def clean(params: CleanParams, raw_dir: Path, out_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    """Clean ``raw_dir`` (files of its manifest.json) into ``out_dir``; return json-serializable stats.

    With ``params.shard.count > 1`` only this shard's blocks are cleaned; a shard may be empty, and
    dedup decisions are left to :func:`merge_clean_shards` (the shard keeps every filter-passing
    document and saves its signatures beside the part).
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    files = read_raw_manifest(raw_dir)
    sharded = params.shard.count > 1
    dedup_on = params.dedup.exact or params.dedup.near
    deduper = Deduper(params.dedup) if (dedup_on and not sharded) else None
    workers = _resolve_workers(params.workers)
    per_source: dict[str, dict[str, Any]] = {}
    file_counters: list[dict[str, int]] = [{} for _ in files]
    bytes_in = 0
    t0 = time.perf_counter()

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc="clean", unit="doc", dynamic_ncols=True)

    with atomic_dir(out_dir) as tmp:
        writer = _PartWriter(tmp)
        current = None
        for key, results in _ordered_results(params, workers, _chunks(files, raw_dir, params, file_counters)):
            if key != current:
                entry = files[key[0]]
                writer.start(key, {"raw_path": entry["path"], "split": entry.get("split")})
                current = key
            for line, src, reason, changed, c_in, c_out, b_in, sig in results:
                s = per_source.get(src)
                if s is None:
                    s = per_source[src] = _new_counts()
                s["documents_in"] += 1
                s["characters_in"] += c_in
                s["changed_by_ftfy"] += int(changed)
                bytes_in += b_in
                if reason is None and deduper is not None:
                    reason = deduper.check(sig)
                if reason is not None:
                    s["dropped"][reason] += 1
                    continue
                s["documents_out"] += 1
                s["characters_out"] += c_out
                writer.write(line, sig, keep_sig=sharded and dedup_on)
            if bar is not None:
                bar.update(len(results))
        writer.finish()
        if bar is not None:
            bar.close()
        _add_file_counters(files, file_counters, per_source, params.shard)
        stats = {"total": _totals(per_source), "per_source": dict(sorted(per_source.items()))}
        if stats["total"]["documents_out"] == 0 and not sharded:
            raise DataError(
                f"{raw_dir}: clean kept 0 of {stats['total']['documents_in']} documents "
                f"(dropped: {_nonzero(stats['total']['dropped'])}); check the raw data and clean.min_chars/max_chars"
            )
        manifest = {
            "version": MANIFEST_VERSION,
            "raw_manifest_sha256": raw_manifest_sha256(raw_dir),
            "params": _params_fingerprint(params),
            "files": writer.entries,
            "stats": stats,
        }
        if sharded:
            manifest["shard"] = params.shard.model_dump(mode="json")
            manifest["dedup_pending"] = dedup_on
            manifest["raw_files"] = len(files)
        write_json_atomic(tmp / "manifest.json", manifest)

    elapsed = max(time.perf_counter() - t0, 1e-9)
    tot = stats["total"]
    return {
        **stats,
        "workers": workers,
        "parts": len(writer.entries),
        "seconds": round(elapsed, 3),
        "docs_per_s": round(tot["documents_in"] / elapsed, 1),
        "mb_per_s": round(bytes_in / 1e6 / elapsed, 3),
    }


def _nonzero(d: dict[str, int]) -> str:
    items = [f"{k}={v}" for k, v in d.items() if v]
    return ", ".join(items) if items else "none"


def _add_file_counters(files, file_counters, per_source, shard) -> None:
    """Fold iter_records' per-file counters (skipped bad lines, invalid UTF-8) into the source stats.

    A file's counters belong to shard ``file_index % count`` only (with ``by: block`` every shard
    reads every file), so merged shard stats equal one run's."""
    for fi, (entry, counters) in enumerate(zip(files, file_counters)):
        if not counters or fi % shard.count != shard.index:
            continue
        bad = sum(counters.get(k, 0) for k in ("malformed_json_skipped", "missing_text_skipped", "bad_meta_skipped"))
        inval = counters.get("invalid_utf8_records", 0)
        if not (bad or inval):
            continue
        src = entry.get("pile_set_name") or entry.get("source") or "unknown"
        s = per_source.setdefault(src, _new_counts())
        s["dropped"]["bad_line"] += bad
        s["invalid_utf8"] += inval


# ----------------------------------------------------------------------------------------------
# merging shards


def merge_clean_shards(shard_dirs: list[Path], out_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    """Merge the outputs of shard runs ``0..n-1`` into ``out_dir``: the same bytes as one run.

    Parts are ordered by (raw file, block) and renumbered; when dedup is on, the documents each
    shard kept are re-checked in corpus order against all earlier documents (its signatures), and
    parts with new drops are rewritten. The shard dirs are left untouched.
    """
    shard_dirs = [Path(d) for d in shard_dirs]
    manifests = []
    for d in shard_dirs:
        path = d / "manifest.json"
        if not path.is_file():
            raise DataError(f"{path}: shard output not found; run clean for that shard first")
        manifests.append(json.loads(path.read_text(encoding="utf-8")))
    counts = {m.get("shard", {}).get("count", 1) for m in manifests}
    indices = sorted(m.get("shard", {}).get("index", 0) for m in manifests)
    if len(counts) != 1 or indices != list(range(next(iter(counts)))):
        raise DataError(
            f"merge_clean_shards: got shard indices {indices} of counts {sorted(counts)}; pass every shard 0..n-1 exactly once"
        )
    fingerprints = {json.dumps(m["params"], sort_keys=True) for m in manifests}
    if len(fingerprints) != 1:
        raise DataError("merge_clean_shards: the shards were cleaned with different clean params; rerun them with the same params")
    if len({m.get("raw_manifest_sha256") for m in manifests}) != 1:
        raise DataError("merge_clean_shards: the shards were cleaned from different raw data (raw manifest differs); rerun them")
    params_fp = manifests[0]["params"]
    dedup_on = bool(params_fp["dedup"]["exact"] or params_fp["dedup"]["near"])

    per_source: dict[str, dict[str, Any]] = {}
    parts: list[tuple[Path, dict[str, Any]]] = []
    for d, m in zip(shard_dirs, manifests):
        for name, s in m["stats"]["per_source"].items():
            _add_counts(per_source.setdefault(name, _new_counts()), s)
        parts.extend((d / e["path"], e) for e in m["files"])
    parts.sort(key=lambda pe: (pe[1]["file_index"], pe[1]["block"]))

    from cgpt.data.params_clean import DedupParams

    deduper = Deduper(DedupParams(**params_fp["dedup"])) if dedup_on else None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(parts, desc="merge", unit="part", dynamic_ncols=True)
    with atomic_dir(Path(out_dir)) as tmp:
        writer = _PartWriter(tmp)
        for src_path, entry in parts:
            meta = {"raw_path": entry["raw_path"], "split": entry["split"]}
            key = (entry["file_index"], entry["block"])
            if deduper is None:
                name = f"part-{len(writer.entries):05d}.jsonl.zst"
                shutil.copyfile(src_path, tmp / name)
                writer.entries.append({**entry, "path": name})
            else:
                sigs = _load_sigs(src_path, entry["documents"])
                reasons = [deduper.check(s) for s in sigs]
                writer.start(key, meta)
                if not any(reasons):
                    name = f"part-{len(writer.entries):05d}.jsonl.zst"
                    shutil.copyfile(src_path, tmp / name)
                    writer.entries.append({**entry, "path": name})
                else:
                    for line, reason in zip(_read_lines(src_path), reasons):
                        if reason is None:
                            writer.write(line)
                            continue
                        doc = json.loads(line)
                        s = per_source.setdefault(doc["meta"].get("pile_set_name", "unknown"), _new_counts())
                        s["documents_out"] -= 1
                        s["characters_out"] -= len(doc["text"])
                        s["dropped"][reason] += 1
                    writer.finish()
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        stats = {"total": _totals(per_source), "per_source": dict(sorted(per_source.items()))}
        if stats["total"]["documents_out"] == 0:
            raise DataError(
                f"merge_clean_shards: 0 of {stats['total']['documents_in']} documents kept "
                f"(dropped: {_nonzero(stats['total']['dropped'])}); check the raw data and clean params"
            )
        manifest = {"version": MANIFEST_VERSION, "raw_manifest_sha256": manifests[0]["raw_manifest_sha256"],
                    "params": params_fp, "files": writer.entries, "stats": stats}
        write_json_atomic(tmp / "manifest.json", manifest)
    return {**stats, "parts": len(writer.entries), "shards": len(shard_dirs)}


def _read_lines(part: Path) -> Iterator[str]:
    with open(part, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as reader:
        for line in io.TextIOWrapper(reader, encoding="utf-8", newline="\n"):
            yield line.rstrip("\n")


# ----------------------------------------------------------------------------------------------
# reading the clean output (used by the tokenize stage)


def read_clean_manifest(clean_dir: Path) -> dict[str, Any]:
    path = Path(clean_dir) / "manifest.json"
    if not path.is_file():
        raise DataError(f"{path}: clean manifest not found; run the clean stage first (dvc repro clean)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("version") != MANIFEST_VERSION or "files" not in manifest:
        raise DataError(f"{path}: unsupported clean manifest (version {manifest.get('version')!r}); rerun the clean stage")
    if manifest.get("shard"):
        raise DataError(f"{path}: this is one shard's output; merge the shards first (merge_clean_shards)")
    return manifest


def iter_clean_documents(clean_dir: Path, part: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The documents of one part of the clean output, in order."""
    path = Path(clean_dir) / part["path"]
    for i, line in enumerate(_read_lines(path), 1):
        try:
            yield json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{i}: invalid JSON ({exc.msg}); rerun the clean stage") from None
