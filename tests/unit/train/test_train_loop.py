"""The training loop on a real token directory: learning, exact resume, superseded checkpoints."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from cgpt.data.tokens import HEADER_BYTES, pack_header
from cgpt.presets import ModelConfig, TrainRecipe
from cgpt.train.checkpoint import list_checkpoints
from cgpt.train.loop import train
from cgpt.train.params import TrainParams
from cgpt.train.setup import RunSetup

VOCAB = 32


def write_tokens(root: Path, splits: dict[str, np.ndarray]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    index = {
        "format_version": 1,
        "vocab_size": VOCAB,
        "eos_token_id": VOCAB - 1,
        "dtype": "uint16",
        "tokenizer_sha256": "x",
        "splits": {},
    }
    for split, arr in splits.items():
        path = root / f"{split}-00000.bin"
        path.write_bytes(pack_header(2, len(arr)) + arr.astype("<u2").tobytes())
        assert path.stat().st_size == HEADER_BYTES + 2 * len(arr)
        index["splits"][split] = {
            "tokens": len(arr),
            "documents": 1,
            "shards": [{"path": path.name, "tokens": len(arr)}],
        }
    (root / "index.json").write_text(json.dumps(index))
    return root


def pattern(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.permutation(VOCAB - 1)  # a fixed cycle: next token is a deterministic function of the current one
    return np.tile(base, n // len(base) + 1)[:n]


def setup(steps: int = 12, **kw) -> RunSetup:
    cfg = ModelConfig(n_layer=1, d_model=32, n_head=2, d_ffn=64, vocab_size=VOCAB, n_positions=32)
    recipe = TrainRecipe(
        peak_lr=1e-2, end_lr=1e-3, batch_size=4, warmup_steps=2, decay="linear", decay_steps=steps - 2, seq_len=16
    )
    loop = TrainParams(
        seed=5, log_interval=3, eval_interval=6, eval_tokens=256, checkpoint_interval=6, keep_checkpoints=5
    )
    if "seed" in kw:
        loop = loop.model_copy(update={"seed": kw.pop("seed")})
    return replace(RunSetup(cfg, recipe, train=loop, tokenizer_sha256="x"), **kw)


def test_loss_falls_on_learnable_data(tmp_path):
    tokens = write_tokens(tmp_path / "tok", {"train": pattern(20_000, 0), "val": pattern(2_000, 0)})
    out = train(setup(steps=60), tokens, tmp_path / "run", progress=False)
    losses = [r["loss"] for r in out.history if "loss" in r]
    assert losses[-1] < 0.5 * losses[0]
    assert out.summary.val_loss < np.log(VOCAB) / 2


def test_resume_is_exact(tmp_path):
    tokens = write_tokens(tmp_path / "tok", {"train": pattern(5_000, 1), "val": pattern(500, 1)})
    full = train(setup(), tokens, tmp_path / "a", progress=False)
    train(setup(), tokens, tmp_path / "b", progress=False)
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "step-00000012")  # as if killed after step 6
    resumed = train(setup(), tokens, tmp_path / "b", progress=False)
    assert resumed.resumed_from_step == 6
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert [r["step"] for r in full.history if "loss" in r] == [3, 6, 9, 12]


def test_a_stop_between_logged_steps_resumes_to_the_same_curve(tmp_path):
    """Ctrl-C / SIGTERM (or an orphaned stage stopping itself) checkpoints at any step, e.g. 4 of a
    log interval of 3: the loss of step 4 is in the checkpoint, so the row at step 6 is the mean of
    steps 4-6 as in an uninterrupted run (not of 5-6 alone), byte for byte."""
    tokens = write_tokens(tmp_path / "tok", {"train": pattern(5_000, 1), "val": pattern(500, 1)})
    full = train(setup(), tokens, tmp_path / "a", progress=False)
    steps = iter(range(1, 100))
    with pytest.raises(KeyboardInterrupt, match="stopped after step 4"):
        train(setup(), tokens, tmp_path / "b", progress=False, stop_requested=lambda: next(steps) >= 4)
    assert [c.name for c in list_checkpoints(tmp_path / "b" / "checkpoints")] == ["step-00000004"]
    resumed = train(setup(), tokens, tmp_path / "b", progress=False)
    assert resumed.resumed_from_step == 4
    assert resumed.history == full.history
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_finished_run_is_not_retrained(tmp_path):
    tokens = write_tokens(tmp_path / "tok", {"train": pattern(5_000, 2), "val": pattern(500, 2)})
    train(setup(), tokens, tmp_path / "a", progress=False)
    again = train(setup(), tokens, tmp_path / "a", progress=False)
    assert again.resumed_from_step == 12 and np.isfinite(again.summary.val_loss)


def test_checkpoints_of_another_model_are_set_aside_not_deleted(tmp_path):
    tokens = write_tokens(tmp_path / "tok", {"train": pattern(5_000, 3), "val": pattern(500, 3)})
    train(setup(), tokens, tmp_path / "a", progress=False)
    other = setup(seed=99)
    out = train(other, tokens, tmp_path / "a", progress=False)
    assert out.resumed_from_step == 0
    superseded = list((tmp_path / "a" / "checkpoints").glob("superseded-*"))
    assert len(superseded) == 1 and list_checkpoints(superseded[0])


def test_returning_to_an_earlier_configuration_takes_its_checkpoints_back(tmp_path):
    """Change the data, change it back: the first data's checkpoints come back, nothing is retrained."""
    tokens = write_tokens(tmp_path / "tok", {"train": pattern(5_000, 5), "val": pattern(500, 5)})
    first = train(setup(tokens_digest="data-a"), tokens, tmp_path / "a", progress=False)
    other = train(setup(tokens_digest="data-b"), tokens, tmp_path / "a", progress=False)  # other data: starts over
    assert other.resumed_from_step == 0
    back = train(setup(tokens_digest="data-a"), tokens, tmp_path / "a", progress=False)
    assert back.resumed_from_step == 12  # complete: no step trained again
    for k, v in first.model.state_dict().items():
        assert torch.equal(v, back.model.state_dict()[k]), k
    ckpt = tmp_path / "a" / "checkpoints"
    # data-b's checkpoints are set aside in turn; data-a's folder is gone, its checkpoints back in place
    (aside,) = ckpt.glob("superseded-*")
    assert list_checkpoints(aside) and list_checkpoints(ckpt)[-1].name == "step-00000012"


def test_a_checkpoint_without_the_data_version_still_resumes(tmp_path):
    """Checkpoints of an older cgpt did not record the token data's version: they resume as before."""
    from cgpt.train.resume import matches

    fp = setup(tokens_digest="d").fingerprint()
    older = {k: v for k, v in fp.items() if k != "tokens_digest"}
    assert matches(older, fp) and matches(fp, fp)
    assert not matches({**fp, "tokens_digest": "other"}, fp)


def test_continues_from_an_imported_hugging_face_folder(tmp_path):
    from cgpt.export.hf import export_hf, import_hf_to_checkpoint
    from cgpt.model.gpt import GPT

    tokens = write_tokens(tmp_path / "tok", {"train": pattern(5_000, 4), "val": pattern(500, 4)})
    base = setup(steps=2)
    torch.manual_seed(123)
    source = GPT(replace(base.model_config, init_std=0.05))  # different init settings, same architecture
    export_hf(source.state_dict(), source.config, tmp_path / "hf", tokenizer_json=None, eos_token_id=VOCAB - 1)
    import_hf_to_checkpoint(tmp_path / "hf", tmp_path / "run" / "checkpoints")
    frozen = replace(
        base, recipe=replace(base.recipe, peak_lr=0.0, end_lr=0.0)
    )  # lr 0: weights must stay the imported ones
    out = train(frozen, tokens, tmp_path / "run", progress=False)
    assert out.resumed_from_step == 0
    for k, v in source.state_dict().items():
        assert torch.allclose(out.model.state_dict()[k], v, atol=1e-6), k


def test_imported_model_of_another_shape_is_a_clear_error(tmp_path):
    import pytest

    from cgpt.core.errors import CgptError
    from cgpt.export.hf import export_hf, import_hf_to_checkpoint
    from cgpt.model.gpt import GPT

    tokens = write_tokens(tmp_path / "tok", {"train": pattern(5_000, 5), "val": pattern(500, 5)})
    base = setup(steps=2)
    other = GPT(replace(base.model_config, n_layer=2))
    export_hf(other.state_dict(), other.config, tmp_path / "hf", tokenizer_json=None, eos_token_id=VOCAB - 1)
    import_hf_to_checkpoint(tmp_path / "hf", tmp_path / "run" / "checkpoints")
    with pytest.raises(CgptError, match="does not match the configured model"):
        train(base, tokens, tmp_path / "run", progress=False)


def _diverging_at(monkeypatch, step: int) -> dict[str, int]:
    """Make the training loss non-finite from optimizer step ``step`` on (the loop's own train_step
    runs first, so everything before is the real run); set the returned counter's ``n`` to 0 before
    each run."""
    import cgpt.train.loop as loop

    real, calls = loop.train_step, {"n": 0}

    def flaky(*args, **kwargs):
        loss, grad_norm = real(*args, **kwargs)
        calls["n"] += 1
        return (torch.tensor(float("nan")) if calls["n"] >= step else loss), grad_norm

    monkeypatch.setattr(loop, "train_step", flaky)
    return calls


def test_on_divergence_stop_ends_the_run_with_the_newest_checkpoint(tmp_path, monkeypatch):
    """A family member's divergence (train.on_divergence: stop): no exception, the weights of the
    newest checkpoint (step 6), the step it diverged at recorded in the metrics file."""
    from cgpt.core.errors import TrainingError

    tokens = write_tokens(tmp_path / "tok", {"train": pattern(5_000, 3), "val": pattern(500, 3)})
    calls = _diverging_at(monkeypatch, 8)
    base = setup()
    with pytest.raises(TrainingError, match="training loss became nan at step 8"):
        train(base, tokens, tmp_path / "error", progress=False)  # the default: the stage fails
    calls["n"] = 0
    stopping = replace(base, train=base.train.model_copy(update={"on_divergence": "stop"}))
    out = train(stopping, tokens, tmp_path / "stop", progress=False)
    assert out.summary.diverged_at_step == 8 and out.summary.steps == 6
    # its losses are the kept weights' (the last logged at or before step 6)
    kept = [r for r in out.history if r["step"] <= 6]
    assert out.summary.train_loss == [r["loss"] for r in kept if "loss" in r][-1]
    assert out.summary.metrics_file()["diverged_at_step"] == 8
    calls["n"] = -100  # an undisturbed run of the same setup, for its step-6 checkpoint
    train(setup(steps=12), tokens, tmp_path / "ref", progress=False)
    from safetensors.torch import load_file

    six = load_file(tmp_path / "ref" / "checkpoints" / "step-00000006" / "model.safetensors")
    for k, v in out.model.state_dict().items():
        assert torch.isfinite(v).all(), k
        assert torch.equal(v, six[k]), k


def test_on_divergence_stop_before_any_checkpoint_keeps_the_initialization(tmp_path, monkeypatch):
    tokens = write_tokens(tmp_path / "tok", {"train": pattern(5_000, 4), "val": pattern(500, 4)})
    _diverging_at(monkeypatch, 2)
    base = setup()
    stopping = replace(base, train=base.train.model_copy(update={"on_divergence": "stop"}))
    out = train(stopping, tokens, tmp_path / "r", progress=False)
    assert out.summary.diverged_at_step == 2 and out.summary.steps == 0 and out.summary.tokens_seen == 0
    assert all(torch.isfinite(v).all() for v in out.model.state_dict().values())
