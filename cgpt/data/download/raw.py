"""The download stage's work and its output format: ``download.sources`` -> ``data/raw/`` + ``manifest.json``.

Output layout (``out_dir``, normally ``data/raw/``)::

    <source>/...                 the source's files, in their original supported format
                                 (built-in corpus: <source>/shakespeare.jsonl)
    manifest.json                {"version": 1, "files": [...], "sources": {name: stats}}

Each ``files`` entry: ``{"path": <relative to out_dir>, "source", "pile_set_name", "split"
(null | train | val | test), "format", "bytes", "sha256"}``; the clean stage reads only this
(:func:`read_raw_manifest`).

The folder is built as a temporary sibling (``.raw.tmp``) and renamed into place at the end, so a
failure never leaves a ``data/raw`` that looks finished. Large files are fetched into the download
cache (``download.cache_dir``, default ``<out_dir>/../.download-cache``) and hard-linked into the
output, so a rerun after a failure resumes the partial file and skips finished ones.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

from cgpt.core.errors import DataError
from cgpt.core.fsutil import atomic_dir, read_json, write_json_atomic
from cgpt.data.download.params import DownloadParams
from cgpt.data.download.sources import (
    HashCache,
    RawFile,
    RawFileEntry,
    materialize_local,
    materialize_shakespeare,
    materialize_url,
)
from cgpt.faults import fault_point

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


def cache_dir_for(params: DownloadParams, out_dir: Path) -> Path:
    """Where partial and finished downloads live between runs."""
    if params.cache_dir:
        return Path(params.cache_dir).expanduser()
    return Path(out_dir).parent / ".download-cache"


def download(params: DownloadParams, out_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    """Materialize every source into ``out_dir`` atomically; return json-serializable statistics:
    ``{"sources": {name: {files, bytes, ...}}, "total": {...}, "timing": {...}}``; only ``timing``
    (seconds, bytes downloaded, cache hits) differs between two runs on the same inputs."""
    out_dir = Path(out_dir)
    cache = cache_dir_for(params, out_dir)
    t_all = time.perf_counter()
    per_source: dict[str, dict[str, Any]] = {}
    transfer: dict[str, dict[str, Any]] = {}
    files: list[RawFile] = []
    hashes = HashCache(cache / "local-sha256.json")
    try:
        with atomic_dir(out_dir) as tmp:
            for source in params.sources:
                t0 = time.perf_counter()
                if source.kind == "shakespeare":
                    res = materialize_shakespeare(source, tmp, cache)
                elif source.kind == "local":
                    res = materialize_local(source, tmp, hashes, progress=progress)
                else:
                    res = materialize_url(source, tmp, cache, params, progress=progress)
                seconds = time.perf_counter() - t0
                nbytes = sum(f.bytes for f in res.files)
                per_source[source.name] = {
                    "kind": source.kind,
                    "pile_set_name": source.tag,
                    "split": source.split,
                    "files": len(res.files),
                    "bytes": nbytes,
                    **res.stats,
                }
                transfer[source.name] = {
                    **res.transfer,
                    "seconds": round(seconds, 3),
                    "bytes_per_s": round(nbytes / seconds, 1) if seconds > 0 else 0.0,
                }
                files.extend(res.files)
                fault_point("download.source")
                log.info("download: %s: %d files, %.1f MB in %.1fs", source.name, len(res.files), nbytes / 1e6, seconds)
            # Only facts about the data go into the manifest: the same inputs give the same bytes,
            # so re-running download (a changed retry count, a new cache) leaves data/raw's hash alone.
            manifest = {"version": MANIFEST_VERSION, "files": [f.entry() for f in files], "sources": per_source}
            write_json_atomic(tmp / MANIFEST, manifest)
    finally:
        hashes.save()
    seconds = time.perf_counter() - t_all
    total_bytes = sum(f.bytes for f in files)
    return {
        "sources": {k: {kk: vv for kk, vv in v.items() if isinstance(vv, (int, float))} for k, v in per_source.items()},
        "total": {"sources": len(per_source), "files": len(files), "bytes": total_bytes},
        "timing": {
            "sources": transfer,
            "downloaded_bytes": sum(int(t.get("downloaded_bytes", 0)) for t in transfer.values()),
            "seconds": round(seconds, 3),
            "bytes_per_s": round(total_bytes / seconds, 1) if seconds > 0 else 0.0,
        },
    }


def read_raw_manifest(raw_dir: Path) -> list[RawFileEntry]:
    """The ``files`` of ``raw_dir/manifest.json``, validated (the clean stage's input)."""
    path = Path(raw_dir) / MANIFEST
    manifest = read_json(
        path,
        missing="raw manifest not found; run the download stage first (dvc repro download)",
        invalid="rerun the download stage",
    )
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, list):
        raise DataError(f'{path}: expected {{"files": [...]}}; rerun the download stage')
    for i, entry in enumerate(files):
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise DataError(f"{path}: files[{i}] has no 'path'; rerun the download stage")
        if entry.get("split") not in (None, "train", "val", "test"):
            raise DataError(f"{path}: files[{i}].split={entry.get('split')!r}; expected null, train, val or test")
        if not (Path(raw_dir) / entry["path"]).is_file():
            raise DataError(f"{Path(raw_dir) / entry['path']}: listed in {path} but missing; rerun the download stage")
    return files


def raw_manifest_sha256(raw_dir: Path) -> str:
    """What downstream outputs record to say which raw data they were made from."""
    return hashlib.sha256((Path(raw_dir) / MANIFEST).read_bytes()).hexdigest()
