"""cgpt's GPT decoder: exact sizes of every preset, init statistics, causality, muP details."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from cgpt.model.gpt import GPT
from cgpt.presets import PRESETS, ModelConfig

SPEC_PARAMS = {  # spec section 1.1
    "111m": 111_050_496,
    "256m": 255_977_024,
    "590m": 590_310_912,
    "1.3b": 1_315_723_264,
    "2.7b": 2_651_553_280,
    "6.7b": 6_658_404_352,
    "13b": 12_853_386_240,
}
# E[x^2]^0.5 of a normal truncated at +-2 sigma, in units of sigma
TRUNC2_STD = math.sqrt(1 - 2 * 2 * math.exp(-2) / math.sqrt(2 * math.pi) / math.erf(2 / math.sqrt(2)))


@pytest.mark.parametrize("name", list(PRESETS))
def test_parameter_count_every_preset(name):
    cfg = PRESETS[name].model
    with torch.device("meta"):
        model = GPT(cfg)
    n = model.num_params()
    assert n == sum(p.numel() for p in model.parameters()) == cfg.num_params()
    if PRESETS[name].family:
        size = name.removeprefix("cerebras-").removesuffix("-mup")
        assert n == SPEC_PARAMS[size]


def _groups(model: GPT) -> dict[str, torch.Tensor]:
    h = model.h
    cat = lambda ts: torch.cat([t.flatten() for t in ts])  # noqa: E731
    return {
        "embedding": cat([model.wte.weight, model.wpe.weight]),
        "hidden": cat([w for b in h for w in (b.attn.c_attn.weight, b.mlp.c_fc.weight)]),
        "output": cat([w for b in h for w in (b.attn.c_proj.weight, b.mlp.c_proj.weight)]),
    }


@pytest.mark.parametrize(
    "cfg",
    [
        # SP with the 1.3B+ fixed output-layer init of 0.0025
        ModelConfig(n_layer=4, d_model=256, n_head=4, d_ffn=1024, vocab_size=2000, n_positions=256,
                    output_init_std=0.0025),
        # SP with the GPT-2 rule 0.02/sqrt(2L)
        ModelConfig(n_layer=4, d_model=256, n_head=4, d_ffn=1024, vocab_size=2000, n_positions=256),
        # muP, m = 256/64 = 4
        ModelConfig(n_layer=4, d_model=256, n_head=4, d_ffn=1024, vocab_size=2000, n_positions=256,
                    parameterization="mup", init_std=0.08, embeddings_scale=10.0, mup_base_width=64),
    ],
    ids=["sp-0.0025", "sp-gpt2-rule", "mup"],
)  # fmt: skip
def test_init_statistics(cfg):
    torch.manual_seed(0)
    model = GPT(cfg)
    want = {"embedding": cfg.init_std, "hidden": cfg.hidden_init_std, "output": cfg.resolved_output_init_std}
    if cfg.output_init_std == 0.0025:
        assert want["output"] == 0.0025
    elif cfg.is_mup:
        assert want["hidden"] == pytest.approx(0.08 / 2) and want["output"] == pytest.approx(0.08 / 2 / math.sqrt(8))
    else:
        assert want["output"] == pytest.approx(0.02 / math.sqrt(8))
    for group, w in _groups(model).items():
        sigma = want[group]
        assert w.abs().max() <= 2 * sigma + 1e-9, group  # hard cutoffs at +-2 sigma
        assert w.abs().max() > 1.9 * sigma, group  # ...and the tails reach them
        assert abs(w.mean().item()) < 0.01 * sigma, group
        assert w.std().item() == pytest.approx(sigma * TRUNC2_STD, rel=0.02), group
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert torch.count_nonzero(p) == 0, name
        elif ".ln_" in name or name.startswith("ln_f"):
            assert torch.all(p == 1.0), name


def _tiny(**kw) -> ModelConfig:
    return ModelConfig(n_layer=2, d_model=48, n_head=3, d_ffn=96, vocab_size=97, n_positions=32, **kw)


@pytest.mark.parametrize("par", ["sp", "mup"])
def test_causal_masking(par):
    cfg = (
        _tiny()
        if par == "sp"
        else _tiny(parameterization="mup", init_std=0.08, embeddings_scale=10.0, mup_base_width=16)
    )
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    x = torch.randint(0, cfg.vocab_size, (2, 20))
    y = x.clone()
    y[:, 12:] = torch.randint(0, cfg.vocab_size, (2, 8))
    with torch.no_grad():
        a, b = model(x), model(y)
    torch.testing.assert_close(a[:, :12], b[:, :12], rtol=0, atol=1e-6)
    assert (a[:, 12:] - b[:, 12:]).abs().max() > 1e-4


def _manual_forward(model: GPT, x: torch.Tensor) -> torch.Tensor:
    """The spec's equations written out (explicit mask, softmax, exact GELU)."""
    cfg = model.config
    T = x.shape[1]
    h = (model.wte.weight[x] + model.wpe.weight[:T]) * cfg.embeddings_scale
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for blk in model.h:
        a = F.layer_norm(h, (cfg.d_model,), blk.ln_1.weight, blk.ln_1.bias, eps=cfg.layer_norm_eps)
        q, k, v = (a @ blk.attn.c_attn.weight.t() + blk.attn.c_attn.bias).split(cfg.d_model, dim=-1)
        q, k, v = (t.view(*t.shape[:2], cfg.n_head, cfg.d_head).transpose(1, 2) for t in (q, k, v))
        div = cfg.d_head if cfg.is_mup else math.sqrt(cfg.d_head)
        s = (q @ k.transpose(-1, -2) / div).masked_fill(~mask, float("-inf"))
        o = (s.softmax(-1) @ v).transpose(1, 2).reshape(h.shape)
        h = h + o @ blk.attn.c_proj.weight.t() + blk.attn.c_proj.bias
        a = F.layer_norm(h, (cfg.d_model,), blk.ln_2.weight, blk.ln_2.bias, eps=cfg.layer_norm_eps)
        u = a @ blk.mlp.c_fc.weight.t() + blk.mlp.c_fc.bias
        u = 0.5 * u * (1 + torch.erf(u / math.sqrt(2)))
        h = h + u @ blk.mlp.c_proj.weight.t() + blk.mlp.c_proj.bias
    h = F.layer_norm(h, (cfg.d_model,), model.ln_f.weight, model.ln_f.bias, eps=cfg.layer_norm_eps)
    return (h @ model.wte.weight.t()) / cfg.width_mult


@pytest.mark.parametrize("par", ["sp", "mup"])
def test_forward_matches_written_out_equations(par):
    cfg = (
        _tiny()
        if par == "sp"
        else _tiny(parameterization="mup", init_std=0.08, embeddings_scale=10.0, mup_base_width=16)
    )
    torch.manual_seed(1)
    model = GPT(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
        x = torch.randint(0, cfg.vocab_size, (2, 17))
        torch.testing.assert_close(model(x), _manual_forward(model, x), rtol=1e-5, atol=1e-5)


def test_mup_attention_scale_and_multipliers():
    sp = _tiny()
    mup = _tiny(parameterization="mup", init_std=0.08, embeddings_scale=10.0, mup_base_width=16)
    assert sp.attention_scale == pytest.approx(1 / math.sqrt(16)) and mup.attention_scale == pytest.approx(1 / 16)
    assert GPT(mup).h[0].attn.scale == 1 / 16
    assert mup.width_mult == 3 and mup.output_logits_scale == pytest.approx(1 / 3)
    for name, m in (("cerebras-111m-mup", 3), ("cerebras-2.7b-mup", 10)):
        cfg = PRESETS[name].model
        assert cfg.width_mult == m and cfg.attention_scale == 1 / cfg.d_head and cfg.embeddings_scale == 10


def test_layer_norm_eps_and_tied_head():
    cfg = replace(_tiny(), layer_norm_eps=1e-5)
    model = GPT(cfg)
    assert all(m.eps == 1e-5 for m in model.modules() if isinstance(m, torch.nn.LayerNorm))
    assert sum(isinstance(m, torch.nn.LayerNorm) for m in model.modules()) == 2 * cfg.n_layer + 1
    assert not any("lm_head" in n for n, _ in model.named_parameters())  # tied: no separate head
    x = torch.randint(0, cfg.vocab_size, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.hidden(x) @ model.wte.weight.t())
        model.wte.weight[5].zero_()
        assert torch.all(model(x)[..., 5] == 0)  # the head reads wte
    # the head's gradient flows into wte, also for tokens never seen at the input
    model.zero_grad()
    labels = torch.full((1, 9), 7)
    model(torch.zeros_like(x), labels)[1].backward()
    assert model.wte.weight.grad[7].abs().sum() > 0


def test_loss_is_mean_token_cross_entropy_with_ignore_index():
    torch.manual_seed(2)
    model = GPT(_tiny()).eval()
    x = torch.randint(0, 97, (2, 10))
    y = torch.randint(0, 97, (2, 10))
    y[0, :3] = -100
    with torch.no_grad():
        logits, loss = model(x, y)
        ref = F.cross_entropy(logits.reshape(-1, 97), y.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(loss, ref)


def test_generate_is_greedy_and_stops_at_eos():
    torch.manual_seed(3)
    model = GPT(_tiny()).eval()
    x = torch.randint(0, 97, (1, 4))
    out = model.generate(x, max_new_tokens=6)
    assert out.shape == (1, 10) and torch.equal(out[:, :4], x)
    with torch.no_grad():
        assert out[0, 4].item() == model(x)[0, -1].argmax().item()
    eos = out[0, 5].item()
    assert model.generate(x, max_new_tokens=6, eos_token_id=eos).shape[1] <= 6


def test_bf16_attention_softmax_runs_in_fp32():
    """The recipe computes the attention softmax in fp32 (attention_softmax_fp32). cgpt's attention is
    torch's SDPA, whose kernels keep the scores and softmax in fp32 for bf16 inputs (flash/efficient on
    CUDA, the CPU flash kernel, and the math fallback, which upcasts): its bf16 output matches a softmax
    done in fp32 to bf16 rounding, and is far from one done in bf16."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 64, 32) * s for s in (3.0, 3.0, 1.0))
    q, k, v = (t.bfloat16() for t in (q, k, v))
    mask = torch.ones(64, 64, dtype=torch.bool).tril()
    scores = (q.float() @ k.float().transpose(-1, -2) / math.sqrt(32)).masked_fill(~mask, float("-inf"))
    fp32_softmax = (scores.softmax(-1) @ v.float()).bfloat16()
    bf16_softmax = (scores.bfloat16().softmax(-1) @ v).bfloat16()
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    err32 = (out.float() - fp32_softmax.float()).abs().max().item()
    err16 = (out.float() - bf16_softmax.float()).abs().max().item()
    assert err32 <= 0.02 and err32 < err16 / 2, (err32, err16)
