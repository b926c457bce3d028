"""The Cerebras-GPT family (SP and muP) and small CPU presets, as data.

Every number comes from ``shared/spec/cerebras-gpt-recipe.md`` (the Cerebras Model Zoo configs,
``modelzoo/transformers/pytorch/gpt3/configs/Cerebras_GPT/*.yaml``). Where the public sources
disagree we follow the configs and say so next to the number:

* 2.7B has 32 heads of 80 (configs, HF weights), not the model card's 20 x 128.
* 256M warms up for 693 steps (configs), not the card's "1500 steps" (that is 111M's 1525).
* Decay is linear for 111M/256M/590M/6.7B and cosine for 1.3B/2.7B/13B (configs); the card says
  "cosine" for all.
* SP 1.3B/2.7B/6.7B/13B use a fixed output-layer init of 0.0025 (configs), which equals
  0.02/sqrt(2L) only for the 32-layer models.
* 13B trained 57,000 steps at batch 720, then its global step was rewritten to 38,000 and it
  continued at batch 1080 to step 116,223 (:class:`BatchSwitch`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

Parameterization = Literal["sp", "mup"]
DecayType = Literal["linear", "cosine"]

GPT2_VOCAB_SIZE = 50257
MUP_BASE_WIDTH = 256
MUP_BASE_INIT_STD = 0.08
MUP_BASE_LR = 6.0e-3
MUP_EMBEDDINGS_SCALE = 10.0
SP_INIT_STD = 0.02


@dataclass(frozen=True)
class ModelConfig:
    """Shape and parameterization of one GPT-3-style decoder.

    ``output_init_std`` is the init of the "output layers" (attention out-projection and FFN2);
    ``None`` means the GPT-2 rule ``hidden_init_std / sqrt(2 L)``. ``output_mult`` multiplies the
    logits on top of muP's 1/m (the "output multiplier" a muP sweep tunes; 1 in the recipe).
    """

    n_layer: int
    d_model: int
    n_head: int
    d_ffn: int
    vocab_size: int = GPT2_VOCAB_SIZE
    n_positions: int = 2048
    layer_norm_eps: float = 1e-5
    parameterization: Parameterization = "sp"
    init_std: float = SP_INIT_STD
    output_init_std: float | None = None
    mup_base_width: int = MUP_BASE_WIDTH
    embeddings_scale: float = 1.0
    output_mult: float = 1.0

    def __post_init__(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (checkpoints, exports, MLflow). ``output_mult`` is written only when
        it is not 1 (the recipe's), so configs written before it existed still compare equal and resume."""
        d = asdict(self)
        if d["output_mult"] == 1.0:
            del d["output_mult"]
        return d

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head

    @property
    def is_mup(self) -> bool:
        return self.parameterization == "mup"

    @property
    def width_mult(self) -> float:
        """muP width multiplier m = d_model / d_model_base (1 in SP)."""
        return self.d_model / self.mup_base_width if self.is_mup else 1.0

    @property
    def output_logits_scale(self) -> float:
        """muP multiplies the tied-head logits by output_mult/m; SP by output_mult (1 in the recipe)."""
        return self.output_mult / self.width_mult

    @property
    def attention_scale(self) -> float:
        """Scores are QK^T/d_head in muP (``scale_qk_dot_by_d``) and QK^T/sqrt(d_head) in SP."""
        return 1.0 / self.d_head if self.is_mup else 1.0 / math.sqrt(self.d_head)

    @property
    def embedding_init_std(self) -> float:
        return self.init_std

    @property
    def hidden_init_std(self) -> float:
        """Q/K/V and FFN1: sigma in SP, sigma_base/sqrt(m) in muP."""
        return self.init_std / math.sqrt(self.width_mult)

    @property
    def resolved_output_init_std(self) -> float:
        if self.output_init_std is not None:
            return self.output_init_std
        return self.hidden_init_std / math.sqrt(2 * self.n_layer)

    def num_params(self) -> int:
        """Exact trainable parameter count with the tied LM head counted once (spec section 1.1)."""
        d, f, L = self.d_model, self.d_ffn, self.n_layer
        per_layer = (4 * d * d + 4 * d) + (2 * d * f + f + d) + 4 * d
        return self.vocab_size * d + self.n_positions * d + L * per_layer + 2 * d

    def flops_per_token(self, seq_len: int) -> tuple[float, float]:
        """(6N, 6N + 12 L T d) training FLOPs per token: without and with attention scores."""
        six_n = 6.0 * self.num_params()
        return six_n, six_n + 12.0 * self.n_layer * seq_len * self.d_model


@dataclass(frozen=True)
class BatchSwitch:
    """The 13B run's mid-training batch change (spec section 2.2).

    After ``at_step`` optimizer steps at the original batch size, the global step is rewritten to
    ``step_reset_to`` (= at_step * old_bs / new_bs, so tokens seen stay consistent) and training
    continues with ``batch_size`` and the new warm-up/decay schedule, whose LR is continuous at
    the switch (9.407e-5 on both sides).
    """

    at_step: int
    step_reset_to: int
    batch_size: int
    warmup_steps: int
    decay_steps: int

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.decay_steps


@dataclass(frozen=True)
class TrainRecipe:
    """Optimizer, schedule and batch of one preset. LR decays to ``end_lr`` exactly at the last step."""

    peak_lr: float
    end_lr: float
    batch_size: int
    warmup_steps: int
    decay: DecayType
    decay_steps: int
    seq_len: int = 2048
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    batch_switch: BatchSwitch | None = None

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.decay_steps

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    def total_tokens(self) -> int:
        """Tokens the recipe trains on (the 13B switch counted as it really ran)."""
        s = self.batch_switch
        if s is None:
            return self.total_steps * self.tokens_per_step
        return (s.at_step * self.batch_size + (s.total_steps - s.step_reset_to) * s.batch_size) * self.seq_len

    def optimizer_steps(self) -> int:
        s = self.batch_switch
        return self.total_steps if s is None else s.at_step + s.total_steps - s.step_reset_to


@dataclass(frozen=True)
class Preset:
    name: str
    model: ModelConfig
    recipe: TrainRecipe
    description: str = ""
    family: bool = field(default=True)


def _sp(n_layer: int, d: int, n_head: int, out_std: float | None) -> ModelConfig:
    return ModelConfig(n_layer=n_layer, d_model=d, n_head=n_head, d_ffn=4 * d, output_init_std=out_std)


def _mup(sp: ModelConfig) -> ModelConfig:
    # muP: sigma_base = 0.08, embeddings x10, output layers sigma_base/sqrt(m)/sqrt(2L) for every size.
    return replace(
        sp,
        parameterization="mup",
        init_std=MUP_BASE_INIT_STD,
        output_init_std=None,
        embeddings_scale=MUP_EMBEDDINGS_SCALE,
    )


# name: (n_layer, d_model, n_head, output-layer init or None for 0.02/sqrt(2L))
_SHAPES: dict[str, tuple[int, int, int, float | None]] = {
    "111m": (10, 768, 12, None),  # 0.004472 = 0.02/sqrt(20)
    "256m": (14, 1088, 17, None),  # 0.003780
    "590m": (18, 1536, 12, None),  # 0.003333
    "1.3b": (24, 2048, 16, 0.0025),  # configs say 0.0025, not 0.02/sqrt(48) = 0.002887
    "2.7b": (32, 2560, 32, 0.0025),  # 32 heads x 80 (configs), not the card's 20 x 128
    "6.7b": (32, 4096, 32, 0.0025),
    "13b": (40, 5120, 40, 0.0025),  # configs say 0.0025, not 0.02/sqrt(80) = 0.002236
}

# name: (peak LR, batch seqs, warm-up steps, decay type, decay steps, Adam eps)
_SCHEDULES: dict[str, tuple[float, int, int, DecayType, int, float]] = {
    "111m": (6.0e-4, 120, 1525, "linear", 7512, 1e-8),
    "256m": (6.0e-4, 264, 693, "linear", 8775, 1e-8),  # card says 1500 warm-up steps; configs 693
    "590m": (2.0e-4, 264, 693, "linear", 21143, 1e-8),
    "1.3b": (2.0e-4, 528, 346, "cosine", 23988, 1e-8),
    "2.7b": (2.0e-4, 528, 346, "cosine", 48695, 1e-8),
    "6.7b": (1.2e-4, 1040, 176, "linear", 62346, 1e-9),
    "13b": (1.2e-4, 720, 254, "cosine", 174081, 1e-9),  # the bs-720 schedule; see BatchSwitch
}

_13B_SWITCH = BatchSwitch(at_step=57_000, step_reset_to=38_000, batch_size=1080, warmup_steps=169, decay_steps=116_054)
_MUP_SIZES = ("111m", "256m", "590m", "1.3b", "2.7b")


def _family() -> dict[str, Preset]:
    out: dict[str, Preset] = {}
    for size, (n_layer, d, n_head, out_std) in _SHAPES.items():
        peak, bs, warm, decay, decay_steps, eps = _SCHEDULES[size]
        sp = _sp(n_layer, d, n_head, out_std)
        recipe = TrainRecipe(
            peak_lr=peak,
            end_lr=peak / 10,
            batch_size=bs,
            warmup_steps=warm,
            decay=decay,
            decay_steps=decay_steps,
            eps=eps,
            batch_switch=_13B_SWITCH if size == "13b" else None,
        )
        out[f"cerebras-{size}"] = Preset(f"cerebras-{size}", sp, recipe, f"Cerebras-GPT {size.upper()} (SP)")
        if size in _MUP_SIZES:
            mup_recipe = replace(recipe, peak_lr=MUP_BASE_LR, end_lr=MUP_BASE_LR / 10)
            name = f"cerebras-{size}-mup"
            out[name] = Preset(name, _mup(sp), mup_recipe, f"Cerebras-GPT {size.upper()} (muP)")
    return out


def _cpu() -> dict[str, Preset]:
    # Small shapes for laptops and CI. vocab_size is replaced by the tokenizer's at train time.
    tiny = ModelConfig(n_layer=2, d_model=64, n_head=2, d_ffn=256, n_positions=128)
    small = ModelConfig(n_layer=4, d_model=192, n_head=4, d_ffn=768, n_positions=256)
    return {
        "cpu-tiny": Preset(
            "cpu-tiny",
            tiny,
            TrainRecipe(
                peak_lr=3e-3, end_lr=3e-4, batch_size=8, warmup_steps=10, decay="linear", decay_steps=90, seq_len=64
            ),
            "2 x 64 toy decoder for tests (seconds on a CPU)",
            family=False,
        ),
        "cpu-small": Preset(
            "cpu-small",
            small,
            TrainRecipe(
                peak_lr=2e-3, end_lr=2e-4, batch_size=16, warmup_steps=30, decay="cosine", decay_steps=270, seq_len=256
            ),
            "4 x 192 decoder: the default, whole pipeline in minutes on 2 CPU cores",
            family=False,
        ),
    }


PRESETS: dict[str, Preset] = {**_cpu(), **_family()}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}") from None
