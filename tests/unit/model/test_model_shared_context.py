"""GPT's optional position/mask path (shared-context rows for evaluation) against plain forwards."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from cgpt.eval.scoring import shared_context_mask
from cgpt.model.gpt import GPT
from cgpt.presets import ModelConfig

CFG = ModelConfig(n_layer=2, d_model=64, n_head=4, d_ffn=128, vocab_size=300, n_positions=32)


def _model(par: str) -> GPT:
    cfg = (
        CFG
        if par == "sp"
        else replace(CFG, parameterization="mup", init_std=0.08, embeddings_scale=10.0, mup_base_width=16)
    )
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.mark.parametrize("par", ["sp", "mup"])
def test_packed_row_equals_separate_forwards(par):
    model = _model(par)
    g = torch.Generator().manual_seed(1)
    prefix, a, b, c = (torch.randint(0, 300, (n,), generator=g) for n in (9, 5, 3, 6))
    row = torch.cat([prefix, a, b, c])[None]
    pos = torch.cat([torch.arange(9), torch.arange(9, 14), torch.arange(9, 12), torch.arange(9, 15)])[None]
    seg = torch.tensor([[0] * 9 + [1] * 5 + [2] * 3 + [3] * 6])
    with torch.no_grad():
        packed = model.hidden(row, position_ids=pos, attn_mask=shared_context_mask(seg))[0]
        for start, tail in ((9, a), (14, b), (17, c)):
            ref = model.hidden(torch.cat([prefix, tail])[None])[0]
            assert (packed[:9] - ref[:9]).abs().max() <= 1e-5
            assert (packed[start : start + len(tail)] - ref[9:]).abs().max() <= 1e-5


def test_default_path_unchanged_by_explicit_causal_arguments():
    model = _model("sp")
    x = torch.randint(0, 300, (3, 20))
    causal = torch.ones(20, 20, dtype=torch.bool).tril()[None, None]
    with torch.no_grad():
        plain = model.hidden(x)
        explicit = model.hidden(x, position_ids=torch.arange(20).expand(3, 20), attn_mask=causal)
        assert torch.equal(model(x), model.logits_from_hidden(plain))
    assert (plain - explicit).abs().max() <= 1e-5


def test_padding_rows_stay_finite_and_positions_are_checked():
    model = _model("sp")
    seg = torch.tensor([[0, 0, 1, 1, -1, -1]])  # two padding tokens at the end
    x = torch.randint(0, 300, (1, 6))
    with torch.no_grad():
        h = model.hidden(x, position_ids=torch.tensor([[0, 1, 2, 3, 0, 0]]), attn_mask=shared_context_mask(seg))
    assert torch.isfinite(h).all()
    with pytest.raises(ValueError, match="exceeds n_positions"):
        model.hidden(x, position_ids=torch.full((1, 6), 32), attn_mask=shared_context_mask(seg))


def test_row_longer_than_n_positions_with_valid_positions():
    """A shared-context row may hold more tokens than n_positions as long as no position is out of range."""
    model = _model("sp")
    prefix = torch.randint(0, 300, (20,))
    tails = [torch.randint(0, 300, (10,)) for _ in range(3)]
    row = torch.cat([prefix, *tails])[None]  # 50 tokens > 32
    pos = torch.cat([torch.arange(20)] + [torch.arange(20, 30)] * 3)[None]
    seg = torch.tensor([[0] * 20 + [1] * 10 + [2] * 10 + [3] * 10])
    with torch.no_grad():
        packed = model.hidden(row, position_ids=pos, attn_mask=shared_context_mask(seg))[0]
        ref = model.hidden(torch.cat([prefix, tails[2]])[None])[0]
    assert (packed[40:] - ref[20:]).abs().max() <= 1e-5
