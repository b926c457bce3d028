"""The family's members (cgpt.family.members) and the scaling stage's outputs (cgpt.family.law),
on params files and synthetic point files: no training, no DVC."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from paths import REPO

from cgpt.config import Params, load_params
from cgpt.core.errors import ConfigError
from cgpt.core.project import Project
from cgpt.family.law import compute, write_empty, write_outputs
from cgpt.family.members import FamilyMember, family_key, family_members, member_params
from cgpt.family.points import point_path
from cgpt.stages.scaling import run as run_scaling

VOCAB = 512


def params_with(tmp_path: Path, family: dict[str, Any], name: str = "params.yaml") -> Params:
    """The repo's params.yaml with ``family`` keys replaced (tracking off), loaded and validated."""
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    base["tracking"] = {"enabled": False}
    fam = copy.deepcopy(base["family"])
    fam.update(family)
    base["family"] = fam
    path = tmp_path / name
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return load_params(path)


#: the default corpus's training split in the family's byte tokens (Shakespeare: ~5.1 M bytes)
CORPUS_TRAIN_BYTES = 5_000_000


def test_the_documented_family_is_designed_to_scale():
    """docs/family.md's design: its own byte tokenizer; 5+ members over 100x in compute at 20 tokens
    per parameter; the token embedding under a third of N for all but the smallest; at most ~2 epochs."""
    params = load_params(REPO / "params.yaml")
    assert params.family.tokenizer is not None and params.family.tokenizer.kind == "bytes"
    assert params.tokenize.tokenizer.kind == "train"  # the single model keeps its BPE
    members = family_members(params, 257)
    assert len(members) >= 5
    assert members[-1].compute >= 100 * members[0].compute, [m.compute for m in members]
    for m in members:
        assert m.tokens / m.n_params == pytest.approx(params.family.tokens_per_param, rel=0.01)
        assert m.tokens <= 2 * CORPUS_TRAIN_BYTES, (m.name, m.tokens)
    for m in members[1:]:
        assert 257 * m.model.d_model < m.n_params / 3, m.name


def test_max_steps_come_from_tokens_per_param(tmp_path):
    family = {
        "tokens_per_param": 20,
        "defaults": {"preset": "cpu-small", "n_positions": 64, "seq_len": 32, "batch_size": 4},
        "members": {"m": {"n_layer": 1, "d_model": 8, "n_head": 2}},
    }
    params = params_with(tmp_path, family)
    member = family_members(params, VOCAB)[0]
    n = member.model.num_params()
    assert member.params.train.max_steps == round(20 * n / (4 * 32))
    assert member.steps == member.params.train.max_steps
    assert member.tokens == member.steps * 4 * 32
    assert member.params.train.run_name == "m"  # outputs in runs/<name>/
    # twice the tokens per parameter, twice the steps
    double = params_with(tmp_path, {**family, "tokens_per_param": 40}, "double.yaml")
    assert member_params(double, "m", VOCAB).train.max_steps == round(40 * n / (4 * 32))


def test_members_train_smallest_first_whatever_the_order_in_params(tmp_path):
    params = params_with(
        tmp_path,
        {
            "members": {
                "big": {"n_layer": 2, "d_model": 32, "n_head": 2},
                "small": {"n_layer": 1, "d_model": 8, "n_head": 2},
                "mid": {"n_layer": 2, "d_model": 16, "n_head": 2},
            }
        },
    )
    members = family_members(params, VOCAB)
    assert [m.name for m in members] == ["small", "mid", "big"]
    assert all(isinstance(m, FamilyMember) for m in members)
    sizes = [m.n_params for m in members]
    assert sizes == sorted(sizes) and [m.compute for m in members] == sorted(m.compute for m in members)


def test_a_member_key_overrides_the_defaults_and_the_project_loop_keys_pass_through(tmp_path):
    params = params_with(
        tmp_path,
        {"defaults": {"lr": 0.004, "seq_len": 32, "n_positions": 64}, "members": {"a": {"d_model": 8, "lr": 0.02}}},
    )
    mp = member_params(params, "a", VOCAB)
    assert mp.recipe().peak_lr == 0.02 and mp.recipe().seq_len == 32
    assert mp.train.seed == params.train.seed and mp.train.precision == params.train.precision
    assert mp.family.members == {}  # a member's own params hold no family


@pytest.mark.parametrize(
    "member, expected",
    [
        ({"d_model": 30, "n_head": 4}, "family.members.b: n_head = 4: must divide model.d_model = 30"),
        ({"d_model": 32, "n_haed": 4}, "unknown key family.members.b.n_haed"),
        ({"d_model": -3}, "family.members.b.d_model = -3"),
        ({"lr": "fast"}, "family.members.b.lr = 'fast'"),
        ({"seq_len": 512}, "family.members.b: seq_len = 512: must be at most n_positions = 128"),
    ],
)
def test_a_bad_member_is_one_line_naming_its_key(tmp_path, member, expected):
    with pytest.raises(ConfigError) as err:
        params = params_with(tmp_path, {"members": {"a": {"d_model": 8, "n_head": 2}, "b": member}})
        family_members(params, VOCAB)
    msg = str(err.value)
    assert expected in msg and "\n" not in msg, msg


def test_the_family_key_names_what_trains_not_how_it_is_fitted(tmp_path):
    members = {"a": {"d_model": 8, "n_head": 2}, "b": {"d_model": 16, "n_head": 2}}
    one = params_with(tmp_path, {"members": members}, "one.yaml")
    refit = params_with(tmp_path, {"members": members, "fit": {"metric": "test", "level": 0.9}}, "refit.yaml")
    other = params_with(tmp_path, {"members": {**members, "b": {"d_model": 24, "n_head": 2}}}, "other.yaml")
    assert family_key(one) == family_key(refit) != family_key(other)


# --- the scaling stage's outputs, on synthetic points of a known law ------------------------------

A, B, C0 = 40.0, -0.08, 1.5  # L(C) = A * C^B + C0


def write_points(root: Path, params: Params, noise: dict[str, float] | None = None) -> list[str]:
    """Point files as member-evaluate writes them, the loss exactly on the law (plus ``noise``)."""
    names = []
    for m in family_members(params, VOCAB):
        loss = A * m.compute**B + C0 + (noise or {}).get(m.name, 0.0)
        point = {**m.describe(), "val_xent": loss, "test_xent": loss + 0.01, "accuracy": {}}
        path = point_path(root, m.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(point))
        names.append(m.name)
    return names


FIVE = {f"d{d}": {"n_layer": 2, "d_model": d, "n_head": 2} for d in (8, 12, 16, 24, 32)}


def test_scaling_recovers_the_law_and_writes_fit_table_plots(tmp_path):
    params = params_with(tmp_path, {"members": FIVE, "defaults": {"seq_len": 32, "n_positions": 64}})
    names = write_points(tmp_path, params)
    result = compute(tmp_path, params, names)
    assert result.fit.form == "saturating"  # form: auto, 5 points
    assert result.fit.b == pytest.approx(B, abs=1e-3) and result.fit.c == pytest.approx(C0, abs=1e-2)
    assert not result.flagged
    write_outputs(tmp_path, params, result)
    out = Project(tmp_path).family_scaling
    for name in ("fit.json", "predictions.json", "table.csv", "table.md", "loss_vs_compute.png", "loss_vs_compute.svg"):
        assert (out / name).is_file(), name
    fit = json.loads((out / "fit.json").read_text())
    assert fit["members"] == names and fit["metric"] == "val_xent" and "6N + 12" in fit["flops_convention"]
    table = (out / "table.csv").read_text().splitlines()
    assert table[0].startswith("member,") and len(table) == 1 + len(names)
    for stem in ("points", "law", "forecasts"):
        assert (Project(tmp_path).family_plots / f"{stem}.csv").read_text().startswith(("log10_flops", "member"))
    metrics = json.loads((Project(tmp_path).scaling_metrics).read_text())
    assert metrics["n_points"] == 5 and metrics["flagged"] == 0
    # same points, same bytes
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    write_outputs(tmp_path, params, compute(tmp_path, params, names))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_member_above_its_smaller_sibling_is_flagged(tmp_path):
    params = params_with(tmp_path, {"members": FIVE, "defaults": {"seq_len": 32, "n_positions": 64}})
    names = write_points(tmp_path, params, noise={"d32": 2.0})
    result = compute(tmp_path, params, names)
    flagged = {o.name: o.flags for o in result.flagged}
    assert "d32" in flagged and "worse_than_smaller" in flagged["d32"], flagged


class _Project:
    """The bits of cgpt.core.project.Project the scaling stage reads."""

    def __init__(self, root: Path, params: Params) -> None:
        self.root, self._params, self.tokens = root, params, root / "data" / "tokens"
        self.family_tokens = root / "family" / "tokens"

    def load(self, view: type) -> Params:
        return self._params


@pytest.mark.parametrize("members", [{}, {"only": {"d_model": 8, "n_head": 2}}])
def test_no_family_is_a_note_not_a_failure(tmp_path, members):
    """A single-model project (members: {}) runs the scaling stage too, in a bare `dvc repro`: it succeeds."""
    params = params_with(tmp_path, {"members": members})
    assert run_scaling(_Project(tmp_path, params)) == {"fit": None, "flagged": []}
    fit = json.loads((Project(tmp_path).family_scaling / "fit.json").read_text())
    assert fit["fit"] is None and "no scaling law" in fit["note"] and fit["members"] == len(members)
    assert (Project(tmp_path).family_plots).is_dir() and not any((Project(tmp_path).family_plots).iterdir())
    write_empty(tmp_path, len(members))  # idempotent
    assert json.loads((Project(tmp_path).scaling_metrics).read_text()) == {"n_points": len(members)}


def test_the_cerebras_family_example_is_the_cards_seven_at_20_tokens_per_parameter():
    params = load_params(REPO / "examples" / "cerebras-family" / "params.yaml")
    members = family_members(params, 50257)  # GPT-2's vocabulary
    assert [m.name for m in members] == [
        f"cerebras-{s}"
        for s in ("111m", "256m", "590m", "1p3b", "2p7b", "6p7b", "13b")  # no dots: DVC keys
    ]
    assert members[-1].n_params == 12_853_386_240
    assert [m.recipe.batch_size for m in members] == [120, 264, 264, 528, 528, 1040, 720]
    for m in members:
        assert m.tokens / m.n_params == pytest.approx(20, rel=1e-3)
    assert params.family.fit.metric == "test"  # the card's law: Pile test cross-entropy


def test_a_member_name_with_a_dot_is_refused_in_one_line(tmp_path):
    """DVC reads family.members.<name> as a params key and splits it at dots: `cerebras-1.3b` would be
    'missing' for DVC; cgpt refuses it first, saying why."""
    with pytest.raises(ConfigError) as err:
        params_with(tmp_path, {"members": {"cerebras-1.3b": {"preset": "cerebras-1.3b"}}})
    assert "no '.'" in str(err.value) and "\n" not in str(err.value)


def test_a_diverged_member_is_flagged_and_left_out_of_the_law(tmp_path):
    """A member whose training stopped at a non-finite loss (train.on_divergence: stop, the members'
    default) keeps its numbers in its point, is flagged, and neither later forecasts nor the final
    law use it, so the family's fit still recovers the law."""
    params = params_with(tmp_path, {"members": FIVE, "defaults": {"seq_len": 32, "n_positions": 64}})
    names = write_points(tmp_path, params, noise={"d16": 3.0})
    path = point_path(tmp_path, "d16")
    point = json.loads(path.read_text())
    path.write_text(json.dumps({**point, "diverged_at_step": 7}))
    result = compute(tmp_path, params, names)
    flags = {o.name: o.flags for o in result.outcomes}
    assert "diverged" in flags["d16"] and not flags["d24"] and not flags["d32"], flags
    assert result.fit.n_points == 4 and "d16" not in (result.fit.names or [])
    d24 = next(o for o in result.outcomes if o.name == "d24")
    assert d24.forecast.from_members == ["d8", "d12"] and abs(d24.check.error) < 0.05  # not pulled up by d16
    row = result.table.set_index("member").loc["d16"]
    assert row["val_xent"] == pytest.approx(point["val_xent"]) and row["flags"] == "diverged, worse_than_smaller"


def test_members_get_on_divergence_stop_the_single_model_keeps_error(tmp_path):
    params = params_with(tmp_path, {"members": FIVE})
    assert params.train.on_divergence == "error"
    assert member_params(params, "d8", VOCAB).train.on_divergence == "stop"


def test_a_mistake_in_family_tokenizer_is_named_as_such(tmp_path):
    from cgpt.stages.family_tokenize import StageParams

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    assert Project.at(tmp_path).load(StageParams).tokenize.tokenizer.kind == "bytes"  # the family's own
    raw["family"]["tokenizer"] = {"kind": "bytes", "vocab_size": 300}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"family\.tokenizer\.vocab_size = 300: only used with kind: train"):
        Project.at(tmp_path).load(StageParams)
