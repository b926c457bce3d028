"""Stage sources: the fingerprint of what download reads from outside the project -> ``data/sources.json``.

dvc.yaml runs it every time (``always_changed``); download depends on its output, so a changed
local corpus re-runs download (and only then). See :mod:`cgpt.data.download.fingerprint`.
"""

from __future__ import annotations

from typing import Any

from cgpt.data.download.fingerprint import sources_fingerprint
from cgpt.data.download.raw import cache_dir_for
from cgpt.data.download.sources import HashCache
from cgpt.fsutil import write_json_atomic
from cgpt.stages.project import Project

SOURCES_FILE = "sources.json"


def run(project: Project) -> dict[str, Any]:
    params = project.params()
    hashes = HashCache(cache_dir_for(params.download, project.raw) / "local-sha256.json")
    try:
        fingerprint = sources_fingerprint(params.download, project.root, hashes)
    finally:
        hashes.save()
    write_json_atomic(project.data / SOURCES_FILE, fingerprint)
    files = sum(len(s.get("files", [])) for s in fingerprint["sources"])
    print(f"sources: {len(fingerprint['sources'])} source(s), {files} file(s) fingerprinted")
    return fingerprint
