"""The `cgpt` command as a user runs it (subprocesses, real files)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cgpt.data.tokenize.tokenizer import save_tokenizer, train_tokenizer
from cgpt.export.hf import export_hf
from cgpt.model.gpt import GPT
from cgpt.presets import ModelConfig


def cgpt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cgpt.cli", *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    tok = train_tokenizer(["to be or not to be, that is the question. " * 50] * 4, vocab_size=300, min_frequency=1)
    (root / "tokens").mkdir()
    tok_json = save_tokenizer(tok, root / "tokens")
    torch.manual_seed(0)
    cfg = ModelConfig(n_layer=1, d_model=32, n_head=2, d_ffn=128, vocab_size=tok.get_vocab_size(), n_positions=64)
    return export_hf(
        GPT(cfg).state_dict(), cfg, root / "hf", tokenizer_json=tok_json, eos_token_id=tok.token_to_id("<|endoftext|>")
    )


def test_check_ok_and_one_line_error(tmp_path):
    (tmp_path / "params.yaml").write_text("model:\n  preset: cerebras-111m\ntrain:\n  run_name: x\n")
    ok = cgpt("check", cwd=tmp_path)
    assert ok.returncode == 0 and "cerebras-111m" in ok.stdout and "9,037 steps x 120 seqs x 2048 tokens" in ok.stdout
    (tmp_path / "params.yaml").write_text("train:\n  lr: -1\n")
    bad = cgpt("check", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["error: params.yaml: train.lr = -1: Input should be greater than 0"]


def test_presets_prints_the_family(tmp_path):
    out = cgpt("presets", cwd=tmp_path)
    assert out.returncode == 0
    assert "111,050,496" in out.stdout and "12,853,386,240" in out.stdout and "cpu-small" in out.stdout


def test_generate_with_an_export(hf_dir, tmp_path):
    out = cgpt("generate", "--model", str(hf_dir), "--max-new-tokens", "5", "to be", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("to be")


def test_generate_names_a_wrong_folder(tmp_path):
    out = cgpt("generate", "--model", str(tmp_path), "hi", cwd=tmp_path)
    assert out.returncode == 2 and "not a Hugging Face model folder" in out.stderr


def test_import_hf_writes_a_resumable_checkpoint(hf_dir, tmp_path):
    out = cgpt("import-hf", str(hf_dir), "--out", str(tmp_path / "ckpt"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    from cgpt.train.checkpoint import list_checkpoints, load_checkpoint

    ck = load_checkpoint(list_checkpoints(tmp_path / "ckpt")[-1])
    assert ck.step == 0 and ck.optimizer_state is None and "imported_from" in ck.state


def test_stage_outside_a_project_is_a_clear_error(tmp_path):
    out = cgpt("train", cwd=tmp_path)
    assert out.returncode == 2 and "no params.yaml here; run inside a cgpt project" in out.stderr
