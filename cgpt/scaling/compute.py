"""Training compute as cgpt counts it: (6N + 12·L·T·d) FLOPs per token × training tokens.

``6N`` is the forward + backward matmul cost per token of the N trainable parameters (tied head
counted once, :meth:`cgpt.presets.ModelConfig.num_params`) and ``12·L·T·d`` the attention scores
and their weighted sum (L layers, context T, width d), both from
:meth:`cgpt.presets.ModelConfig.flops_per_token`. This is *not* the Cerebras-GPT card's convention:
the card gives two FLOPs columns that disagree with each other and with this formula (spec
section 5; the card's FLOPs formula is not determinable). Its evaluation-table column is 1.37×
cgpt's count at 111M shrinking to 1.09× at 13B, so:

* a law fitted on cgpt's FLOPs has a different ``a`` (and ``f0``) from the card's, and a slightly
  different exponent, because the ratio drifts with size (see ``cgpt scaling --card --flops cgpt``);
* compare a cgpt family with the card member by member (loss of the same size), never the two laws
  at the same FLOPs number;
* predicting cgpt's next member from cgpt's own members is consistent, because every point uses
  the same convention.
"""

from __future__ import annotations

from cgpt.presets import ModelConfig, Preset, get_preset


def training_flops(model: ModelConfig, tokens: float, seq_len: int) -> float:
    """(6N + 12·L·T·d) × tokens: the compute a member trained on ``tokens`` tokens of context ``seq_len`` used."""
    return model.flops_per_token(seq_len)[1] * float(tokens)


def preset_training_flops(preset: Preset | str) -> float:
    """Training FLOPs of a preset's full recipe (13B: its batch switch counted as it ran)."""
    p = get_preset(preset) if isinstance(preset, str) else preset
    return training_flops(p.model, p.recipe.total_tokens(), p.recipe.seq_len)
