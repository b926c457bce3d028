"""`dvc status` after an edit lists exactly the stages that read what was edited (real DVC, real dvc.yaml).

The project is the repo's own (default params.yaml, its family included) with every stage recorded
in dvc.lock by ``dvc commit`` over stand-in outputs, in the root project and in the family's
(family/dvc.yaml, a DVC subrepo): DVC compares deps and params exactly as after a real ``dvc repro``,
without minutes of training. The family's stages are named ``family/<stage>`` here; the root's
``dvc status`` never lists them. ``sources`` runs on every ``dvc repro`` by design
(``always_changed``), so it is left out of every comparison.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from e2e_project import PROJECT_FILES, REPO, dvc, run

pytestmark = pytest.mark.slow


def _stand_in_outputs(root: Path) -> None:
    """A small file for every output the DVC project at ``root`` declares (a folder for extension-less paths)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        for stage in repo.index.stages:
            for o in stage.outs:
                path = Path(o.fs_path)
                if path.suffix:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(f"{path.name}\n")
                else:
                    path.mkdir(parents=True, exist_ok=True)
                    (path / "part").write_text("x\n")


@pytest.fixture(scope="module")
def committed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("staleness") / "project"
    root.mkdir()
    for name in (*PROJECT_FILES, "params.yaml"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.exists():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / name)
    run(["git", "init", "-q"], cwd=root)
    _stand_in_outputs(root)
    dvc("commit", "--force", "--quiet", cwd=root)
    _stand_in_outputs(root / "family")
    dvc("commit", "--force", "--quiet", cwd=root / "family")
    assert _stale(root) == set(), "a freshly committed project must be up to date"
    return root


def _stale(root: Path) -> set[str]:
    """The stale stages of the root project and (as ``family/<stage>``) of the family's."""
    status = json.loads(dvc("status", "--json", cwd=root).stdout or "{}")
    family = json.loads(dvc("status", "--json", cwd=root / "family").stdout or "{}")
    root_names = {name.split(":")[-1] for name in status}
    assert not any(n.startswith(("member-", "scaling")) for n in root_names), root_names
    return (root_names - {"sources"}) | {f"family/{name.split(':')[-1]}" for name in family}


def _members() -> list[str]:
    return list(yaml.safe_load((REPO / "params.yaml").read_text())["family"]["members"])


def _group(stage: str) -> set[str]:
    return {f"family/{stage}@{m}" for m in _members()}


def _stale_after(root: Path, path: str, edit) -> set[str]:
    """The stale set after ``edit(text) -> text`` of ``path``; the file is restored after."""
    f = root / path
    before = f.read_text(encoding="utf-8")
    try:
        f.write_text(edit(before), encoding="utf-8")
        return _stale(root)
    finally:
        f.write_text(before, encoding="utf-8")


def _comment(text: str) -> str:
    return text + "\n# an edit that changes nothing but the file's bytes\n"


def _set(key: str, value):
    def edit(text: str) -> str:
        data = yaml.safe_load(text)
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
        return yaml.safe_dump(data, sort_keys=False)

    return edit


@pytest.mark.skipif(not _members(), reason="params.yaml has no family")
def test_each_edit_stales_exactly_the_stages_that_read_it(committed):
    evaluate = {"evaluate"} | _group("member-evaluate")
    family = _group("member-train") | _group("member-evaluate") | _group("member-export") | {"family/scaling"}
    cases = {
        # evaluation: its options and its code
        ("cgpt/eval/params.py", "comment"): evaluate,
        ("cgpt/eval/scoring.py", "comment"): evaluate,
        ("params.yaml", "evaluate.batch_size"): evaluate,
        # the family: its modules and its params
        ("cgpt/family/members.py", "comment"): family,
        ("params.yaml", "family.defaults.lr"): family,
        ("params.yaml", "family.fit.level"): {"family/scaling"},
        # the family's own tokenizer: its tokenization and its members, not the single model's data
        ("params.yaml", "family.tokenizer.kind"): {"family/tokenize"} | family,
        ("cgpt/stages/family_tokenize.py", "comment"): {"family/tokenize"},
        # training: the loop re-runs the single model's and every member's training, nothing else
        ("cgpt/train/loop.py", "comment"): {"train"} | _group("member-train"),
        # a single-model recipe key: the members' training and export read the train section (its loop
        # keys pass through to them; a member with its checkpoints complete resumes at its last step)
        ("params.yaml", "train.max_steps"): {"train", "export"} | _group("member-train") | _group("member-export"),
        # the data: a clean module re-runs clean (tokenize follows only if data/clean changes)
        ("cgpt/data/clean/cleaner.py", "comment"): {"clean"},
        # the tokenizer's code: both tokenizations (the single model's and the family's)
        ("cgpt/data/tokenize/pack.py", "comment"): {"tokenize", "family/tokenize"},
        ("params.yaml", "clean.min_chars"): {"clean"},
        ("params.yaml", "export.sample_tokens"): {"export"} | _group("member-export"),
    }
    values = {"evaluate.batch_size": 16, "family.defaults.lr": 0.005, "family.fit.level": 0.9,
              "family.tokenizer.kind": "train", "train.max_steps": 7, "clean.min_chars": 2,
              "export.sample_tokens": 9}  # fmt: skip
    for (path, what), expected in cases.items():
        edit = _comment if what == "comment" else _set(what, values[what])
        assert _stale_after(committed, path, edit) == expected, f"{path} ({what})"
    assert _stale(committed) == set()
