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
from cgpt.core.fsutil import atomic_dir, read_json, read_json_if_valid, write_json_atomic
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


def corrupt_file_remedy(raw_dir: Path, entry: RawFileEntry) -> str:
    """What to do about a corrupt file of ``raw_dir`` (an entry of its manifest), by where it came
    from (the manifest's ``sources``): rerunning download copies a *local* source's file as it is,
    so that file itself must be repaired; a *url* file is linked from the download cache, so its
    cached copy must go too. (Only the default cache location, beside ``raw_dir``, can be named:
    the clean stage does not read ``download.cache_dir``.)"""
    raw_dir = Path(raw_dir)
    manifest = read_json_if_valid(raw_dir / MANIFEST)
    sources = manifest.get("sources") if isinstance(manifest, dict) else None
    name = str(entry.get("source", ""))
    kind = (sources or {}).get(name, {}).get("kind") if isinstance(sources, dict) else None
    rel = entry["path"].split("/", 1)[1] if "/" in entry["path"] else entry["path"]
    cache = raw_dir.parent / ".download-cache"
    if kind == "local":
        original = _local_original(cache, str(entry.get("sha256", "")))
        where = str(original) if original else f"{rel} of source {name!r} (download.sources)"
        return (
            f"it is a copy of the local file {where}, which is itself corrupt (download copies local files as "
            "they are, so rerunning it copies the same damage): repair or replace that file, then rerun"
        )
    if kind == "url":
        cached = cache / "url" / name / rel
        copy = str(cached) if cached.exists() else "its copy in the download cache (download.cache_dir)"
        return f"delete it and {copy} (or the rerun links the same file again), then rerun the download stage"
    return "delete it and rerun the download stage"


def _local_original(cache: Path, sha256: str) -> Path | None:
    """The local file with this sha256 that download hashed (its hash cache, keyed by path)."""
    data = read_json_if_valid(cache / "local-sha256.json")
    if not sha256 or not isinstance(data, dict):
        return None
    for key, digest in sorted(data.items()):
        path = Path(str(key).rsplit("|", 3)[0])
        if digest == sha256 and path.is_file():
            return path
    return None
