"""The models the downstream evaluation scores, each with its own tokenizer.

* a cgpt model: ``runs/<name>/model`` (or the run folder ``runs/<name>``), with the tokenizer of
  that run, its ``hf/`` export's ``tokenizer.json`` or the project's ``data/tokens/tokenizer.json``,
  checked against the ``tokenizer_sha256`` the model recorded;
* a Hugging Face ``GPT2LMHeadModel`` folder (a cgpt export, a downloaded Cerebras-GPT checkpoint,
  OpenAI's GPT-2) with that folder's own tokenizer, loaded by transformers exactly as the
  harness's HF backend loads it.

Both are wrapped as a :class:`~cgpt.eval.scoring.ScoringModel` (hidden states, then the LM head)
inside an :class:`EvalModel` that also carries the tokenizer and ``max_length`` (the harness's: the
config's ``n_positions``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cgpt import devices
from cgpt.core.errors import CgptError
from cgpt.core.fsutil import sha256_file
from cgpt.eval.encoding import HFEncoder, TextEncoder, TokenizersEncoder
from cgpt.model.gpt import GPT

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ModelShape:
    """What decides which row of the card a model is compared with."""

    n_layer: int
    d_model: int
    n_head: int
    vocab_size: int
    mup: bool = False


class CgptScorer:
    """cgpt's :class:`GPT`; shared-context rows use its ``position_ids``/``attn_mask`` path."""

    supports_shared_context = True

    def __init__(self, model: GPT, *, device: torch.device, max_length: int | None = None) -> None:
        self.model = model.eval()
        self.device = device
        self.max_length = max_length or model.config.n_positions

    def hidden_states(self, input_ids, position_ids, attn_mask):
        return self.model.hidden(input_ids, position_ids=position_ids, attn_mask=attn_mask)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.logits_from_hidden(hidden)


class HFScorer:
    """A transformers ``GPT2LMHeadModel``: ``model.transformer`` for hidden states, ``model.lm_head`` for logits.

    Shared-context rows pass explicit ``position_ids`` and a custom 4-D mask (bool for SDPA, additive
    float for eager attention). :meth:`check_shared_context` verifies once, on a tiny input, that this
    transformers version honours both; if not, rows fall back to one request each.
    """

    def __init__(self, model: Any, *, device: torch.device, max_length: int | None = None) -> None:
        if getattr(model.config, "model_type", None) != "gpt2":
            raise CgptError(f"model_type {model.config.model_type!r}: only GPT2LMHeadModel folders are supported")
        self.model = model.eval()
        self.device = device
        self.max_length = max_length or int(model.config.n_positions)
        impl = getattr(model.config, "_attn_implementation", "sdpa") or "sdpa"
        self._float_mask = impl == "eager"
        self.supports_shared_context = impl in ("sdpa", "eager")
        if self.supports_shared_context:
            self.supports_shared_context = self.check_shared_context()

    def hidden_states(self, input_ids, position_ids, attn_mask):
        kwargs: dict[str, Any] = {}
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        if attn_mask is not None:
            if self._float_mask:
                dtype = next(self.model.parameters()).dtype
                attn_mask = torch.zeros(attn_mask.shape, dtype=dtype, device=attn_mask.device).masked_fill(
                    ~attn_mask, torch.finfo(dtype).min
                )
            kwargs["attention_mask"] = attn_mask
        return self.model.transformer(input_ids=input_ids, use_cache=False, **kwargs).last_hidden_state

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.lm_head(hidden)

    @torch.inference_mode()
    def check_shared_context(self) -> bool:
        from cgpt.eval.scoring import shared_context_mask

        vocab = int(self.model.config.vocab_size)
        g = torch.Generator().manual_seed(0)
        a, b, c = (torch.randint(0, vocab, (n,), generator=g) for n in (5, 3, 4))
        packed = torch.cat([a, b, c])[None].to(self.device)
        pos = torch.cat([torch.arange(5), torch.arange(5, 8), torch.arange(5, 9)])[None].to(self.device)
        seg = torch.tensor([[0] * 5 + [1] * 3 + [2] * 4], device=self.device)
        try:
            got = self.hidden_states(packed, pos, shared_context_mask(seg))[0, 5:]
        except Exception as exc:  # an unsupported mask format in this transformers version
            log.warning("shared-context rows disabled for this model (%s: %s)", type(exc).__name__, exc)
            return False
        ref_b = self.hidden_states(torch.cat([a, b])[None].to(self.device), None, None)[0, 5:]
        ref_c = self.hidden_states(torch.cat([a, c])[None].to(self.device), None, None)[0, 5:]
        diff = float((got - torch.cat([ref_b, ref_c])).abs().max())
        tol = 1e-4 if next(self.model.parameters()).dtype == torch.float32 else 5e-2
        if not diff <= tol:
            log.warning("shared-context rows disabled: this transformers version ignores custom masks (%.2e)", diff)
            return False
        return True


@dataclass
class EvalModel:
    """A model ready to score: the network, its tokenizer, and where it came from."""

    scorer: CgptScorer | HFScorer
    encoder: TextEncoder
    name: str
    shape: ModelShape | None = None

    @property
    def max_length(self) -> int:
        return self.scorer.max_length


def resolve_device(name: str) -> torch.device:
    """:func:`cgpt.devices.resolve_device` as a :class:`torch.device` (``--device`` of ``cgpt eval``)."""
    return torch.device(devices.resolve_device(name, setting="device", fix="use --device cpu"))


def _dtype(name: str, device: torch.device) -> torch.dtype:
    if name not in DTYPES:
        raise CgptError(f"dtype {name!r}: expected one of {', '.join(DTYPES)}")
    if name != "float32" and device.type == "cpu":
        raise CgptError(f"dtype {name} on CPU: use float32 (half precision is for CUDA devices)")
    return DTYPES[name]


def cgpt_eval_model(
    model: GPT,
    tokenizer: Any,
    *,
    name: str = "cgpt",
    device: str | torch.device = "cpu",
    dtype: str = "float32",
    max_length: int | None = None,
) -> EvalModel:
    """An in-memory cgpt model and its ``tokenizers.Tokenizer`` (what a pipeline stage holds)."""
    dev = torch.device(device) if isinstance(device, torch.device) else resolve_device(device)
    model = model.to(device=dev, dtype=_dtype(dtype, dev))
    cfg = model.config
    shape = ModelShape(cfg.n_layer, cfg.d_model, cfg.n_head, cfg.vocab_size, cfg.is_mup)
    return EvalModel(CgptScorer(model, device=dev, max_length=max_length), TokenizersEncoder(tokenizer), name, shape)


def hf_eval_model(
    model: Any, tokenizer: Any, *, name: str = "hf", max_length: int | None = None, mup: bool = False
) -> EvalModel:
    """An in-memory transformers GPT2LMHeadModel (already on its device and dtype) and its tokenizer."""
    c = model.config
    shape = ModelShape(int(c.n_layer), int(c.n_embd), int(c.n_head), int(c.vocab_size), mup)
    scorer = HFScorer(model, device=next(model.parameters()).device, max_length=max_length)
    return EvalModel(scorer, HFEncoder(tokenizer), name, shape)


# --------------------------------------------------------------------------------------------- loading


def _cgpt_tokenizer(model_dir: Path, info: dict[str, Any], explicit: Path | None) -> tuple[Any, Path]:
    """The run's tokenizer, checked against the model's recorded ``tokenizer_sha256``."""
    from cgpt.data.tokenize.tokenizer import load_tokenizer, tokenizer_sha256

    if explicit is not None:
        candidates = [Path(explicit)]
    else:
        run_dir = model_dir.parent
        candidates = [run_dir / "hf" / "tokenizer.json", run_dir.parent.parent / "data" / "tokens" / "tokenizer.json"]
    found = [c for c in candidates if c.exists()]
    if not found:
        raise CgptError(
            f"{model_dir}: no tokenizer found (looked for {', '.join(map(str, candidates))}); pass --tokenizer"
        )
    path = found[0]
    tok = load_tokenizer(path)
    want = str(info.get("tokenizer_sha256") or "")
    if want:
        file_sha = sha256_file(path) if path.is_file() else ""
        if want not in (file_sha, tokenizer_sha256(tok)):
            raise CgptError(
                f"{path}: tokenizer sha256 {file_sha or tokenizer_sha256(tok)} differs from the {want} that "
                f"{model_dir} was trained with; pass --tokenizer with the run's data/tokens/tokenizer.json"
            )
    else:
        log.warning("%s records no tokenizer_sha256; using %s unchecked", model_dir, path)
    return tok, path


def _load_cgpt(
    model_dir: Path, tokenizer: Path | None, device: torch.device, dtype: str, max_length: int | None
) -> EvalModel:
    from cgpt.train.checkpoint import load_model_dir

    cfg, state, info = load_model_dir(model_dir)
    tok, _ = _cgpt_tokenizer(model_dir, info, tokenizer)
    model = GPT(cfg)
    model.load_state_dict(state)
    return cgpt_eval_model(model, tok, name=str(model_dir), device=device, dtype=dtype, max_length=max_length)


def _hf_is_mup(config: dict[str, Any]) -> bool:
    meta = config.get("cgpt")
    mc = meta.get("model_config") if isinstance(meta, dict) else None
    return isinstance(mc, dict) and mc.get("parameterization") == "mup"


def _load_hf(
    folder: Path, tokenizer: Path | None, device: torch.device, dtype: str, max_length: int | None
) -> EvalModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CgptError(f"{folder / 'config.json'}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if config.get("model_type") != "gpt2":
        raise CgptError(
            f"{folder}: model_type is {config.get('model_type')!r}; only GPT2LMHeadModel folders are supported"
        )
    tok_dir = Path(tokenizer) if tokenizer is not None else folder
    try:
        tok = AutoTokenizer.from_pretrained(str(tok_dir))
    except Exception as exc:  # transformers raises many types for a folder without tokenizer files
        raise CgptError(f"{tok_dir}: cannot load a tokenizer ({type(exc).__name__}); pass --tokenizer") from None
    torch_dtype = _dtype(dtype, device)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch_dtype).to(device=device, dtype=torch_dtype)
    return hf_eval_model(model, tok, name=str(folder), max_length=max_length, mup=_hf_is_mup(config))


def load_eval_model(
    path: str | Path,
    *,
    tokenizer: str | Path | None = None,
    device: str = "auto",
    dtype: str = "float32",
    max_length: int | None = None,
) -> EvalModel:
    """Load a run folder, a cgpt model folder or a Hugging Face GPT2LMHeadModel folder for evaluation."""
    from cgpt.train.checkpoint import MODEL_DIR_CONFIG

    p = Path(path)
    dev = resolve_device(device)
    tok = Path(tokenizer) if tokenizer is not None else None
    if (p / MODEL_DIR_CONFIG).is_file():
        return _load_cgpt(p, tok, dev, dtype, max_length)
    if (p / "model" / MODEL_DIR_CONFIG).is_file():
        return _load_cgpt(p / "model", tok, dev, dtype, max_length)
    if (p / "config.json").is_file():
        return _load_hf(p, tok, dev, dtype, max_length)
    raise CgptError(
        f"{p}: not a model: expected a run folder (runs/<name>), a cgpt model folder ({MODEL_DIR_CONFIG}) "
        "or a Hugging Face folder (config.json)"
    )
