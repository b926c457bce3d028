import torch

from cgpt.model.gpt import GPT
from cgpt.presets import ModelConfig
from cgpt.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from cgpt.train.optim import build_optimizer

CFG = ModelConfig(n_layer=1, d_model=32, n_head=2, d_ffn=64, vocab_size=40, n_positions=16)


def _model_and_opt():
    torch.manual_seed(0)
    model = GPT(CFG)
    opt = build_optimizer(model, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    x = torch.randint(0, 40, (2, 8))
    model(x, x)[1].backward()
    opt.step()
    return model, opt


def test_round_trip_restores_model_and_optimizer(tmp_path):
    model, opt = _model_and_opt()
    path = save_checkpoint(tmp_path, 7, model.state_dict(), CFG, optimizer_state=opt.state_dict(), extra={"seed": 3})
    ck = load_checkpoint(path)
    assert ck.step == 7 and ck.state["seed"] == 3 and ck.model_config == CFG
    for k, v in model.state_dict().items():
        assert torch.equal(ck.model_state[k], v)
    fresh = GPT(CFG)
    opt2 = build_optimizer(fresh, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    opt2.load_state_dict(ck.optimizer_state)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(s1[i]["exp_avg"], s2[i]["exp_avg"]) for i in s1)


def test_unfinished_tmp_is_ignored_and_old_ones_pruned(tmp_path):
    model, opt = _model_and_opt()
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model.state_dict(), CFG, keep_last=2)
    (tmp_path / "step-00000009.tmp").mkdir()  # a write killed midway
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000002", "step-00000003"]
    assert list_checkpoints(tmp_path)[-1].name == "step-00000003"


def test_optimizer_file_loads_with_weights_only(tmp_path):
    model, opt = _model_and_opt()
    path = save_checkpoint(tmp_path, 1, model.state_dict(), CFG, optimizer_state=opt.state_dict())
    torch.load(path / "optimizer.pt", weights_only=True)  # raises if anything beyond tensors/containers
