"""Each family member as a model of its own: its derived params, size, training tokens, steps and FLOPs.

A member's params are the project's params with the member's ``model:`` and ``train:`` sections
(:func:`cgpt.family.params.member_sections`), ``train.max_steps`` from ``family.tokens_per_param``,
the evaluate keys of ``family.evaluate``, and its own registered model name. The single-model stage
functions (:mod:`cgpt.stages.train`, ``evaluate``, ``export``) take these params unchanged, so a member
trains, resumes, evaluates, exports and is tracked exactly like the single model (``runs/<name>/``).

Sizes need the vocabulary (the embedding is part of N), so everything here takes ``vocab_size``:
the tokenizer's (``data/tokens/index.json``) once the data exists, else the configured one
(:func:`vocab_size_for`). Members are ordered by parameter count (then compute, then name): the
order the family trains them in and the order the scaling law grows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cgpt.config import Params, build_model_config
from cgpt.errors import ConfigError
from cgpt.eval.params import EvaluateParams
from cgpt.family.params import FamilyParams, member_sections
from cgpt.presets import GPT2_VOCAB_SIZE, ModelConfig, TrainRecipe
from cgpt.scaling.compute import training_flops

#: how the FLOPs of a member are counted (written into every point file and fit)
FLOPS_CONVENTION = "(6N + 12·L·T·d) x training tokens; N = trainable parameters, tied head counted once"


@dataclass(frozen=True)
class FamilyMember:
    """One member, resolved: what it trains (``params``) and how big it is."""

    name: str
    params: Params
    model: ModelConfig
    recipe: TrainRecipe

    @property
    def n_params(self) -> int:
        return self.model.num_params()

    @property
    def steps(self) -> int:
        return self.recipe.total_steps

    @property
    def tokens(self) -> int:
        return self.recipe.total_tokens()

    @property
    def compute(self) -> float:
        """Training FLOPs, (6N + 12·L·T·d) x tokens (:func:`cgpt.scaling.training_flops`)."""
        return training_flops(self.model, self.tokens, self.recipe.seq_len)

    def describe(self) -> dict[str, Any]:
        """The member's size and budget as plain data (point files, tables, MLflow params)."""
        m, r = self.model, self.recipe
        return {
            "name": self.name,
            "preset": self.params.model.preset,
            "parameterization": m.parameterization,
            "n_layer": m.n_layer,
            "d_model": m.d_model,
            "n_head": m.n_head,
            "d_ffn": m.d_ffn,
            "vocab_size": m.vocab_size,
            "params": self.n_params,
            "non_embedding_params": self.n_params - m.vocab_size * m.d_model - m.n_positions * m.d_model,
            "batch_size": r.batch_size,
            "seq_len": r.seq_len,
            "steps": self.steps,
            "tokens": self.tokens,
            "tokens_per_param": self.tokens / self.n_params,
            "peak_lr": r.peak_lr,
            "compute": self.compute,
            "flops_convention": FLOPS_CONVENTION,
        }


def vocab_size_for(params: Params, tokens_dir: Path | None = None) -> int:
    """The vocabulary members are sized with: the tokenizer's once ``data/tokens`` exists, else the
    configured one (``tokenize.tokenizer.vocab_size``; GPT-2's 50257 for a pretrained tokenizer)."""
    index = Path(tokens_dir) / "index.json" if tokens_dir is not None else None
    if index is not None and index.is_file():
        try:
            return int(json.loads(index.read_text(encoding="utf-8"))["vocab_size"])
        except (ValueError, KeyError):
            pass  # a damaged index: the tokenize stage reports it; size with the configured vocabulary
    tok = params.tokenize.tokenizer
    return tok.vocab_size if tok.kind == "train" else GPT2_VOCAB_SIZE


def _sections(params: Params, name: str) -> tuple[Any, Any]:
    try:
        return member_sections(params.family, name, params.train)
    except ValueError as exc:
        raise ConfigError(f"params.yaml: {exc}") from None


def member_params(params: Params, name: str, vocab_size: int, root: Path | None = None) -> Params:
    """Member ``name``'s params: what the train, evaluate and export stages run it with.

    ``root``: the project (relative paths of ``family.evaluate`` start there)."""
    model, train = _sections(params, name)
    recipe = params.model_copy(update={"model": model, "train": train}).recipe()
    n = build_model_config(model, vocab_size).num_params()
    steps = max(1, round(params.family.tokens_per_param * n / recipe.tokens_per_step))
    train = train.model_copy(update={"max_steps": steps})
    ev = params.family.evaluate
    evaluate = params.evaluate
    if ev.model_fields_set:
        try:
            evaluate = EvaluateParams.model_validate(
                {**params.evaluate.model_dump(), **ev.model_dump(include=ev.model_fields_set)},
                context={"root": root or Path.cwd()},
            )
        except ValidationError as exc:
            raise ConfigError(f"params.yaml: family.evaluate: {exc.errors()[0]['msg']}") from None
    reg = params.tracking.registered_model
    tracking = params.tracking.model_copy(update={"registered_model": f"{reg}-{name}" if reg else None})
    sections = {k: getattr(params, k) for k in type(params).model_fields}
    sections.update(model=model, train=train, evaluate=evaluate, tracking=tracking, family=FamilyParams())
    try:
        return Params.model_validate(sections)
    except ValidationError as exc:
        msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ConfigError(f"params.yaml: family.members.{name}: {msg}") from None


def resolve_member(params: Params, name: str, vocab_size: int, root: Path | None = None) -> FamilyMember:
    mp = member_params(params, name, vocab_size, root)
    return FamilyMember(name=name, params=mp, model=mp.build_model_config(vocab_size), recipe=mp.recipe())


def family_members(params: Params, vocab_size: int, root: Path | None = None) -> list[FamilyMember]:
    """Every member, smallest first (parameters, then compute, then name): the training order."""
    members = [resolve_member(params, name, vocab_size, root) for name in params.family.members]
    return sorted(members, key=lambda m: (m.n_params, m.compute, m.name))


def family_key(params: Params) -> str:
    """A short id of what the family trains (members with their resolved sections, the budget, the
    tokenizer): names its MLflow parent run. The fit settings and the sweep are not part of it."""
    members = {}
    for name in sorted(params.family.members):
        model, train = _sections(params, name)
        members[name] = {"model": model.model_dump(), "train": train.model_dump()}
    blob = {
        "members": members,
        "tokens_per_param": params.family.tokens_per_param,
        "tokenize": params.tokenize.model_dump(exclude={"workers", "batch_docs", "shard"}),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:12]
