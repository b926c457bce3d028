"""The ``family:`` section of params.yaml: the members of a model family, how they are trained, what is fitted.

A family is trained smallest to largest; each member is a model of its own (``runs/<name>/``, its
own DVC stages and MLflow run) whose configuration is the project's, changed by:

* ``defaults``, then the member's own keys: any ``model:`` key (``preset``, ``n_layer``, ``d_model``,
  ``n_head``, ``d_ffn``, ``n_positions``, ``parameterization``, ``init_std``, ``output_mult``,
  ``mup_base_width``, ``embeddings_scale``) and any ``train:`` key except ``run_name`` (the member's
  name) and ``max_steps`` (from ``tokens_per_param``): the recipe keys (``lr``, ``batch_size``,
  ``seq_len``, ``warmup_steps``...) and loop keys (``eval_interval``, ``threads``...). The set of
  keys follows :class:`~cgpt.model.params.ModelParams` and :class:`~cgpt.train.params.TrainParams`,
  so a train key added later (a distributed trainer's) is a member key too.
* ``parameterization: mup`` members take ``mup`` (the values the muP sweep chose) unless they set
  the key themselves; SP members keep their recipe's values.
* ``tokens_per_param``: training tokens = this x the member's parameters (tied head counted once),
  rounded to whole steps of ``batch_size x seq_len`` tokens.

Members, ``defaults``, ``mup`` and ``fit`` are validated here; the derived per-member params are
built (and validated once more, as a whole) by :mod:`cgpt.family.members`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from cgpt.core.sections import optional_fields
from cgpt.data.tokenize.params import TokenizerParams, TokensSpec
from cgpt.model.params import ModelParams
from cgpt.presets import PRESETS
from cgpt.train.params import RECIPE_KEYS, TrainParams

#: train keys a member may not set: its folder/run name is the member's name, its length follows tokens_per_param
DERIVED_TRAIN_KEYS = ("run_name", "max_steps")
#: train keys that make up the recipe: a member takes them from ``defaults``/itself, never from the
#: project's ``train:`` (which configures the single model); every other train key (seed, precision,
#: device, threads, intervals...) passes through from the project's ``train:``
#: (the micro-batch too: it follows the member's shape)
RECIPE_TRAIN_KEYS = (*(k for k in RECIPE_KEYS if k not in DERIVED_TRAIN_KEYS), "micro_batch_size")
MODEL_KEYS = tuple(ModelParams.model_fields)
TRAIN_KEYS = tuple(k for k in TrainParams.model_fields if k not in DERIVED_TRAIN_KEYS)
#: no "." in a member's name: dvc.yaml reads family.members.<name> as a params key, and DVC splits keys at dots
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]*"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class _MemberBase(_Strict):
    @model_validator(mode="before")
    @classmethod
    def _derived_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in DERIVED_TRAIN_KEYS:
                if key in data:
                    why = "is the member's name" if key == "run_name" else "follows family.tokens_per_param"
                    raise ValueError(f"{key} = {data[key]!r}: a member's {key} {why}; remove it")
        return data

    @field_validator("preset", check_fields=False)
    @classmethod
    def _known_preset(cls, v: str | None) -> str | None:
        if v is not None and v not in PRESETS:
            raise ValueError(f"unknown preset; expected one of {', '.join(PRESETS)}")
        return v

    def model_keys(self) -> dict[str, Any]:
        return {k: v for k in MODEL_KEYS if (v := getattr(self, k)) is not None}

    def train_keys(self) -> dict[str, Any]:
        return {k: v for k in TRAIN_KEYS if (v := getattr(self, k)) is not None}


#: One member (or the ``defaults`` every member starts from): model and train keys, all optional.
MemberSpec: type[_MemberBase] = create_model(  # type: ignore[call-overload]
    "MemberSpec",
    __base__=_MemberBase,
    __doc__="A member's model and train keys (null or absent: the defaults', then the preset's).",
    **optional_fields(ModelParams, MODEL_KEYS),
    **optional_fields(TrainParams, TRAIN_KEYS),
)


class FitParams(_Strict):
    """What is fitted: the members' ``metric`` cross-entropy (nats/token, whole split) against their
    training FLOPs, (6N + 12·L·T·d) x tokens (:func:`cgpt.scaling.training_flops`)."""

    metric: Literal["val", "test"] = "val"
    # auto: power below 5 points, else saturating with c free (its log-linear limit when c runs to its bound)
    form: Literal["auto", "saturating", "power", "loglinear"] = "auto"
    level: float = Field(0.95, gt=0, lt=1)  # prediction-interval level
    sigma_known: float | None = Field(None, gt=0)  # known member scatter (nats): intervals from 2 points on
    shots: int = Field(0, ge=0)  # which downstream accuracies the two-step accuracy forecast uses


class MupParams(_Strict):
    """The muP hyperparameters every ``parameterization: mup`` member uses (null: the preset's, i.e.
    the Cerebras-GPT values σ_base 0.08, LR 6e-3, base width 256, embeddings x 10, output x 1).
    ``flows/mup_sweep.py`` writes its chosen ``lr``, ``init_std`` and ``output_mult`` here."""

    base_width: int | None = Field(None, gt=0)
    lr: float | None = Field(None, gt=0)
    init_std: float | None = Field(None, gt=0)
    output_mult: float | None = Field(None, gt=0)
    embeddings_scale: float | None = Field(None, gt=0)

    def member_keys(self) -> dict[str, Any]:
        """The member keys these values set (``base_width`` is ``mup_base_width``)."""
        keys = {
            "mup_base_width": self.base_width,
            "lr": self.lr,
            "init_std": self.init_std,
            "output_mult": self.output_mult,
            "embeddings_scale": self.embeddings_scale,
        }
        return {k: v for k, v in keys.items() if v is not None}


class ProxyShape(_Strict):
    """The sweep's proxy: ``d_model`` is the muP base width (m = 1); the transfer widths keep its
    depth and head width."""

    n_layer: int = Field(2, gt=0)
    d_model: int = Field(32, gt=0)
    n_head: int = Field(2, gt=0)

    @model_validator(mode="after")
    def _heads(self) -> ProxyShape:
        if self.d_model % self.n_head:
            raise ValueError(f"n_head = {self.n_head}: must divide d_model = {self.d_model}")
        return self


class SweepParams(_Strict):
    """The muP hyperparameter sweep (``flows/mup_sweep.py``): trials on the proxy, then the transfer check."""

    proxy: ProxyShape = ProxyShape()
    search: Literal["grid", "random"] = "grid"
    lr: list[float] = Field(default_factory=lambda: [1e-3, 3e-3, 1e-2, 3e-2])
    init_std: list[float] = Field(default_factory=lambda: [0.08])
    output_mult: list[float] = Field(default_factory=lambda: [1.0])
    trials: int | None = Field(None, gt=0)  # random search: this many draws (log-uniform within each list's range)
    seed: int = 0
    max_steps: int = Field(200, gt=0)  # each trial's length (the members' batch and seq_len)
    transfer_widths: list[int] = Field(default_factory=lambda: [32, 64, 128])  # d_model of each width's LR curve
    workers: int = Field(2, gt=0)  # trials at a time (each with cores / workers threads)

    @field_validator("lr", "init_std", "output_mult")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if not v or any(x <= 0 for x in v):
            raise ValueError("expected a non-empty list of positive numbers")
        return sorted(set(v))

    @field_validator("transfer_widths")
    @classmethod
    def _widths(cls, v: list[int]) -> list[int]:
        if any(w <= 0 for w in v):
            raise ValueError("expected positive widths (d_model)")
        return sorted(set(v))

    @model_validator(mode="after")
    def _random_needs_trials(self) -> SweepParams:
        if self.search == "random" and self.trials is None:
            raise ValueError("search = 'random': set sweep.trials (how many draws)")
        if self.search == "grid" and self.trials is not None:
            raise ValueError(f"trials = {self.trials}: only used with search: random; remove it")
        d_head = self.proxy.d_model // self.proxy.n_head
        for w in self.transfer_widths:
            if w % d_head:
                raise ValueError(
                    f"transfer_widths: {w} is not a multiple of the proxy's head width {d_head} "
                    "(each width keeps the proxy's depth and head width)"
                )
        return self


class FamilyParams(_Strict):
    """The family: members (name -> member keys), their shared defaults, the budget, the fit, muP and the sweep."""

    # the family's own tokenization of the corpus (family/tokens; null: tokenize.tokenizer's), so a
    # family can be sized for scaling (e.g. kind: bytes) while the single model keeps its BPE
    tokenizer: TokenizerParams | None = None
    tokens_per_param: float = Field(20.0, gt=0)
    fit: FitParams = FitParams()
    defaults: MemberSpec = MemberSpec()  # type: ignore[valid-type]
    # evaluate keys that differ for the members (e.g. fewer downstream documents), checked key by key
    # against the evaluate section's schema where the evaluation reads them (cgpt.config.FamilySection,
    # a member's evaluate stage): a mapping here, so a member's training does not depend on that schema
    evaluate: dict[str, Any] = Field(default_factory=dict)
    mup: MupParams = MupParams()
    sweep: SweepParams = SweepParams()
    members: dict[str, MemberSpec] = Field(default_factory=dict)  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _proxy_is_the_base(self) -> FamilyParams:
        base, proxy = self.mup.base_width, self.sweep.proxy.d_model
        if base is not None and base != proxy:
            raise ValueError(
                f"sweep.proxy.d_model = {proxy}: must equal mup.base_width = {base} "
                "(the sweep tunes the muP hyperparameters at the base width, m = 1)"
            )
        return self

    @field_validator("members")
    @classmethod
    def _names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            if not re.fullmatch(NAME_PATTERN, str(name)):
                raise ValueError(
                    f"member name {name!r}: expected letters, digits, '_', '-' (it names the folder runs/<name>; "
                    "no '.': DVC reads family.members.<name> as a params key and splits it at dots)"
                )
        return v


def family_tokens_spec(params: Any) -> TokensSpec:
    """What ``family/tokens`` holds: ``tokenize:``'s split and sharding with ``family.tokenizer``
    (or the project's tokenizer when that is null). ``params``: any view with ``family`` and ``tokenize``."""
    spec = TokensSpec.model_validate(params.tokenize.model_dump(include=set(TokensSpec.model_fields)))
    own = params.family.tokenizer
    return spec if own is None else spec.model_copy(update={"tokenizer": own})


def _first_error(exc: ValidationError, where: str) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if key:
        return f"{where}.{key} = {err.get('input')!r}: {msg}"
    return f"{where}: {msg}"


def member_sections(family: FamilyParams, name: str, train: TrainParams) -> tuple[ModelParams, TrainParams]:
    """A member's ``model:`` and ``train:`` sections: its own keys over ``defaults`` (over ``mup`` for a
    muP member), the project's loop keys (``train:`` minus the recipe), ``run_name`` = the name.
    ``max_steps`` is left unset: it needs the vocabulary (:func:`cgpt.family.members.member_params`).
    Raises ValueError with one line naming the member's key."""
    if name not in family.members:
        known = ", ".join(family.members) or "none"
        raise ValueError(f"family.members has no member {name!r} (members: {known})")
    own, defaults = family.members[name], family.defaults
    merged = {**defaults.model_keys(), **defaults.train_keys()}
    kind = own.parameterization or defaults.parameterization
    if kind is None:
        kind = PRESETS[own.preset or defaults.preset or ModelParams().preset].model.parameterization
    if kind == "mup":
        merged.update(family.mup.member_keys())
    merged.update({**own.model_keys(), **own.train_keys()})
    where = f"family.members.{name}"
    try:
        model = ModelParams(**{k: v for k, v in merged.items() if k in MODEL_KEYS})
    except ValidationError as exc:
        raise ValueError(_first_error(exc, where)) from None
    loop = train.model_dump(exclude={*RECIPE_TRAIN_KEYS, *DERIVED_TRAIN_KEYS})
    # a member that diverges ends flagged, with its numbers, and the family goes on (unless the
    # family's own keys say otherwise): the single model's train.on_divergence does not pass through
    loop["on_divergence"] = "stop"
    try:
        member_train = TrainParams(**{**loop, **{k: v for k, v in merged.items() if k in TRAIN_KEYS}, "run_name": name})
    except ValidationError as exc:
        raise ValueError(_first_error(exc, where)) from None
    preset = PRESETS[model.preset]
    seq_len = member_train.seq_len or preset.recipe.seq_len
    n_pos = model.n_positions or preset.model.n_positions
    if seq_len > n_pos:
        raise ValueError(f"{where}: seq_len = {seq_len}: must be at most n_positions = {n_pos}")
    return model, member_train
