import pytest
import yaml

from cgpt.config import load_params, parse_params
from cgpt.core.errors import ConfigError
from cgpt.presets import get_preset


def _err(raw) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_params(raw)
    msg = str(exc.value)
    assert "\n" not in msg, "errors must be one line"
    return msg


def test_defaults_are_the_cpu_preset():
    p = parse_params({})
    assert p.model.preset == "cpu-small"
    r = p.recipe()
    assert r == get_preset("cpu-small").recipe


def test_unknown_key_names_key_and_value():
    msg = _err({"train": {"max_step": 3}})
    assert "unknown key train.max_step" in msg and "3" in msg


def test_heads_must_divide_width():
    msg = _err({"model": {"n_head": 5}})
    assert msg.startswith("params.yaml: model.n_head = 5: must divide model.d_model = 192"), msg


def test_negative_learning_rate():
    msg = _err({"train": {"lr": -0.1}})
    assert "train.lr = -0.1" in msg and "greater than 0" in msg


def test_unknown_preset_lists_choices():
    msg = _err({"model": {"preset": "gpt5"}})
    assert "model.preset = 'gpt5'" in msg and "cerebras-111m" in msg


def test_seq_len_beyond_positions():
    msg = _err({"train": {"seq_len": 4096}})
    assert "train.seq_len = 4096" in msg and "n_positions = 256" in msg


def test_bad_yaml_names_line(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("train:\n  lr: [1,\n")
    with pytest.raises(ConfigError, match=r"params.yaml:\d+: not valid YAML"):
        load_params(f)


def test_missing_params_file(tmp_path):
    with pytest.raises(ConfigError, match="no such params file"):
        load_params(tmp_path / "nope.yaml")


def test_max_steps_scales_warmup_share_unless_given():
    r = parse_params({"train": {"max_steps": 20}}).recipe()
    assert (r.total_steps, r.warmup_steps) == (20, 2)  # cpu-small warms up 30 of 300 steps
    r = parse_params({"train": {"max_steps": 20, "warmup_steps": 5}}).recipe()
    assert (r.total_steps, r.warmup_steps) == (20, 5)
    msg = _err({"train": {"max_steps": 20, "warmup_steps": 30}})
    assert "train.warmup_steps = 30: must be at most train.max_steps = 20" in msg


def test_family_recipe_kept_and_13b_switch_survives_without_overrides():
    p = parse_params({"model": {"preset": "cerebras-13b"}, "train": {"seq_len": 2048}})
    r = p.recipe()
    assert r.batch_switch is not None and r.eps == 1e-9
    assert p.build_model_config(50257).num_params() == 12_853_386_240


def test_shape_override_sets_ffn_to_4d():
    p = parse_params({"model": {"d_model": 256, "n_head": 4}})
    cfg = p.build_model_config(1000)
    assert cfg.d_ffn == 1024 and cfg.vocab_size == 1000


def test_a_key_that_does_nothing_is_an_error():
    from cgpt.config import parse_params
    from cgpt.core.errors import ConfigError

    with pytest.raises(ConfigError, match="vocab_size = 8192: only used with kind: train"):
        parse_params({"tokenize": {"tokenizer": {"kind": "pretrained", "path": "gpt2/", "vocab_size": 8192}}})
    with pytest.raises(ConfigError, match="only used with kind: pretrained"):
        parse_params({"tokenize": {"tokenizer": {"path": "gpt2/"}}})


def test_check_prints_the_resolved_run(tmp_path):
    import subprocess
    import sys

    (tmp_path / "params.yaml").write_text("model:\n  preset: cerebras-111m\ntrain:\n  max_steps: 100\n")
    out = subprocess.run([sys.executable, "-m", "cgpt.cli", "check"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    assert "10 layers x 768 (12 heads of 64)" in rows["model"]
    assert "100 steps x 120 seqs x 2048 tokens" in rows["schedule"] and "warm-up 17 steps" in rows["schedule"]
    assert set(rows) >= {"run", "optimizer", "data", "tokenizer", "training", "evaluate", "export", "tracking"}
    # what "auto" will be on this machine (what the MLflow run's train.device/precision params will say)
    assert "device auto (here: " in rows["training"] and "precision auto (here: " in rows["training"]


# ---- set_params: dvc exp run -S overrides ------------------------------------------------------

RAW = {
    "download": {"sources": [{"name": "templates", "kind": "local", "paths": ["corpus/t.jsonl"]}]},
    "tokenize": {"split": {"val": 0.1, "test": 0.1}},
    "train": {"run_name": "default", "max_steps": 60, "warmup_steps": None},
    "evaluate": {"splits": ["val", "test"]},
}

SAME_AS_DVC = [
    "train.max_steps=20",
    "train.lr=1e-3",  # absent from the file: cgpt hands it to DVC as ++train.lr=1e-3
    "++train.lr=0.001",
    "+train.lr=0.001",
    "+train.warmup_steps=5",  # present but null: Hydra lets + add it
    "~train.max_steps",
    "params.yaml:train.max_steps=null",
    "train={max_steps: 5, seed: 7}",  # mappings merge
    "download.sources.0.name=other",
    "tokenize.split.val=0.2",
    "train.run_name=exp-lr",
    "export.sample_prompt='ROMEO:'",
    "clean.dedup.exact=true",
    "evaluate.splits=[val]",
]


@pytest.mark.parametrize("override", SAME_AS_DVC)
def test_overrides_give_what_dvc_writes(override, tmp_path):
    """cgpt validates exactly the mapping `dvc exp run -S` will write into params.yaml."""
    from dvc.utils.hydra import apply_overrides as dvc_apply  # what `dvc exp run -S` calls

    from cgpt.config import apply_overrides, dvc_overrides

    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(RAW, sort_keys=False))
    dvc_apply(f, dvc_overrides([override]))
    assert apply_overrides(RAW, [override]) == yaml.safe_load(f.read_text())


def test_overrides_leave_the_input_alone():
    from cgpt.config import apply_overrides

    raw = {"train": {"max_steps": 60}}
    assert apply_overrides(raw, ["train.max_steps=5", "+train.lr=0.1"]) == {"train": {"max_steps": 5, "lr": 0.1}}
    assert raw == {"train": {"max_steps": 60}}


def test_dvc_overrides_let_plain_keys_be_added():
    from cgpt.config import dvc_overrides

    assert dvc_overrides(["train.lr=0.1", "params.yaml:train.seed=3", "+a.b=1", "++c=2", "~d"]) == [
        "++train.lr=0.1",
        "++train.seed=3",
        "+a.b=1",
        "++c=2",
        "~d",
    ]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.lr==", "is not key=value, +key=value or ~key"),
        ("train.lr", "is not key=value, +key=value or ~key"),
        ("train.lr=0.1,0.2", "is a sweep; give one value"),
        ("other.yaml:train.lr=0.1", "cgpt's parameters live in params.yaml, not other.yaml"),
        ("~train.lr", "train.lr is not set in params.yaml"),
        ("~train.max_steps=5", "train.max_steps is 60, not 5"),
        ("+train.max_steps=5", "train.max_steps is already set (to 60); drop the +"),
        ("=3", "expected a dotted params key"),
    ],
)
def test_bad_overrides_give_one_line(override, expected):
    from cgpt.config import apply_overrides

    with pytest.raises(ConfigError) as exc:
        apply_overrides(RAW, [override])
    assert expected in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_load_params_validates_the_overridden_mapping(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("train:\n  max_steps: 60\n")
    p = load_params(f, ["train.lr=1e-3", "train.max_steps=20"])
    assert p.train.lr == 0.001 and p.train.max_steps == 20
    with pytest.raises(ConfigError) as exc:
        load_params(f, ["train.lrr=0.1"])
    assert str(exc.value).startswith(f"{f} with set_params: unknown key train.lrr (value 0.1)"), str(exc.value)
    with pytest.raises(ConfigError, match=r"with set_params: train.lr = -0.1: Input should be greater than 0"):
        load_params(f, ["train.lr=-0.1"])
