"""Each family member as a model of its own: its derived params, size, training tokens, steps and FLOPs.

A member's params are the project's params with the member's ``model:`` and ``train:`` sections
(:func:`cgpt.family.params.member_sections`), ``train.max_steps`` from ``family.tokens_per_param``,
the evaluate keys of ``family.evaluate``, and its own registered model name, in the view of
params.yaml the stage reads (:func:`member_params`'s ``view``: a stage's ``StageParams``). The
single-model stage functions (:mod:`cgpt.stages.train`, ``evaluate``, ``export``) take these params
unchanged, so a member trains, resumes, evaluates, exports and is tracked exactly like the single
model (``runs/<name>/``).

Sizes need the vocabulary (the embedding is part of N), so everything here takes ``vocab_size``:
the tokenizer's (``data/tokens/index.json``) once the data exists, else the configured one
(:func:`cgpt.data.tokens.vocab_size_for`). Members are ordered by parameter count (then compute, then name): the
order the family trains them in and the order the scaling law grows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cgpt.core.errors import ConfigError
from cgpt.core.sections import Sections
from cgpt.family.params import family_tokens_spec, member_sections
from cgpt.model.params import build_model_config
from cgpt.presets import ModelConfig, TrainRecipe
from cgpt.scaling.compute import training_flops
from cgpt.train.params import TrainingSections, resolve_recipe

#: any view of params.yaml holding the sections a function reads (the whole file's ``Params``, a
#: stage's ``StageParams``): duck-typed, so this module needs no schema it does not read
ParamsView = Any

V = TypeVar("V", bound=Sections)

#: how the FLOPs of a member are counted (written into every point file and fit)
FLOPS_CONVENTION = "(6N + 12·L·T·d) x training tokens; N = trainable parameters, tied head counted once"


@dataclass(frozen=True)
class FamilyMember:
    """One member, resolved: what it trains (``params``) and how big it is."""

    name: str
    params: TrainingSections  # the member's model: and train: sections
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


def _sections(params: ParamsView, name: str) -> tuple[Any, Any]:
    try:
        return member_sections(params.family, name, params.train)
    except ValueError as exc:
        raise ConfigError(f"params.yaml: {exc}") from None


def member_params(
    params: ParamsView, name: str, vocab_size: int, root: Path | None = None, view: type[V] | None = None
) -> V:
    """Member ``name``'s params, as ``view`` (default: ``params``' own type) sees params.yaml: what the
    train, evaluate and export stages run it with.

    ``params`` holds ``family``, ``train`` and whatever else ``view`` reads; the member's ``model``
    and ``train`` replace the project's, ``evaluate`` takes ``family.evaluate``'s keys, ``tracking``
    registers the member's model under its own name, and a member has no ``family``.
    ``root``: the project (relative paths of ``family.evaluate`` start there)."""
    view = view or type(params)
    model, train = _sections(params, name)
    recipe = resolve_recipe(model.preset, train)
    n = build_model_config(model, vocab_size).num_params()
    steps = max(1, round(params.family.tokens_per_param * n / recipe.tokens_per_step))
    train = train.model_copy(update={"max_steps": steps})
    sections = {k: getattr(params, k) for k in view.model_fields if hasattr(params, k)}
    sections.update(model=model, train=train)
    if "tokenize" in sections and params.family.tokenizer is not None:  # the family's own tokenizer
        own = params.family.tokenizer.model_dump(exclude_unset=True)
        sections["tokenize"] = {**params.tokenize.model_dump(), "tokenizer": own}
    if "evaluate" in sections:
        sections["evaluate"] = _member_evaluate(params.evaluate, params.family.evaluate, root)
    if "tracking" in sections:
        reg = params.tracking.registered_model
        sections["tracking"] = params.tracking.model_copy(update={"registered_model": f"{reg}-{name}" if reg else None})
    if "family" in sections:
        sections["family"] = type(params.family)()
    try:
        return view.model_validate(sections)
    except ValidationError as exc:
        msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ConfigError(f"params.yaml: family.members.{name}: {msg}") from None


def _member_evaluate(evaluate: BaseModel, overrides: Any, root: Path | None) -> BaseModel:
    """The ``evaluate:`` section with ``family.evaluate``'s keys over it (a mapping, or the checked
    overrides of the whole file's schema)."""
    if isinstance(overrides, BaseModel):
        overrides = overrides.model_dump(include=overrides.model_fields_set)
    if not overrides:
        return evaluate
    try:
        return type(evaluate).model_validate(
            {**evaluate.model_dump(), **overrides}, context={"root": root or Path.cwd()}
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        where = f"family.evaluate.{key}" if key else "family.evaluate"
        raise ConfigError(f"params.yaml: {where}: {err['msg'].removeprefix('Value error, ')}") from None


def resolve_member(params: ParamsView, name: str, vocab_size: int, root: Path | None = None) -> FamilyMember:
    mp = member_params(params, name, vocab_size, root, view=TrainingSections)
    return FamilyMember(name=name, params=mp, model=mp.build_model_config(vocab_size), recipe=mp.recipe())


def family_members(params: ParamsView, vocab_size: int, root: Path | None = None) -> list[FamilyMember]:
    """Every member, smallest first (parameters, then compute, then name): the training order."""
    members = [resolve_member(params, name, vocab_size, root) for name in params.family.members]
    return sorted(members, key=lambda m: (m.n_params, m.compute, m.name))


def family_key(params: ParamsView) -> str:
    """A short id of what the family trains (members with their resolved sections, the budget, the
    tokenizer): names its MLflow parent run. The fit settings and the sweep are not part of it."""
    members = {}
    for name in sorted(params.family.members):
        model, train = _sections(params, name)
        members[name] = {"model": model.model_dump(), "train": train.model_dump()}
    blob = {
        "members": members,
        "tokens_per_param": params.family.tokens_per_param,
        "tokenize": family_tokens_spec(params).model_dump(),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:12]
