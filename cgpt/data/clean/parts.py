"""The clean stage's output format: zstd jsonl parts, their dedup signatures, and ``manifest.json``.

Layout of ``data/clean/``::

    part-00000.jsonl.zst ...   {"text": ..., "meta": {"pile_set_name": ..., ...}} one per line
    part-00000.sig.npz ...     dedup signatures of a shard's parts (only while a merge is pending)
    manifest.json              {"version": 1, "raw_manifest_sha256", "params", "files": [...], "stats"}

Each ``files`` entry: ``{"path", "file_index", "block", "raw_path", "split", "documents", "bytes",
"sha256"}``. The tokenize stage reads only the manifest and the parts.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import zstandard

from cgpt.core.errors import DataError
from cgpt.core.fsutil import read_json
from cgpt.data.clean.dedup import DocSignature
from cgpt.data.clean.params import CleanParams
from cgpt.faults import fault_point

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
ZSTD_LEVEL = 3


def params_fingerprint(params: CleanParams) -> dict[str, Any]:
    """The clean params that decide the output bytes (not ``workers``, not ``shard``)."""
    return params.model_dump(mode="json", exclude={"workers", "shard"})


class _HashingFile(io.RawIOBase):
    """A write-through file that also counts and sha256-hashes what passes."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.sha, self.size = fh, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        self.sha.update(b)
        self.size += len(b)
        return self.fh.write(b)


class PartWriter:
    """Streams the JSON lines of one block into ``part-XXXXX.jsonl.zst`` (only if it has lines).

    ``entries`` collects the manifest entries of the parts written so far; a block's part is
    numbered by its position among the non-empty parts.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.entries: list[dict[str, Any]] = []
        self._key: tuple[int, int] = (0, 0)
        self._meta: dict[str, Any] = {}
        self._path: Path | None = None
        self._fh: BinaryIO | None = None
        self._writer: Any = None
        self._hasher: _HashingFile | None = None
        self._docs = 0
        self._sigs: list[DocSignature] = []

    def next_name(self) -> str:
        return f"part-{len(self.entries):05d}.jsonl.zst"

    def start(self, key: tuple[int, int], meta: dict[str, Any]) -> None:
        """Begin the part of block ``key`` = (raw file index, block); ``meta`` goes into its entry."""
        self.finish()
        self._key, self._meta, self._docs, self._sigs = key, meta, 0, []

    def write(self, line: str, sig: DocSignature | None = None, keep_sig: bool = False) -> None:
        if self._writer is None:
            self._path = self.out_dir / self.next_name()
            self._fh = open(self._path, "wb")
            self._hasher = _HashingFile(self._fh)
            self._writer = zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(self._hasher, closefd=False)
        self._writer.write(line.encode("utf-8"))
        self._writer.write(b"\n")
        self._docs += 1
        if keep_sig and sig is not None:
            self._sigs.append(sig)

    def copy_part(self, src: Path, entry: dict[str, Any]) -> None:
        """Add an already written part (a shard's) unchanged, renumbered."""
        self.finish()
        name = self.next_name()
        shutil.copyfile(src, self.out_dir / name)
        self.entries.append({**entry, "path": name})

    def finish(self) -> None:
        if self._writer is None:
            return
        assert self._path is not None and self._fh is not None and self._hasher is not None
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
            save_signatures(self._path, self._sigs)
        self.entries.append(entry)
        fault_point("clean.part")
        self._writer = self._fh = self._hasher = None


def signature_path(part: Path) -> Path:
    return part.with_name(part.name.replace(".jsonl.zst", ".sig.npz"))


def save_signatures(part: Path, sigs: list[DocSignature]) -> None:
    arrays = {}
    if sigs[0].exact is not None:
        arrays["exact"] = np.array([s.exact for s in sigs], dtype=np.uint64)
    if sigs[0].minhash is not None:
        arrays["minhash"] = np.stack([s.minhash for s in sigs])
    with open(signature_path(part), "wb") as fh:
        np.savez(fh, **arrays)


def load_signatures(part: Path, n: int) -> list[DocSignature]:
    with np.load(signature_path(part)) as z:
        exact = z.get("exact")
        minhash = z.get("minhash")
    return [
        DocSignature(int(exact[i]) if exact is not None else None, minhash[i] if minhash is not None else None)
        for i in range(n)
    ]


def read_part_lines(part: Path) -> Iterator[str]:
    """The JSON lines of one part, without their newline."""
    with open(part, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as reader:
        for line in io.TextIOWrapper(reader, encoding="utf-8", newline="\n"):
            yield line.rstrip("\n")


def read_clean_manifest(clean_dir: Path, *, allow_shard: bool = False) -> dict[str, Any]:
    """``data/clean/manifest.json``, checked: version, files, and not an unmerged shard."""
    path = Path(clean_dir) / MANIFEST
    manifest = read_json(
        path,
        missing="clean manifest not found; run the clean stage first (dvc repro clean)",
        invalid="rerun the clean stage",
    )
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION or "files" not in manifest:
        version = manifest.get("version") if isinstance(manifest, dict) else None
        raise DataError(f"{path}: unsupported clean manifest (version {version!r}); rerun the clean stage")
    if manifest.get("shard") and not allow_shard:
        raise DataError(f"{path}: this is one shard's output; merge the shards first (merge_clean_shards)")
    return manifest


def clean_manifest_sha256(clean_dir: Path) -> str:
    return hashlib.sha256((Path(clean_dir) / MANIFEST).read_bytes()).hexdigest()


def iter_clean_documents(clean_dir: Path, part: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The documents of one part of the clean output, in order."""
    path = Path(clean_dir) / part["path"]
    for i, line in enumerate(read_part_lines(path), 1):
        try:
            yield json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{i}: invalid JSON ({exc.msg}); rerun the clean stage") from None
