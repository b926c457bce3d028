"""dvc.yaml's deps are exactly what each stage reads: its import closure inside cgpt/ (so `dvc repro`
never misses a code change) and nothing outside it (so an edit re-runs no stage that does not read
it), and the params sections its ``StageParams`` validates (both ways too)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from import_closure import REPO, import_closure

STAGE_CMD = re.compile(r"python -m stages\.(\w+)(?: (\w+))?")


def stage_entry_files(cmd: str) -> list[Path]:
    """The files a stage command starts from: stages/<name>.py and the cgpt.stages function it calls;
    a family member's stage (``python -m stages.member train <name>``) also runs the single-model
    stage function it names (called by name, so the import graph does not show it)."""
    m = STAGE_CMD.search(cmd)
    assert m, f"unexpected stage command {cmd!r}"
    files = [REPO / "stages" / f"{m.group(1)}.py", REPO / "cgpt" / "stages" / f"{m.group(1)}.py"]
    if m.group(2):
        files.append(REPO / "cgpt" / "stages" / f"{m.group(2)}.py")
    return files


def code_deps(stage: dict) -> list[Path]:
    deps = [Path(d if isinstance(d, str) else next(iter(d))) for d in stage.get("deps", [])]
    return [d for d in deps if d.parts[0] in ("cgpt", "stages")]


def uncovered(stage: dict) -> list[str]:
    """Files of the stage's import closure that no dep (a file, or a folder above it) covers."""
    deps = [Path(d if isinstance(d, str) else next(iter(d))) for d in stage.get("deps", [])]
    closure = import_closure(*stage_entry_files(stage["cmd"]))
    return sorted(str(f) for f in closure if not any(f == d or d in f.parents for d in deps))


def _from_family(stage: dict) -> dict:
    """A stage of family/dvc.yaml as if it were written at the root: its ``../`` paths made the
    root's, its params (``../params.yaml: [keys]``) a plain list."""
    deps = [d[3:] if isinstance(d, str) and d.startswith("../") else d for d in stage.get("deps", [])]
    params: list[str] = []
    for p in stage.get("params", []):
        params += [str(k) for k in p["../params.yaml"]] if isinstance(p, dict) else [str(p)]
    return {**stage, "deps": deps, "params": params}


def load_stages() -> dict[str, dict]:
    """The stages of dvc.yaml and of the family's project (family/dvc.yaml, named ``family/<stage>``);
    a ``foreach`` group (the member stages) as its ``do`` template."""
    out = {}
    for prefix, path in (("", REPO / "dvc.yaml"), ("family/", REPO / "family" / "dvc.yaml")):
        for name, stage in yaml.safe_load(path.read_text(encoding="utf-8"))["stages"].items():
            stage = stage["do"] if "foreach" in stage else stage
            out[prefix + name] = _from_family(stage) if prefix else stage
    return out


@pytest.mark.parametrize("name", list(load_stages()))
def test_deps_cover_the_import_closure(name):
    missing = uncovered(load_stages()[name])
    assert missing == [], f"dvc.yaml stage {name} misses code deps: {missing}"


def test_the_family_lists_code_files_not_code_folders():
    """family/dvc.yaml's code deps are ``../`` paths, which the root's .dvcignore (``__pycache__/``) does
    not cover in a DVC subrepo: a folder there would hash Python's bytecode, and every new .pyc
    would retrain every member. Files only (a data folder without code, e.g. the licences, is fine)."""
    folders = [
        f"{name}: {d}"
        for name, stage in load_stages().items()
        if name.startswith("family/")
        for d in map(Path, code_deps(stage))
        if (REPO / d).is_dir() and any((REPO / d).rglob("*.py"))
    ]
    assert folders == []


def test_every_stage_dep_exists():
    for name, stage in load_stages().items():
        for d in stage.get("deps", []):
            path = d if isinstance(d, str) else next(iter(d))
            if path.startswith(("cgpt", "stages")):
                assert (REPO / path).exists(), f"{name}: dep {path} does not exist"


def test_a_removed_dep_is_caught():
    stage = load_stages()["train"]
    trimmed = {**stage, "deps": [d for d in stage["deps"] if d != "cgpt/train"]}
    missing = uncovered(trimmed)
    assert "cgpt/train/loop.py" in missing and "cgpt/train/optim.py" in missing


def beyond_the_closure(stage: dict) -> list[str]:
    """Code deps (files, or files below a folder dep) the stage never imports: an edit there would
    re-run it for nothing."""
    closure = import_closure(*stage_entry_files(stage["cmd"]))
    extra = []
    for dep in code_deps(stage):
        files = (
            [dep]
            if (REPO / dep).is_file()
            else sorted(f.relative_to(REPO) for f in (REPO / dep).rglob("*.py") if "__pycache__" not in f.parts)
        )
        extra += [str(f) for f in files if f not in closure]
    return extra


@pytest.mark.parametrize("name", list(load_stages()))
def test_no_dep_outside_the_import_closure(name):
    extra = beyond_the_closure(load_stages()[name])
    assert extra == [], f"dvc.yaml stage {name} depends on code it never imports: {extra}"


def test_an_extra_dep_is_caught():
    stage = load_stages()["download"]
    assert beyond_the_closure({**stage, "deps": [*stage["deps"], "cgpt/eval/params.py"]}) == ["cgpt/eval/params.py"]


def test_no_code_dep_block_is_repeated_whole():
    """Stages share code, not copied blocks: no two stages list the same code deps."""
    seen: dict[tuple[str, ...], str] = {}
    for name, stage in load_stages().items():
        key = tuple(sorted(map(str, code_deps(stage))))
        assert key not in seen, f"{name} and {seen.get(key)} list the same code deps"
        seen[key] = name


#: sections a stage reads that cannot change its outputs, so they are not DVC params (a change
#: re-runs nothing): ``tracking`` says where the MLflow record goes, not what is computed; a member's
#: evaluation reads the ``train`` section only for its thread count (speed), the scaling stage only
#: for the members' loop keys, which name the family's MLflow parent run but change no point or fit
NOT_OUTPUTS = {"tracking"}
SPEED_ONLY = {"family/member-evaluate": {"train"}, "family/scaling": {"train"}}


def stage_view(name: str, cmd: str):
    """The stage's ``StageParams`` (a member stage's: its view with ``family``)."""
    import importlib

    from cgpt.stages.member import member_view

    m = STAGE_CMD.search(cmd)
    return (
        member_view(m.group(2))
        if m.group(1) == "member"
        else importlib.import_module(f"cgpt.stages.{m.group(1)}").StageParams
    )


@pytest.mark.parametrize("name", list(load_stages()))
def test_params_are_the_sections_the_stage_reads(name):
    stage = load_stages()[name]
    declared = {str(p).split(".")[0] for p in stage.get("params", [])}
    read = set(stage_view(name, stage["cmd"]).model_fields)
    assert declared <= read, f"{name}: dvc.yaml declares params it never reads: {sorted(declared - read)}"
    missing = read - declared - NOT_OUTPUTS - SPEED_ONLY.get(name, set())
    if name == "sources":  # validates the whole file; always runs, so its params change nothing
        missing = set()
    assert not missing, f"{name}: reads params.yaml sections dvc.yaml does not declare: {sorted(missing)}"


@pytest.mark.parametrize("params_file", ["params.yaml", "examples/cerebras-family/params.yaml"])
def test_the_shipped_params_spell_out_every_key_dvc_yaml_reads(tmp_path, params_file):
    from cgpt.stages.sources import check_stage_params

    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "family").mkdir()
    shutil.copy(REPO / "family" / "dvc.yaml", tmp_path / "family" / "dvc.yaml")
    shutil.copy(REPO / params_file, tmp_path / "params.yaml")
    check_stage_params(tmp_path)


def test_a_key_dvc_yaml_reads_but_params_yaml_leaves_out_is_one_line(tmp_path):
    from cgpt.core.errors import ConfigError
    from cgpt.stages.sources import check_stage_params

    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    del raw["clean"]["fix_text"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        check_stage_params(tmp_path)
    line = str(err.value)
    assert "clean.fix_text is missing" in line and "export stage" in line and "`fix_text: true`" in line
    assert "\n" not in line


def test_every_stage_output_persists():
    """`persist: true` on every output: DVC then never deletes one before its stage runs, so a stage
    that fails (a params mistake, a damaged file) leaves the previous results — data/sources.json
    included — in place, and each stage replaces its outputs atomically only when it succeeds."""
    missing = []
    for name, body in load_stages().items():  # both projects' (a foreach group as its template)
        for out in body.get("outs", []) + body.get("metrics", []) + body.get("plots", []):
            path, opts = next(iter(out.items())) if isinstance(out, dict) else (out, {})
            if not (opts or {}).get("persist"):
                missing.append(f"{name}: {path}")
    assert missing == []
