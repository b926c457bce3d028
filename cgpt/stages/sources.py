"""Stage sources: fingerprints of what the stages read from outside the project.

``data/sources.json`` (the local corpus files; download depends on it) and ``data/eval_sources.json``
(a local task-data folder; evaluate depends on it). dvc.yaml runs this stage every time
(``always_changed``), so a changed local file re-runs exactly the stage that reads it. See
:mod:`cgpt.data.download.fingerprint`.

It is also where the whole params.yaml is validated (:class:`cgpt.config.Params`, every section and
the checks across sections): every later stage reads only its own sections, and this stage, run
first by every ``dvc repro``, stops everything on a typo anywhere before any work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from cgpt.config import Params, load_params
from cgpt.core.errors import ConfigError
from cgpt.core.fsutil import write_json_atomic
from cgpt.core.locks import writing
from cgpt.core.project import Project
from cgpt.core.sections import PARAMS_FILE, read_params_file
from cgpt.data.download.fingerprint import sources_fingerprint
from cgpt.data.download.raw import cache_dir_for
from cgpt.data.download.sources import HashCache
from cgpt.tracking.store import check_tracking

SOURCES_FILE = "sources.json"


EVAL_SOURCES_FILE = "eval_sources.json"

#: what this stage reads of params.yaml: all of it
StageParams = Params


def eval_data_fingerprint(params: Params, root: Path, hashes: HashCache) -> dict[str, Any]:
    """What evaluate reads from outside the project: a local task-data folder (every file's sha256), or
    the download cache, whose files are pinned by sha256 in the code (a code dep of evaluate)."""
    folder = params.evaluate.data
    if folder is None:
        return {"version": 1, "data": "downloaded (pinned in cgpt/eval)"}
    files = sorted(
        f
        for task in params.evaluate.tasks
        if (Path(folder) / task).is_dir()
        for f in (Path(folder) / task).glob("*.jsonl")
    )
    return {
        "version": 1,
        "data": [{"path": f.relative_to(folder).as_posix(), "bytes": f.stat().st_size, "sha256": hashes.sha256(f)}
                 for f in files],
    }  # fmt: skip


def _lookup(data: Any, key: str) -> tuple[bool, Any]:
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return False, None
        data = data[part]
    return True, data


def _declared_params(root: Path) -> list[tuple[str, list[str]]]:
    """(stage, the params.yaml keys it declares) for the stages of dvc.yaml and family/dvc.yaml (the
    family's project, whose params entries name the root's file: ``../params.yaml: [keys]``)."""
    out = []
    for prefix, path in (("", root / "dvc.yaml"), ("family/", root / "family" / "dvc.yaml")):
        if not path.is_file():
            continue
        for name, stage in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("stages", {}).items():
            keys: list[str] = []
            for entry in (stage.get("do") or stage).get("params", []):
                if isinstance(entry, str):
                    keys.append(entry)
                elif isinstance(entry, dict):
                    keys += [str(k) for f, ks in entry.items() if Path(str(f)).name == PARAMS_FILE for k in ks or []]
            out.append((prefix + name, keys))
    return out


def check_stage_params(root: Path) -> None:
    """One line for the first key dvc.yaml (or family/dvc.yaml) names as a stage's param that params.yaml leaves out.

    cgpt gives every key a default, but DVC refuses to run a stage whose declared params are not in
    the file (``Parameters '...' are missing``, for every later stage): say which key, which stage,
    and the value to write, before any work."""
    raw = read_params_file(root / PARAMS_FILE) or {}
    defaults = Params().model_dump(mode="json")
    members = (raw.get("family") or {}).get("members") or {}
    for name, keys in _declared_params(root):
        if name.startswith("family/") and not members:
            continue  # no family: its project (family/dvc.yaml) has nothing to run, DVC reads none of its params
        for key in keys:
            for resolved in [key.replace("${key}", m) for m in members] if "${key}" in key else [key]:
                if _lookup(raw, resolved)[0]:
                    continue
                found, default = _lookup(defaults, resolved)
                last = resolved.split(".")[-1]
                hint = ""
                if found:
                    value = "{}" if isinstance(default, dict) else json.dumps(default)
                    hint = f", e.g. `{last}: {value}` (cgpt's default{'s' if isinstance(default, dict) else ''})"
                raise ConfigError(
                    f"{root / PARAMS_FILE}: {resolved} is missing, and dvc.yaml's {name} stage reads it as a "
                    f"param (DVC refuses a missing one): write it out{hint}"
                )


def run(project: Project) -> dict[str, Any]:
    with writing(project.data / SOURCES_FILE):
        return _run(project)


def _run(project: Project) -> dict[str, Any]:
    params = load_params(project.params_file)
    check_stage_params(project.root)
    # the first stage of every `dvc repro`: an unreachable MLflow store is said here, once, before any work
    check_tracking(project.root, params.tracking)
    hashes = HashCache(cache_dir_for(params.download, project.raw) / "local-sha256.json")
    try:
        fingerprint = sources_fingerprint(params.download, project.root, hashes)
        eval_fingerprint = eval_data_fingerprint(params, project.root, hashes)
    finally:
        hashes.save()
    write_json_atomic(project.data / SOURCES_FILE, fingerprint)
    write_json_atomic(project.data / EVAL_SOURCES_FILE, eval_fingerprint)
    files = sum(len(s.get("files", [])) for s in fingerprint["sources"])
    print(f"sources: {len(fingerprint['sources'])} source(s), {files} file(s) fingerprinted")
    return fingerprint
