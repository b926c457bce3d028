"""To and from the Hugging Face ``GPT2LMHeadModel`` format (spec section 6).

Export (:func:`export_hf`) writes a folder that ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` load offline with no custom code:

* ``config.json``: every GPT2Config field written explicitly (exact ``"gelu"``, no dropout,
  ``tie_word_embeddings`` true for SP and false for muP), plus a ``"cgpt"`` block recording the
  cgpt :class:`~cgpt.presets.ModelConfig` so :func:`import_hf` can restore it (transformers
  keeps unknown keys and ignores them);
* ``model.safetensors``: Conv1D layout ([in, out]: every 2-D weight transposed except ``wte`` and
  ``wpe``), names ``transformer.*``; the SP LM head is tied, so no ``lm_head.weight`` is stored;
* ``generation_config.json`` and the tokenizer files (:mod:`cgpt.export.hf_tokenizer`).

muP is exported *folded* (the Model Zoo's ``fold_mup.py``): ``wte`` and ``wpe`` are multiplied
by ``embeddings_scale`` (10), an untied ``lm_head.weight`` = W_emb x ``output_logits_scale``
(1/m), and the K rows of ``c_attn`` (weight and bias) are divided by sqrt(d_head) so that HF's
1/sqrt(d_head) gives muP's 1/d_head. The folder is a plain GPT-2 with the muP model's function.

Import (:func:`import_hf`) reads any GPT2LMHeadModel folder (safetensors or ``pytorch_model.bin``,
single or sharded, with or without the ``transformer.`` prefix) into cgpt's parameter names.
Rules, each a one-line :class:`~cgpt.core.errors.CgptError` when broken:

* ``activation_function`` must be ``"gelu"`` (exact erf GELU). OpenAI's GPT-2 checkpoints say
  ``"gelu_new"`` (tanh approximation), which cgpt's model does not implement: importing them
  would silently change the function, so they are refused.
* ``scale_attn_weights`` true, ``scale_attn_by_inverse_layer_idx`` false, no cross-attention.
* The LM head must be tied (``lm_head.weight`` absent or equal to ``wte``), except for a folded
  muP folder written by cgpt (its ``"cgpt"`` block says ``parameterization: mup``): that one is
  *unfolded* back into a muP model (wte/10, wpe/10, K x sqrt(d_head)), equal to the original up
  to fp32 rounding, so muP training can continue from it. A foreign untied head is refused:
  cgpt's LM head is always tied (spec 1.2).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from cgpt.core.errors import CgptError
from cgpt.core.fsutil import atomic_dir, read_json
from cgpt.export.hf_tokenizer import write_tokenizer_files
from cgpt.presets import ModelConfig

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
PT_WEIGHTS = "pytorch_model.bin"
PT_INDEX = "pytorch_model.bin.index.json"

# Prefixes a state dict may carry from torch.compile / DDP / FSDP wrappers.
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")
_LEGACY_BUFFER = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")
#: ``export.dtype`` names and the torch dtypes the weights are written in.
EXPORT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_DTYPE_NAMES = {v: k for k, v in EXPORT_DTYPES.items()}


# --------------------------------------------------------------------------------------------- config


def is_folded(cfg: ModelConfig) -> bool:
    """True when the export must fold multipliers into an untied head (muP, or any non-1 scale)."""
    return cfg.is_mup or cfg.embeddings_scale != 1.0 or cfg.output_logits_scale != 1.0


def hf_config_dict(cfg: ModelConfig, *, eos_token_id: int, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """The complete ``config.json`` of the export of ``cfg`` (every field explicit)."""
    if dtype not in _DTYPE_NAMES:
        raise CgptError(f"export dtype {dtype} not supported; expected one of {', '.join(_DTYPE_NAMES.values())}")
    if not 0 <= eos_token_id < cfg.vocab_size:
        raise CgptError(f"eos_token_id={eos_token_id} is outside the vocabulary (vocab_size={cfg.vocab_size})")
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.n_positions,
        "n_ctx": cfg.n_positions,  # legacy alias older GPT-2 configs carry; transformers ignores it
        "n_embd": cfg.d_model,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": cfg.d_ffn,
        "activation_function": "gelu",  # exact erf GELU, NOT GPT-2's default tanh "gelu_new"
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "layer_norm_epsilon": cfg.layer_norm_eps,
        "initializer_range": cfg.init_std,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "summary_activation": None,
        "summary_proj_to_labels": True,
        "summary_first_dropout": 0.0,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "add_cross_attention": False,
        # SP: head tied to wte (spec 1.2). muP folded: untied head = W_emb / m (spec 6).
        "tie_word_embeddings": not is_folded(cfg),
        # No BOS in the data (documents are followed by EOS only): bos = eos = <|endoftext|>, as in
        # GPT-2. pad stays unset here (the model never saw padding); generation_config sets it.
        "bos_token_id": eos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": None,
        "use_cache": True,
        "dtype": _DTYPE_NAMES[dtype],
        "torch_dtype": _DTYPE_NAMES[dtype],  # transformers < 5 reads this name
        "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
        "cgpt": {"model_config": cfg.to_dict(), "folded_mup": is_folded(cfg)},
    }


def generation_config_dict(eos_token_id: int) -> dict[str, Any]:
    # pad = eos so generate()/pipeline() need no pad_token_id argument (single prompts never pad).
    return {"bos_token_id": eos_token_id, "eos_token_id": eos_token_id, "pad_token_id": eos_token_id}


def hf_config(cfg: ModelConfig, *, eos_token_id: int, dtype: torch.dtype = torch.float32):
    """A ``transformers.GPT2Config`` equal to the exported ``config.json``."""
    from transformers import GPT2Config

    d = hf_config_dict(cfg, eos_token_id=eos_token_id, dtype=dtype)
    d.pop("model_type")
    d.pop("torch_dtype")
    return GPT2Config(**d)


# ------------------------------------------------------------------------------------- state dicts


def _strip_wrappers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        for p in _WRAPPER_PREFIXES:
            while k.startswith(p):
                k = k[len(p) :]
        out[k] = v
    return out


def _is_conv1d_weight(name: str) -> bool:
    return name.startswith("h.") and name.endswith(".weight") and (".attn.c_" in name or ".mlp.c_" in name)


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """cgpt's parameter names and shapes (nn.Linear layout [out, in])."""
    d, f = cfg.d_model, cfg.d_ffn
    shapes: dict[str, tuple[int, ...]] = {"wte.weight": (cfg.vocab_size, d), "wpe.weight": (cfg.n_positions, d)}
    for i in range(cfg.n_layer):
        p = f"h.{i}."
        shapes.update(
            {
                p + "ln_1.weight": (d,),
                p + "ln_1.bias": (d,),
                p + "attn.c_attn.weight": (3 * d, d),
                p + "attn.c_attn.bias": (3 * d,),
                p + "attn.c_proj.weight": (d, d),
                p + "attn.c_proj.bias": (d,),
                p + "ln_2.weight": (d,),
                p + "ln_2.bias": (d,),
                p + "mlp.c_fc.weight": (f, d),
                p + "mlp.c_fc.bias": (f,),
                p + "mlp.c_proj.weight": (d, f),
                p + "mlp.c_proj.bias": (d,),
            }
        )
    shapes.update({"ln_f.weight": (d,), "ln_f.bias": (d,)})
    return shapes


def _check_state(state: dict[str, torch.Tensor], cfg: ModelConfig, where: str) -> None:
    want = expected_shapes(cfg)
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {', '.join(missing[:3])})")
        if extra:
            parts.append(f"unexpected {len(extra)} tensors (e.g. {', '.join(extra[:3])})")
        raise CgptError(f"{where}: weights do not match the config: {'; '.join(parts)}")
    for k, shape in want.items():
        if tuple(state[k].shape) != shape:
            raise CgptError(f"{where}: {k} has shape {tuple(state[k].shape)}, expected {shape} from the config")


def to_hf_state_dict(
    model_state: dict[str, torch.Tensor], cfg: ModelConfig, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """cgpt state dict -> GPT2LMHeadModel state dict (Conv1D layout, muP folded). New tensors only."""
    state = _strip_wrappers(model_state)
    _check_state(state, cfg, "export")
    out: dict[str, torch.Tensor] = {}
    d = cfg.d_model
    for k, v in state.items():
        t = v.detach().to("cpu")
        # One new tensor per entry (peak memory = model + export): fold in fp32, round once to dtype.
        if k in ("wte.weight", "wpe.weight") and cfg.embeddings_scale != 1.0:
            t = (t.float() * cfg.embeddings_scale).to(dtype)
        elif cfg.is_mup and k.endswith(("attn.c_attn.weight", "attn.c_attn.bias")):
            t = t.float().clone()  # HF scales by 1/sqrt(dh); muP wants 1/dh: fold 1/sqrt(dh) into K
            t[d : 2 * d] /= math.sqrt(cfg.d_head)
            t = t.to(dtype)
        if _is_conv1d_weight(k):
            t = t.t().to(dtype).contiguous()  # Conv1D stores [in, out]
        elif t.data_ptr() == v.data_ptr() or t.dtype != dtype:
            t = t.to(dtype, copy=True).contiguous()
        out["transformer." + k] = t
    if is_folded(cfg):
        out["lm_head.weight"] = (state["wte.weight"].detach().to("cpu").float() * cfg.output_logits_scale).to(dtype)
    return out


def from_hf_state_dict(
    hf_state: dict[str, torch.Tensor], cfg: ModelConfig, *, tied: bool, unfold_mup: bool, where: str
) -> dict[str, torch.Tensor]:
    """GPT2LMHeadModel state dict -> cgpt state dict (fp32, nn.Linear layout). See the module doc."""
    state: dict[str, torch.Tensor] = {}
    lm_head = None
    for k, v in _strip_wrappers(hf_state).items():
        if k == "lm_head.weight":
            lm_head = v
            continue
        if k.startswith("transformer."):
            k = k[len("transformer.") :]
        if _LEGACY_BUFFER.match(k):
            continue  # causal-mask buffers of old transformers versions
        t = v.detach().to("cpu", torch.float32)
        if _is_conv1d_weight(k):
            if t.dim() != 2:
                raise CgptError(f"{where}: {k} is {t.dim()}-D, expected a 2-D Conv1D weight")
            t = t.t()
        state[k] = t.contiguous()
    _check_state(state, cfg, where)
    if unfold_mup:
        if lm_head is None:
            raise CgptError(f"{where}: folded muP export without lm_head.weight; the folder is incomplete")
        es = cfg.embeddings_scale
        state["wte.weight"] = state["wte.weight"] / es
        state["wpe.weight"] = state["wpe.weight"] / es
        d, r = cfg.d_model, math.sqrt(cfg.d_head)
        for i in range(cfg.n_layer if cfg.is_mup else 0):
            for name in ("weight", "bias"):
                t = state[f"h.{i}.attn.c_attn.{name}"].clone()  # never write into the caller's tensors
                t[d : 2 * d] *= r
                state[f"h.{i}.attn.c_attn.{name}"] = t
        want = state["wte.weight"] * cfg.output_logits_scale
        tol = 1e-5 if lm_head.dtype in (torch.float32, torch.float64) else 2e-2  # bf16/fp16 exports round
        if lm_head.shape != want.shape or not torch.allclose(
            lm_head.float(), want, rtol=tol, atol=tol * float(want.abs().max())
        ):
            raise CgptError(f"{where}: lm_head.weight is not wte x output_logits_scale; not a cgpt folded muP export")
    elif (
        lm_head is not None
        and not tied
        and (lm_head.shape != state["wte.weight"].shape or not torch.equal(lm_head.float(), state["wte.weight"]))
    ):
        raise CgptError(
            f"{where}: untied lm_head.weight differs from wte; cgpt's LM head is tied to the token embedding, "
            "so this model cannot be imported without changing its function"
        )
    return {k: state[k] for k in expected_shapes(cfg)}


# ------------------------------------------------------------------------------------------- export


def export_hf(
    model_state: dict[str, torch.Tensor],
    cfg: ModelConfig,
    out_dir: Path,
    *,
    tokenizer_json: Path | None,
    eos_token_id: int,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write a GPT2LMHeadModel folder for ``model_state`` at ``out_dir`` (atomically); return it.

    ``tokenizer_json``: a ``tokenizers`` ByteLevel-BPE ``tokenizer.json`` (the tokenize stage's
    output); None writes no tokenizer files (the model still loads; AutoTokenizer will not).
    """
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        write_hf_files(model_state, cfg, tmp, tokenizer_json=tokenizer_json, eos_token_id=eos_token_id, dtype=dtype)
    return out_dir


def write_hf_files(
    model_state: dict[str, torch.Tensor],
    cfg: ModelConfig,
    folder: Path,
    *,
    tokenizer_json: Path | None,
    eos_token_id: int,
    dtype: torch.dtype = torch.float32,
) -> None:
    """The files of :func:`export_hf`, written into an existing (temporary) ``folder``."""
    hf_state = to_hf_state_dict(model_state, cfg, dtype)
    config = hf_config_dict(cfg, eos_token_id=eos_token_id, dtype=dtype)
    save_file(hf_state, str(folder / SAFE_WEIGHTS), metadata={"format": "pt"})
    _write_json(folder / "config.json", config)
    _write_json(folder / "generation_config.json", generation_config_dict(eos_token_id))
    if tokenizer_json is not None:
        write_tokenizer_files(Path(tokenizer_json), folder, eos_token_id=eos_token_id, model_max_length=cfg.n_positions)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def build_hf_model(
    model_state: dict[str, torch.Tensor],
    cfg: ModelConfig,
    *,
    eos_token_id: int | None = None,
    attn_implementation: str = "sdpa",
):
    """An in-memory ``GPT2LMHeadModel`` equal to what :func:`export_hf` writes (fp32, eval mode)."""
    from transformers import GPT2LMHeadModel

    eos = cfg.vocab_size - 1 if eos_token_id is None else eos_token_id
    hf_cfg = hf_config(cfg, eos_token_id=eos)
    hf_cfg._attn_implementation = attn_implementation
    with torch.device("meta"):
        model = GPT2LMHeadModel(hf_cfg)
    model.load_state_dict(to_hf_state_dict(model_state, cfg), strict=False, assign=True)
    if not is_folded(cfg):
        model.tie_weights()
    missing = [n for n, p in [*model.named_parameters(), *model.named_buffers()] if p.is_meta]
    if missing:
        raise RuntimeError(f"build_hf_model: parameters left uninitialised: {missing[:3]}")
    return model.eval()


# ------------------------------------------------------------------------------------------- import


def _read_config(src: Path) -> dict[str, Any]:
    if not src.is_dir():
        raise CgptError(f"{src}: not a folder; expected a Hugging Face GPT2LMHeadModel folder (config.json + weights)")
    return read_json(
        src / "config.json", missing="no config.json; expected a Hugging Face GPT2LMHeadModel folder", error=CgptError
    )


def _load_weights(src: Path) -> dict[str, torch.Tensor]:
    def shards(index: Path) -> list[Path]:
        try:
            weight_map = read_json(index, missing="shard index vanished", error=CgptError)["weight_map"]
        except (KeyError, TypeError):
            raise CgptError(f"{index}: not a shard index (expected a 'weight_map' object)") from None
        files = sorted(set(weight_map.values()))
        for name in files:
            if not (src / name).is_file():
                raise CgptError(f"{index}: shard {name} is missing from {src}")
        return [src / n for n in files]

    def load_pt(p: Path) -> dict[str, torch.Tensor]:
        try:
            return torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle errors come in many types
            raise CgptError(
                f"{p}: cannot read as a weights-only torch file ({type(exc).__name__}); re-save it as safetensors"
            ) from None

    state: dict[str, torch.Tensor] = {}
    if (src / SAFE_WEIGHTS).is_file():
        state = load_file(str(src / SAFE_WEIGHTS))
    elif (src / SAFE_INDEX).is_file():
        for p in shards(src / SAFE_INDEX):
            state.update(load_file(str(p)))
    elif (src / PT_WEIGHTS).is_file():
        state = load_pt(src / PT_WEIGHTS)
    elif (src / PT_INDEX).is_file():
        for p in shards(src / PT_INDEX):
            state.update(load_pt(p))
    else:
        raise CgptError(f"{src}: no weights found (expected {SAFE_WEIGHTS}, {SAFE_INDEX}, {PT_WEIGHTS} or {PT_INDEX})")
    return state


def _model_config_from_hf(c: dict[str, Any], where: str) -> tuple[ModelConfig, bool]:
    """(ModelConfig, is_folded_mup) from a GPT2 config.json dict."""
    if c.get("model_type") != "gpt2":
        raise CgptError(f"{where}: model_type is {c.get('model_type')!r}, expected 'gpt2' (GPT2LMHeadModel)")
    act = c.get("activation_function", "gelu_new")
    if act != "gelu":
        raise CgptError(
            f"{where}: activation_function is {act!r}; cgpt implements only the exact erf GELU ('gelu'), "
            "so a tanh-GELU model (e.g. OpenAI GPT-2) would change function"
        )
    for key, want in (
        ("scale_attn_weights", True),
        ("scale_attn_by_inverse_layer_idx", False),
        ("add_cross_attention", False),
    ):
        if c.get(key, want) != want:
            raise CgptError(f"{where}: {key} is {c.get(key)!r}, expected {want!r} (cgpt's attention)")
    try:
        d, n_head = int(c.get("n_embd", 768)), int(c.get("n_head", 12))
        base = dict(
            n_layer=int(c.get("n_layer", 12)),
            d_model=d,
            n_head=n_head,
            d_ffn=int(c.get("n_inner") or 4 * d),
            vocab_size=int(c.get("vocab_size", 50257)),
            n_positions=int(c.get("n_positions", 1024)),
            layer_norm_eps=float(c.get("layer_norm_epsilon", 1e-5)),
        )
    except (TypeError, ValueError) as exc:
        raise CgptError(f"{where}: bad shape field in config.json ({exc})") from None
    if n_head <= 0 or d % n_head:
        raise CgptError(f"{where}: n_embd={d} is not divisible by n_head={n_head}")
    meta = c.get("cgpt") if isinstance(c.get("cgpt"), dict) else None
    if meta and isinstance(meta.get("model_config"), dict):
        try:
            cfg = ModelConfig(**meta["model_config"])
        except (TypeError, ValueError) as exc:
            raise CgptError(f"{where}: bad 'cgpt.model_config' block in config.json ({exc})") from None
        if any(getattr(cfg, k) != v for k, v in base.items()):
            raise CgptError(f"{where}: the 'cgpt' block disagrees with the GPT-2 fields of config.json")
        return cfg, bool(meta.get("folded_mup")) and is_folded(cfg)
    return ModelConfig(**base, init_std=float(c.get("initializer_range", 0.02))), False


def import_hf(src_dir: Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Read a GPT2LMHeadModel folder into (ModelConfig, cgpt state dict in fp32)."""
    src = Path(src_dir)
    c = _read_config(src)
    where = str(src)
    cfg, folded = _model_config_from_hf(c, where)
    hf_state = _load_weights(src)
    tied = bool(c.get("tie_word_embeddings", True))
    return cfg, from_hf_state_dict(hf_state, cfg, tied=tied, unfold_mup=folded, where=where)


def import_hf_to_checkpoint(src_dir: Path, ckpt_dir: Path) -> Path:
    """Import ``src_dir`` as step-0 checkpoint ``ckpt_dir/step-00000000`` (no optimizer state).

    Copies ``tokenizer.json`` (if the folder has one) to ``ckpt_dir/tokenizer.json``: continued
    pretraining must tokenize its data with exactly that tokenizer.
    """
    from cgpt.train.checkpoint import save_checkpoint

    src = Path(src_dir)
    cfg, state = import_hf(src)
    path = save_checkpoint(Path(ckpt_dir), 0, state, cfg, extra={"imported_from": str(src.resolve())})
    tok = src / "tokenizer.json"
    if tok.is_file():
        tmp = Path(ckpt_dir) / ".tokenizer.json.tmp"
        shutil.copyfile(tok, tmp)
        tmp.replace(Path(ckpt_dir) / "tokenizer.json")
    return path
