"""Merge the outputs of clean shard runs ``0..n-1`` into one ``data/clean``: the same bytes as one run.

Parts are ordered by (raw file, block) and renumbered; when dedup is on, the documents each shard
kept are re-checked in corpus order against all earlier documents (their signatures), and parts
with new drops are rewritten. The shard folders are left untouched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cgpt.core.errors import DataError
from cgpt.core.fsutil import atomic_dir, write_json_atomic
from cgpt.data.clean.dedup import Deduper
from cgpt.data.clean.params import DedupParams
from cgpt.data.clean.parts import (
    MANIFEST,
    MANIFEST_VERSION,
    PartWriter,
    load_signatures,
    read_clean_manifest,
    read_part_lines,
)
from cgpt.data.clean.stats import SourceStats, nonzero_drops, stats_json


def _read_shard_manifests(shard_dirs: list[Path]) -> list[dict[str, Any]]:
    manifests = []
    for d in shard_dirs:
        if not (d / MANIFEST).is_file():
            raise DataError(f"{d / MANIFEST}: shard output not found; run clean for that shard first")
        manifests.append(read_clean_manifest(d, allow_shard=True))
    counts = {m.get("shard", {}).get("count", 1) for m in manifests}
    indices = sorted(m.get("shard", {}).get("index", 0) for m in manifests)
    if len(counts) != 1 or indices != list(range(next(iter(counts)))):
        raise DataError(
            f"merge_clean_shards: got shard indices {indices} of counts {sorted(counts)}; pass every shard 0..n-1 "
            "exactly once"
        )
    if len({json.dumps(m["params"], sort_keys=True) for m in manifests}) != 1:
        raise DataError(
            "merge_clean_shards: the shards were cleaned with different clean params; rerun them with the same params"
        )
    if len({m.get("raw_manifest_sha256") for m in manifests}) != 1:
        raise DataError(
            "merge_clean_shards: the shards were cleaned from different raw data (raw manifest differs); rerun them"
        )
    return manifests


def merge_clean_shards(shard_dirs: list[Path], out_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    """Merge shard outputs into ``out_dir`` (atomically); return the merged stats plus ``parts`` and ``shards``."""
    shard_dirs = [Path(d) for d in shard_dirs]
    manifests = _read_shard_manifests(shard_dirs)
    params_fp = manifests[0]["params"]
    dedup_on = bool(params_fp["dedup"]["exact"] or params_fp["dedup"]["near"])

    per_source: dict[str, SourceStats] = {}
    parts: list[tuple[Path, dict[str, Any]]] = []
    for d, m in zip(shard_dirs, manifests):
        for name, s in m["stats"]["per_source"].items():
            per_source.setdefault(name, SourceStats()).add(SourceStats.from_json(s))
        parts.extend((d / e["path"], e) for e in m["files"])
    parts.sort(key=lambda pe: (pe[1]["file_index"], pe[1]["block"]))

    deduper = Deduper(DedupParams(**params_fp["dedup"])) if dedup_on else None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(parts, desc="merge", unit="part", dynamic_ncols=True)
    with atomic_dir(Path(out_dir)) as tmp:
        writer = PartWriter(tmp)
        for src_path, entry in parts:
            if deduper is None:
                writer.copy_part(src_path, entry)
            else:
                reasons = [deduper.check(s) for s in load_signatures(src_path, entry["documents"])]
                if not any(reasons):
                    writer.copy_part(src_path, entry)
                else:
                    writer.start(
                        (entry["file_index"], entry["block"]), {"raw_path": entry["raw_path"], "split": entry["split"]}
                    )
                    for line, reason in zip(read_part_lines(src_path), reasons):
                        if reason is None:
                            writer.write(line)
                            continue
                        doc = json.loads(line)
                        s = per_source.setdefault(doc["meta"].get("pile_set_name", "unknown"), SourceStats())
                        s.documents_out -= 1
                        s.characters_out -= len(doc["text"])
                        s.dropped[reason] += 1
                    writer.finish()
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        stats = stats_json(per_source)
        if stats["total"]["documents_out"] == 0:
            raise DataError(
                f"merge_clean_shards: 0 of {stats['total']['documents_in']} documents kept "
                f"(dropped: {nonzero_drops(stats['total']['dropped'])}); check the raw data and clean params"
            )
        manifest = {
            "version": MANIFEST_VERSION,
            "raw_manifest_sha256": manifests[0]["raw_manifest_sha256"],
            "params": params_fp,
            "files": writer.entries,
            "stats": stats,
        }
        write_json_atomic(tmp / MANIFEST, manifest)
    return {**stats, "parts": len(writer.entries), "shards": len(shard_dirs)}
