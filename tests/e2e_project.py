"""A real cgpt project in a temp dir for end-to-end tests: the repo's code, a tiny corpus, `dvc repro`.

Build it once per session (:func:`build_project`), then give every test its own copy
(:func:`copy_project`), so tests can change params, kill stages or break files in any order.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from paths import EVAL_FIXTURES, REPO

PROJECT_FILES = (
    "cgpt",
    "stages",
    "flows",
    ".dvc",
    "dvc.yaml",
    ".dvcignore",
    ".gitignore",
    "pyproject.toml",
    "prefect.yaml",
    "family/dvc.yaml",  # the family's own DVC project (a subrepo)
    "family/.dvc",
    "family/.dvcignore",
    "family/.gitignore",
    "family/points/README.md",  # keeps the folder the scaling stage depends on
)
IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", "cache", "tmp")

SUBJECTS = ["the king", "the queen", "a fool", "my lord", "the duke", "sweet lady", "the ghost", "our army"]
VERBS = ["speaks of", "dreams of", "fights for", "weeps for", "laughs at", "waits for", "sings to"]
OBJECTS = ["the crown", "his love", "the storm", "her father", "the night", "old rome", "the sea", "fair verona"]

TINY_PARAMS: dict[str, Any] = {
    "download": {"sources": [{"name": "templates", "kind": "local", "paths": ["corpus/templates.jsonl"]}]},
    "clean": {"fix_text": True, "normalization": "NFC", "dedup": {"exact": False, "near": False}, "workers": 1},
    "tokenize": {
        "tokenizer": {"vocab_size": 512},
        "split": {"val": 0.1, "test": 0.1, "chunk_chars": 1000},
        "workers": 1,
    },
    "model": {"preset": "cpu-tiny", "n_positions": 512},  # room for the longest fixture answer (~265 tokens)
    "train": {
        "run_name": "default",
        "max_steps": 60,
        "lr": None,  # spelt out, as in the default params.yaml: `dvc exp run -S train.lr=...` needs the key
        "eval_interval": 30,
        "checkpoint_interval": 20,
        "log_interval": 10,
        "eval_tokens": 4096,
    },
    # the card's seven tasks on a few real documents each (tests/fixtures/eval, copied into the project)
    "evaluate": {"batch_size": 8, "data": "evaldata", "limit": None, "num_fewshot": [0, 5]},
    "export": {"sample_prompt": "The king", "sample_tokens": 12},
    "family": {"members": {}},  # no family: dvc.yaml's member stage groups are empty (the key must exist)
}


def make_corpus(path: Path, docs: int = 60, seed: int = 0) -> None:
    """Template English: learnable in a few dozen steps, so the loss must fall far below ln(V)."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for d in range(docs):
            n = rng.randint(40, 80)
            lines = [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}." for _ in range(n)]
            fh.write(
                json.dumps({"text": " ".join(lines).capitalize(), "meta": {"pile_set_name": "Templates", "id": d}})
                + "\n"
            )


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "CGPT_FAULT")}
    out["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{out.get('PATH', '')}"
    return {**out, **(extra or {})}


def run(
    cmd: list[str], cwd: Path, check: bool = True, extra_env: dict[str, str] | None = None, **kw: Any
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env(extra_env), capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def dvc(
    *args: str, cwd: Path, check: bool = True, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "dvc", *args], cwd=cwd, check=check, extra_env=extra_env)


def cgpt(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "cgpt.cli", *args], cwd=cwd, check=check)


def write_params(root: Path, params: dict[str, Any]) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def read_params(root: Path) -> dict[str, Any]:
    return yaml.safe_load((root / "params.yaml").read_text())


def new_project(root: Path, params: dict[str, Any] | None = None) -> Path:
    """The repo's code and DVC config, a tiny corpus and params, in a fresh git repo (nothing run yet)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=IGNORE)
        elif src.exists():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / name)
    make_corpus(root / "corpus" / "templates.jsonl")
    shutil.copytree(EVAL_FIXTURES, root / "evaldata")
    write_params(root, params or TINY_PARAMS)
    run(["git", "init", "-q"], cwd=root)
    return root


def build_project(root: Path, params: dict[str, Any] | None = None) -> Path:
    """:func:`new_project` after a successful ``dvc repro``."""
    new_project(root, params)
    dvc("repro", cwd=root)
    return root


def copy_project(src: Path, dst: Path) -> Path:
    """A copy to break freely (DVC cache, outputs, checkpoints and MLflow store included)."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


def metrics(root: Path) -> dict[str, Any]:
    """``dvc metrics show --json`` as {file: content}."""
    out = json.loads(dvc("metrics", "show", "--json", cwd=root).stdout)
    merged: dict[str, Any] = {}
    for files in out.values():
        for path, content in files["data"].items():
            merged[path] = content["data"]
    return merged


def files_bytes(root: Path, *paths: str, exclude: tuple[str, ...] = ()) -> dict[str, bytes]:
    """{relative path: bytes} of every file under ``paths`` (files or folders), minus names in ``exclude``."""
    out: dict[str, bytes] = {}
    for rel in paths:
        p = root / rel
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
        for f in files:
            if f.name not in exclude:
                out[f.relative_to(root).as_posix()] = f.read_bytes()
    return out


def stages_run(proc: subprocess.CompletedProcess[str]) -> set[str]:
    """The stages a `dvc repro` ran, from its output."""
    return {line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage")}
