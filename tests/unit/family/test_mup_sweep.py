"""The µP sweep (cgpt/family/sweep/, flows/mup_sweep.py) on a tiny tokenized project: real
training trials, a real MLflow store in the temp project, Prefect's test harness for the flow."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import yaml
from e2e_project import TINY_PARAMS, new_project
from paths import REPO

from cgpt.config import load_params, parse_params
from cgpt.core.errors import ConfigError
from cgpt.core.project import Project
from cgpt.family.params import FamilyParams
from cgpt.family.sweep.params_file import write_chosen_params
from cgpt.family.sweep.plan import plan_search, plan_transfer
from cgpt.family.sweep.report import choose
from cgpt.family.sweep.trials import TrialResult, run_trial
from cgpt.stages import stage_function

SWEEP_FAMILY = {
    "defaults": {"preset": "cpu-tiny", "n_positions": 64, "seq_len": 64, "batch_size": 4},
    "mup": {"base_width": 16, "lr": None, "init_std": None, "output_mult": None},
    "members": {},
    "sweep": {
        "proxy": {"n_layer": 1, "d_model": 16, "n_head": 2},
        "lr": [0.003, 0.03],
        "init_std": [0.08],
        "output_mult": [1.0],
        "max_steps": 4,
        "seed": 0,
        "transfer_widths": [16, 32],
        "workers": 2,
    },
}
HEADER = "# a comment at the top that must survive\n"
MUP_COMMENT = "# µP values: the sweep writes these"


def _params_text() -> str:
    """params.yaml as a person writes it: comments above and beside keys."""
    raw = {**TINY_PARAMS, "family": SWEEP_FAMILY}
    text = HEADER + yaml.safe_dump(raw, sort_keys=False)
    return text.replace("  mup:\n", f"  mup:  {MUP_COMMENT}\n", 1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny project with family/tokens (download, clean, the family's tokenize run in-process: the
    sweep trains on the family's tokens), no trials yet."""
    import cgpt.stages.family_tokenize

    root = new_project(tmp_path_factory.mktemp("mup") / "proj")
    (root / "params.yaml").write_text(_params_text(), encoding="utf-8")
    project = Project.at(root)
    for stage in ("sources", "download", "clean"):
        stage_function(stage)(project)
    cgpt.stages.family_tokenize.run(project)
    return root


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _family(**sweep_keys: object) -> FamilyParams:
    return FamilyParams.model_validate({**SWEEP_FAMILY, "sweep": {**SWEEP_FAMILY["sweep"], **sweep_keys}})


# ---------------------------------------------------------------------------------------------- plans


def test_grid_plan_is_the_cross_product_on_the_proxy():
    fam = _family(lr=[0.03, 0.003, 0.01], init_std=[0.04, 0.08], output_mult=[1.0])
    trials = plan_search(fam)
    assert len(trials) == 6
    assert {t.width for t in trials} == {16} and {t.n_head for t in trials} == {2}
    assert [t.lr for t in trials[::2]] == [0.003, 0.01, 0.03]  # lists are sorted by validation
    assert len({t.id for t in trials}) == 6


def test_random_search_is_reproducible_from_its_seed():
    fam = _family(search="random", trials=8, lr=[1e-4, 1e-1], init_std=[0.02, 0.2], output_mult=[0.5, 8.0], seed=7)
    a, b = plan_search(fam), plan_search(fam)
    assert a == b and len(a) == 8 and len({t.id for t in a}) == 8
    for t in a:
        assert 1e-4 <= t.lr <= 1e-1 and 0.02 <= t.init_std <= 0.2 and 0.5 <= t.output_mult <= 8.0
        assert t.lr == float(f"{t.lr:.3g}")  # drawn values are what params.yaml will hold
    other = plan_search(_family(**{**fam.sweep.model_dump(), "seed": 8}))
    assert [t.id for t in other] != [t.id for t in a]


def test_transfer_plan_keeps_depth_and_head_width():
    fam = _family(transfer_widths=[16, 32, 64])
    best = plan_search(fam)[1]
    plan = plan_transfer(fam, best)
    assert [(t.width, t.n_head) for t in plan[::2]] == [(16, 2), (32, 4), (64, 8)]
    assert {t.init_std for t in plan} == {best.init_std} and {t.lr for t in plan} == {0.003, 0.03}
    assert plan[1] == best  # the base width's trial at the chosen lr is the search's own trial
    flat = plan_transfer(fam, best, unscaled=True)  # the comparison: no width scaling, m = 1
    assert [t.width_mult for t in flat] == [1.0] * 6 and [t.width_mult for t in plan[::2]] == [1.0, 2.0, 4.0]
    assert flat[:2] == plan[:2] and flat[2].id == f"unscaled-{plan[2].id}"  # the base width is shared


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        ({"sweep": {"lr": []}}, "family.sweep.lr: expected a non-empty list"),
        (
            {"mup": {"base_width": 64}, "sweep": {"proxy": {"d_model": 32, "n_head": 2}}},
            "must equal mup.base_width = 64",
        ),
        ({"sweep": {"search": "random"}}, "set sweep.trials"),
    ],
)
def test_bad_sweep_params_are_one_line_naming_the_key(family, expected):
    with pytest.raises(ConfigError) as err:
        parse_params({"family": family})
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_one_transfer_width_is_refused():
    with pytest.raises(ConfigError, match=r"family\.sweep\.transfer_widths = \[16\]"):
        plan_search(_family(transfer_widths=[16]))


def test_choose_takes_the_lowest_loss_and_breaks_ties_deterministically():
    fam = _family(lr=[0.001, 0.003, 0.01])
    t = plan_search(fam)
    res = [
        TrialResult(t[2], 3.0, 3.0, 4, False),
        TrialResult(t[1], 3.0, 3.1, 4, False),
        TrialResult(t[0], math.inf, math.inf, 4, True),
    ]
    assert choose(res).trial == t[1]  # tie at 3.0: the smaller lr
    assert choose(list(reversed(res))).trial == t[1]


# ---------------------------------------------------------------------------------------------- params.yaml


def test_write_chosen_params_keeps_comments_and_other_keys(tmp_path):
    src = REPO / "params.yaml"
    path = tmp_path / "params.yaml"
    shutil.copy(src, path)
    original = path.read_text(encoding="utf-8")
    old = load_params(src).family.mup
    before = write_chosen_params(path, {"lr": 0.0123, "init_std": 0.0456, "output_mult": 7.5})
    assert before == {"lr": old.lr, "init_std": old.init_std, "output_mult": old.output_mult}
    new = path.read_text(encoding="utf-8")
    changed = [(a, b) for a, b in zip(original.splitlines(), new.splitlines()) if a != b]
    assert len(original.splitlines()) == len(new.splitlines())
    assert [b.split("#")[0].strip() for _, b in changed] == ["lr: 0.0123", "init_std: 0.0456", "output_mult: 7.5"]
    mup = load_params(path).family.mup
    assert (mup.lr, mup.init_std, mup.output_mult) == (0.0123, 0.0456, 7.5)
    assert load_params(path).model_dump(exclude={"family"}) == load_params(src).model_dump(exclude={"family"})


# ---------------------------------------------------------------------------------------------- real trials


@pytest.mark.slow
def test_flow_runs_trials_as_child_runs_and_writes_the_choice(harness, tiny, tmp_path):
    from mlflow.tracking import MlflowClient

    from flows.mup_sweep import mup_sweep_flow

    root = _copy(tiny, tmp_path / "a")
    out = mup_sweep_flow(project=str(root), runner="thread", workers=2)
    mup = root / "family" / "mup"
    for name in ("sweep.csv", "sweep.md", "chosen.json", "transfer.csv", "transfer.json", "transfer.png"):
        assert (mup / name).is_file(), name
    with open(mup / "sweep.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    best = min(rows, key=lambda r: float(r["val_loss"]))
    chosen = json.loads((mup / "chosen.json").read_text())
    assert chosen["trial"] == best["trial"] and chosen["lr"] == float(best["lr"]) == out["chosen"]["lr"]
    assert math.isclose(chosen["val_loss"], float(best["val_loss"]))

    text = (root / "params.yaml").read_text(encoding="utf-8")
    assert text.startswith(HEADER) and MUP_COMMENT in text
    mup_params = load_params(root / "params.yaml").family.mup
    assert (mup_params.lr, mup_params.init_std, mup_params.output_mult) == (chosen["lr"], 0.08, 1.0)

    with open(mup / "transfer.csv") as fh:
        transfer = list(csv.DictReader(fh))
    assert sorted((int(r["width"]), float(r["lr"])) for r in transfer) == [
        (w, lr) for w in (16, 32) for lr in (0.003, 0.03)
    ]
    assert set(json.loads((mup / "transfer.json").read_text())["widths"]) == {"16", "32"}

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("cgpt")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`cgpt.kind` = 'mup-sweep'")
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(c.info.run_name for c in children) == sorted(
        {r["trial"] for r in rows} | {r["trial"] for r in transfer}
    )  # 2 search + 2 new transfer trials (the base width's are the search's own)
    assert all(c.info.status == "FINISHED" and "sweep/val_loss" in c.data.metrics for c in children)
    by_name = {c.info.run_name: c for c in children}
    assert math.isclose(by_name[chosen["trial"]].data.metrics["sweep/val_loss"], chosen["val_loss"])
    assert parent.data.metrics["chosen/lr"] == chosen["lr"]
    assert "mup/transfer.png" in {a.path for a in client.list_artifacts(parent.info.run_id, "mup")}

    # determinism: the same seed in a fresh copy (no trials yet), trials in processes this time: same bytes
    again = _copy(tiny, tmp_path / "b")
    mup_sweep_flow(project=str(again), write=False, runner="process", workers=2)  # same threads per trial
    for name in ("sweep.csv", "chosen.json", "transfer.csv", "transfer.json", "transfer.svg"):
        assert (again / "family" / "mup" / name).read_bytes() == (mup / name).read_bytes(), name
    assert load_params(again / "params.yaml").family.mup.lr is None  # --no-write


@pytest.mark.slow
def test_a_finished_trial_is_not_trained_again(tiny, tmp_path):
    root = _copy(tiny, tmp_path / "c")
    params = load_params(root / "params.yaml")
    trial = plan_search(params.family)[0]
    first = run_trial(root, params, trial, threads=1)
    assert math.isfinite(first.val_loss) and first.steps == 4
    stamp = (Project(root).sweep_trials / trial.id / "trial.json").stat().st_mtime_ns
    second = run_trial(root, params, trial, threads=1)
    assert second.to_json() == first.to_json()
    assert (Project(root).sweep_trials / trial.id / "trial.json").stat().st_mtime_ns == stamp
