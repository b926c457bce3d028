"""params.yaml as one validated object: the only parser of configuration in cgpt.

A bad value stops everything with one line naming the key, the value and what was expected::

    params.yaml: model.n_head = 5: must divide model.d_model = 192

Each section's model lives beside the code that owns it (``cgpt/data/*/params.py``,
``cgpt/model/params.py``, ``cgpt/train/params.py``, ...) and is composed here, with the checks that
span sections and the resolved views (the model shape, the recipe) every stage shares.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from cgpt.data.clean.params import CleanParams
from cgpt.data.download.params import DownloadParams
from cgpt.data.tokenize.params import TokenizeParams
from cgpt.errors import ConfigError
from cgpt.eval.params import EvaluateParams
from cgpt.export.params import ExportParams
from cgpt.family.params import FamilyParams, member_sections
from cgpt.model.params import ModelParams
from cgpt.presets import (
    MUP_BASE_INIT_STD,
    MUP_EMBEDDINGS_SCALE,
    PRESETS,
    SP_INIT_STD,
    ModelConfig,
    Preset,
    TrainRecipe,
)
from cgpt.tracking.params import TrackingParams
from cgpt.train.params import TrainParams

PARAMS_FILE = "params.yaml"


class Params(BaseModel):
    """The whole params.yaml; every section optional (its defaults are the documented ones)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    download: DownloadParams = DownloadParams()
    clean: CleanParams = CleanParams()
    tokenize: TokenizeParams = TokenizeParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    export: ExportParams = ExportParams()
    tracking: TrackingParams = TrackingParams()
    family: FamilyParams = FamilyParams()

    @model_validator(mode="after")
    def _context_fits_positions(self) -> Params:
        preset = PRESETS[self.model.preset]
        seq_len = self.train.seq_len or preset.recipe.seq_len
        n_pos = self.model.n_positions or preset.model.n_positions
        if seq_len > n_pos:
            raise ValueError(f"train.seq_len = {seq_len}: must be at most model.n_positions = {n_pos}")
        warm = self.train.warmup_steps
        if warm is not None and self.train.max_steps is not None and warm > self.train.max_steps:
            raise ValueError(f"train.warmup_steps = {warm}: must be at most train.max_steps = {self.train.max_steps}")
        official = {s.split for s in self.download.sources if s.split}
        for split in self.evaluate.splits:
            if getattr(self.tokenize.split, split) == 0 and split not in official:
                raise ValueError(
                    f"evaluate.splits includes {split!r}, but tokenize.split.{split} = 0 and no download source "
                    f"has split: {split}, so that split will be empty; remove it from evaluate.splits"
                )
        for name in self.family.members:
            if name == self.train.run_name:
                raise ValueError(
                    f"family.members.{name}: the name is train.run_name's, and both would write runs/{name}/; "
                    "rename the member or the single model's run"
                )
            member_sections(self.family, name, self.train)  # one line naming the member's bad key
        return self

    @model_validator(mode="after")
    def _batch_splits_over_ranks(self) -> Params:
        """Every rank takes an equal, contiguous share of each global batch (same math at any world
        size), so the batch (both 13B batches) must divide by the world size when params fix it."""
        d = self.train.distributed
        if d.nproc_per_node == "auto":
            return self  # known at launch: cgpt.train.launch checks it there
        world = d.nproc_per_node * d.nnodes
        recipe = self.recipe()
        batches = [recipe.batch_size] + ([recipe.batch_switch.batch_size] if recipe.batch_switch else [])
        for b in batches:
            if b % world:
                raise ValueError(
                    f"train.distributed: the global batch of {b} sequences does not divide by the world size "
                    f"{world} (nproc_per_node {d.nproc_per_node} x nnodes {d.nnodes}); every rank takes an equal "
                    "share of each batch: change train.batch_size or the number of processes"
                )
        return self

    # ---- resolved views -------------------------------------------------------------------

    @property
    def preset(self) -> Preset:
        return PRESETS[self.model.preset]

    def build_model_config(self, vocab_size: int) -> ModelConfig:
        """The preset's shape with overrides applied and the tokenizer's vocabulary size.

        Switching an SP preset to ``parameterization: mup`` takes the Cerebras-GPT muP defaults
        (σ_base 0.08, embeddings x 10, output layers σ_base/√m/√(2L)) unless ``init_std`` /
        ``embeddings_scale`` say otherwise; switching a muP preset to SP takes the SP ones (σ 0.02,
        embeddings x 1, output layers σ/√(2L))."""
        return build_model_config(self.model, vocab_size)

    def recipe(self) -> TrainRecipe:
        """The preset's recipe with train.* overrides.

        ``max_steps`` sets the run's length; unless ``warmup_steps`` is given too, the warm-up
        keeps the preset's share of the run (e.g. 30 of 300 steps -> 2 of 20), and the decay fills
        the rest, so the LR still ends at end_lr on the last step.
        """
        r, t = self.preset.recipe, self.train
        peak = t.lr if t.lr is not None else r.peak_lr
        ratio = t.end_lr_ratio if t.end_lr_ratio is not None else r.end_lr / r.peak_lr
        total = t.max_steps if t.max_steps is not None else r.total_steps
        if t.warmup_steps is not None:
            warm = t.warmup_steps
        elif t.max_steps is not None:
            warm = round(r.warmup_steps * total / r.total_steps)
        else:
            warm = r.warmup_steps
        changed = {
            "peak_lr": peak,
            "end_lr": peak * ratio,
            "warmup_steps": warm,
            "decay_steps": total - warm,
            "batch_size": t.batch_size or r.batch_size,
            "seq_len": t.seq_len or r.seq_len,
            "decay": t.decay or r.decay,
            "weight_decay": t.weight_decay if t.weight_decay is not None else r.weight_decay,
            "grad_clip": t.grad_clip or r.grad_clip,
            "eps": t.adam_eps or r.eps,
        }
        if t.max_steps is not None or t.batch_size is not None:
            changed["batch_switch"] = None  # a custom length or batch replaces the 13B switch
        return replace(r, **changed)


def build_model_config(model: ModelParams, vocab_size: int) -> ModelConfig:
    """:meth:`Params.build_model_config` for a ``model:`` section (a family member's, too)."""
    base = PRESETS[model.preset].model
    overrides = {k: v for k, v in model.model_dump(exclude={"preset", "parameterization"}).items() if v is not None}
    if "d_model" in overrides and "d_ffn" not in overrides:
        overrides["d_ffn"] = 4 * overrides["d_model"]
    kind = model.resolved_parameterization
    if kind != base.parameterization:
        mup = kind == "mup"
        base = replace(
            base,
            parameterization=kind,
            init_std=MUP_BASE_INIT_STD if mup else SP_INIT_STD,
            embeddings_scale=MUP_EMBEDDINGS_SCALE if mup else 1.0,
            output_init_std=None,
        )
    return replace(base, vocab_size=vocab_size, **overrides)


def _format_error(err: dict[str, Any], source: str) -> str:
    loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    value = err.get("input")
    if err["type"] == "extra_forbidden":
        return (
            f"{source}: unknown key {loc} (value {value!r}); check the spelling against the README's params reference"
        )
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{source}: {loc} is required"
    if not loc:
        return f"{source}: {msg}"
    if isinstance(value, (dict, list)):  # a check across several keys of one section
        return f"{source}: {loc}.{msg}" if re.match(r"^[\w.\[\]]+ = ", msg) else f"{source}: {loc}: {msg}"
    return f"{source}: {loc} = {value!r}: {msg}"


def parse_params(raw: dict[str, Any] | None, source: str = "params.yaml", root: Path | None = None) -> Params:
    """Validate a params mapping; raise :class:`ConfigError` with one line on the first problem.

    ``root`` is where relative paths in the params start (default: the working directory).
    """
    try:
        return Params.model_validate(raw or {}, context={"root": root or Path.cwd()})
    except ValidationError as exc:
        errors = exc.errors()
        line = _format_error(errors[0], source)
        if len(errors) > 1:
            line += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        raise ConfigError(line) from None


def _read_raw(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        raise ConfigError(f"{path}: no such params file (run from the project root, or pass --params)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (download, clean, ...), got {type(raw).__name__}")
    return raw


def load_params(path: str | Path = "params.yaml", set_params: Sequence[str] = ()) -> Params:
    """Read and validate a params file, with ``dvc exp run -S`` style ``set_params`` applied first
    (see :func:`apply_overrides`), so an experiment's parameters are checked before DVC runs it."""
    path = Path(path)
    raw = _read_raw(path)
    source = str(path)
    if set_params:
        raw = apply_overrides(raw, set_params)
        source = f"{path} with set_params"
    return parse_params(raw, source, root=path.resolve().parent)


# ---- dvc exp run -S ---------------------------------------------------------------------------


def _parse_override(text: str) -> Any:
    """One ``[params.yaml:][+|++|~]key[=value]`` as Hydra parses it (DVC's ``-S`` grammar)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    file, sep, rest = text.partition(":") if ":" in text.partition("=")[0] else ("", "", text)
    if sep and file != PARAMS_FILE:
        raise ConfigError(f"set_params: {text!r}: cgpt's parameters live in {PARAMS_FILE}, not {file}")
    try:
        (override,) = OverridesParser.create().parse_overrides([rest])
    except HydraException as exc:
        detail = str(exc).splitlines()[-1].strip() if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"set_params: {text!r} is not key=value, +key=value or ~key ({detail})") from None
    key = override.key_or_group
    if override.package is not None or not key or "" in key.split(".") or "/" in key:
        raise ConfigError(f"set_params: {text!r}: expected a dotted params key such as train.lr")
    if override.is_sweep_override():
        raise ConfigError(f"set_params: {text!r} is a sweep; give one value (one flow run is one experiment)")
    return override


def _lookup(data: Any, parts: list[str]) -> tuple[bool, Any]:
    for part in parts:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return False, None
    return True, data


def _merge(old: Any, new: Any) -> Any:
    """Hydra's merge of an override value: mappings merge key by key, anything else replaces."""
    if isinstance(old, dict) and isinstance(new, dict):
        return {**old, **{k: _merge(old.get(k), v) for k, v in new.items()}}
    return copy.deepcopy(new)


def _assign(data: dict[str, Any], parts: list[str], value: Any, text: str) -> None:
    node: Any = data
    for part in parts[:-1]:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict):
            if not isinstance(node.get(part), (dict, list)):
                node[part] = {}
            node = node[part]
        else:
            raise ConfigError(f"set_params: {text!r}: {'.'.join(parts)} does not name a key of {PARAMS_FILE}")
    last = parts[-1]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = _merge(node[int(last)], value)
    elif isinstance(node, dict):
        node[last] = _merge(node.get(last), value)
    else:
        raise ConfigError(f"set_params: {text!r}: {'.'.join(parts)} does not name a key of {PARAMS_FILE}")


def apply_overrides(raw: dict[str, Any] | None, overrides: Sequence[str]) -> dict[str, Any]:
    """``raw`` (a params mapping, not changed) with ``dvc exp run -S`` overrides applied, as DVC
    will write them into params.yaml (:func:`dvc_overrides`): ``key=value`` and ``++key=value`` set
    a key, even one params.yaml leaves at its default; ``+key=value`` adds a key that is not set;
    ``~key`` removes one (back to cgpt's default). Values follow Hydra's grammar, as in DVC:
    ``1e-3`` is a float, ``null`` is None, ``[1,2]`` a list, ``'1'`` a string.

    Only the mapping is computed here; validating it is :func:`parse_params`'s job.
    """
    data = copy.deepcopy(raw) if raw else {}
    for text in overrides:
        override = _parse_override(text)
        parts = override.key_or_group.split(".")
        value = override.value()
        found, current = _lookup(data, parts)
        if override.is_delete():
            if current is None:  # Hydra treats a null value as absent too
                raise ConfigError(f"set_params: {text!r}: {override.key_or_group} is not set in {PARAMS_FILE}")
            if value is not None and value != current:
                raise ConfigError(f"set_params: {text!r}: {override.key_or_group} is {current!r}, not {value!r}")
            parent = _lookup(data, parts[:-1])[1]
            del parent[int(parts[-1]) if isinstance(parent, list) else parts[-1]]
        elif override.is_add() and current is not None and not isinstance(value, (dict, list)):
            raise ConfigError(
                f"set_params: {text!r}: {override.key_or_group} is already set "
                f"(to {current!r}); drop the + to change it"
            )
        else:
            _assign(data, parts, value, text)
    return data


def dvc_overrides(overrides: Sequence[str]) -> list[str]:
    """The ``-S`` arguments for ``dvc exp run``: a plain ``key=value`` becomes ``++key=value``
    (DVC refuses to set a key params.yaml does not spell out, and most of cgpt's keys are optional;
    cgpt's validator has already refused misspelt ones), ``params.yaml:`` prefixes are dropped."""
    out = []
    for text in overrides:
        override = _parse_override(text)
        rest = text.partition(":")[2] if ":" in text.partition("=")[0] else text
        out.append(f"++{rest}" if override.type.name == "CHANGE" else rest)
    return out
