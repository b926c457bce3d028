import math

import pytest
import torch

from cgpt.model.gpt import GPT
from cgpt.presets import ModelConfig
from cgpt.train.optim import CerebrasAdamW, build_optimizer, param_groups


def _tiny(parameterization="sp", d=64):
    cfg = ModelConfig(
        n_layer=2, d_model=d, n_head=2, d_ffn=4 * d, vocab_size=50, n_positions=16, parameterization=parameterization
    )
    if parameterization == "mup":
        cfg = ModelConfig(**{**cfg.__dict__, "init_std": 0.08, "embeddings_scale": 10.0, "mup_base_width": 32})
    return GPT(cfg)


def test_groups_exclude_bias_and_layernorm_from_decay():
    model = _tiny()
    groups = {g["name"]: g for g in param_groups(model, 0.1)}
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = {names[id(p)] for p in groups["no_decay"]["params"]}
    decay = {names[id(p)] for p in groups["decay"]["params"]}
    assert groups["no_decay"]["weight_decay"] == 0.0 and groups["decay"]["weight_decay"] == 0.1
    assert all("bias" in n or "ln_" in n for n in no_decay)
    assert {"wte.weight", "wpe.weight", "h.0.attn.c_attn.weight"} <= decay
    assert len(no_decay) + len(decay) == len(names)


def test_mup_hidden_matrices_get_lr_over_m():
    model = _tiny("mup", d=64)  # m = 64 / 32 = 2
    groups = {g["name"]: g for g in param_groups(model, 0.1)}
    names = {id(p): n for n, p in model.named_parameters()}
    hidden = {names[id(p)] for p in groups["hidden"]["params"]}
    assert groups["hidden"]["lr_mult"] == pytest.approx(0.5)
    assert hidden == {
        f"h.{i}.{k}.weight" for i in range(2) for k in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    }
    assert {names[id(p)] for p in groups["decay"]["params"]} == {"wte.weight", "wpe.weight"}
    opt = build_optimizer(model, lr=6e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == pytest.approx({"decay": 6e-3, "hidden": 3e-3, "no_decay": 6e-3})


def _reference_step(p, g, m, v, t, lr, b1, b2, eps, wd):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    update = m / (v.sqrt() + eps) * math.sqrt(1 - b2**t) / (1 - b1**t)
    return p - lr * (update + wd * p), m, v


def test_cerebras_adamw_matches_model_zoo_formula():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5, 3, dtype=torch.float64))
    ref, m, v = p.detach().clone(), torch.zeros_like(p), torch.zeros_like(p)
    opt = CerebrasAdamW([p], lr=1e-2, betas=(0.9, 0.95), eps=1e-3, weight_decay=0.1)
    for t in range(1, 6):
        g = torch.randn_like(p)
        p.grad = g.clone()
        opt.step()
        ref, m, v = _reference_step(ref, g, m, v, t, 1e-2, 0.9, 0.95, 1e-3, 0.1)
        assert torch.allclose(p.detach(), ref, atol=1e-12)


def test_cerebras_adamw_differs_from_torch_only_by_eps():
    torch.manual_seed(0)
    p1 = torch.nn.Parameter(torch.randn(4, 4, dtype=torch.float64))
    p2 = torch.nn.Parameter(p1.detach().clone())
    o1 = CerebrasAdamW([p1], lr=1e-2, eps=0.0, weight_decay=0.1)
    o2 = torch.optim.AdamW([p2], lr=1e-2, betas=(0.9, 0.95), eps=0.0, weight_decay=0.1)
    for _ in range(4):
        g = torch.randn_like(p1)
        p1.grad, p2.grad = g.clone(), g.clone()
        o1.step()
        o2.step()
    assert torch.allclose(p1, p2, atol=1e-12)


def _run_steps(fused: bool, steps: int = 30) -> list[torch.Tensor]:
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(n, 17)) for n in (5, 64, 300)]
    groups = [
        {"params": params[:2], "weight_decay": 0.1, "lr": 3e-3},
        {"params": params[2:], "weight_decay": 0.0, "lr": 1e-3},
    ]
    opt = CerebrasAdamW(groups, betas=(0.9, 0.95), eps=1e-8, fused=fused)
    gen = torch.Generator().manual_seed(1)
    for t in range(steps):
        for p in params:  # gradients of mixed sizes, some tiny (where eps matters)
            p.grad = torch.randn(p.shape, generator=gen) * (1e-6 if t % 3 == 0 else 1.0)
        opt.step()
    return [p.detach().clone() for p in params]


def test_fused_cerebras_adamw_equals_the_foreach_one_to_fp32_rounding():
    foreach, fused = _run_steps(False), _run_steps(True)
    for a, b in zip(foreach, fused):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=1e-7)  # a few ulps: the same update, reassociated


def test_fused_path_places_eps_like_the_model_zoo():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5, 3))
    ref = p.detach().double().clone()
    m, v = torch.zeros_like(ref), torch.zeros_like(ref)
    opt = CerebrasAdamW([p], lr=1e-2, betas=(0.9, 0.95), eps=1e-3, weight_decay=0.1, fused=True)
    for t in range(1, 6):
        g = torch.randn_like(p)
        p.grad = g.clone()
        opt.step()
        ref, m, v = _reference_step(ref, g.double(), m, v, t, 1e-2, 0.9, 0.95, 1e-3, 0.1)
        torch.testing.assert_close(p.detach().double(), ref, rtol=1e-6, atol=1e-6)


def test_foreach_state_dict_is_unchanged_and_fused_keeps_its_flag():
    model = _tiny()
    opt = build_optimizer(model, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    assert not opt.fused and "fused" not in opt.state_dict()["param_groups"][0]  # CPU: checkpoints as before
    fused = build_optimizer(model, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, fused=True)
    assert fused.fused and fused.state_dict()["param_groups"][0]["fused"] is True
