"""The train stage's run identity: what determines the weights, and nothing else."""

import json

from cgpt.stages.train import LOOP_KEYS, StageParams, config_key, run_config
from cgpt.train.params import TrainParams
from cgpt.train.setup import setup_from_params


def tokens(tmp_path):
    index = {"format_version": 1, "vocab_size": 64, "eos_token_id": 63, "dtype": "uint16", "tokenizer_sha256": "t",
             "splits": {}}  # fmt: skip
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "index.json").write_text(json.dumps(index))
    return tmp_path


def key_of(tmp_path, **train):
    params = StageParams.model_validate({"model": {"preset": "cpu-tiny"}, "train": {"max_steps": 10, **train}})
    setup = setup_from_params(params, tokens(tmp_path), "cpu")
    return config_key(run_config(params, setup, "digest"))


def test_loop_settings_do_not_change_the_run(tmp_path):
    base = key_of(tmp_path)
    for change in ({"checkpoint_interval": 7}, {"eval_interval": 3}, {"log_interval": 5}, {"keep_checkpoints": 9},
                   {"eval_tokens": 128}, {"threads": 1}, {"micro_batch_size": 1}):  # fmt: skip
        assert key_of(tmp_path, **change) == base, change


def test_what_determines_the_weights_does(tmp_path):
    base = key_of(tmp_path)
    for change in ({"seed": 2}, {"max_steps": 11}, {"lr": 1e-3}, {"precision": "bf16"}):
        assert key_of(tmp_path, **change) != base, change


def test_every_train_key_is_either_identity_or_loop():
    identity = {"seed", "optimizer", "precision", "max_steps", "batch_size", "seq_len", "lr", "end_lr_ratio",
                "warmup_steps", "decay", "weight_decay", "grad_clip", "adam_eps"}  # fmt: skip
    assert set(TrainParams.model_fields) == identity | LOOP_KEYS
    assert not identity & LOOP_KEYS
