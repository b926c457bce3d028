"""The µP sweep's plan: its trials (the search on the proxy, the transfer check across widths), each
trial's params, and the keys that say when a finished trial (or the sweep's parent run) is reused.

* :func:`plan_search`: the trials of ``family.sweep`` on the proxy (d_model = ``mup.base_width``):
  the grid lr x init_std x output_mult, or ``trials`` seeded log-uniform draws (3 significant
  digits, so the value written to params.yaml is the value that trained).
* :func:`plan_transfer`: for every ``transfer_widths`` width (the proxy's depth and head width),
  the lr grid with the chosen init std and output multiplier.
* :func:`trial_params`, :func:`trial_key`, :func:`tokens_digest`, :func:`sweep_key`: what a trial
  trains with, and the digests that identify a trial's and the sweep's configuration.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from cgpt.config import Params
from cgpt.core.errors import ConfigError, DataError
from cgpt.family.params import FamilyParams, MemberSpec, member_sections


@dataclass(frozen=True)
class Trial:
    """One short training run: the shape (width = d_model, depth and heads) and the three µP values."""

    width: int
    n_layer: int
    n_head: int
    lr: float
    init_std: float
    output_mult: float
    base_width: int
    max_steps: int
    seed: int
    proxy_width: int = 0  # the sweep's base width (0: this trial's base width)

    def __post_init__(self) -> None:
        if not self.proxy_width:
            object.__setattr__(self, "proxy_width", self.base_width)

    @property
    def id(self) -> str:
        """Names the trial's folder and MLflow run; the same values give the same id, so the transfer
        check's base-width runs are the search's runs."""
        own = f"w{self.width}-lr{self.lr:g}-std{self.init_std:g}-om{self.output_mult:g}"
        return f"unscaled-{own}" if self.unscaled else own

    @property
    def unscaled(self) -> bool:
        """A comparison trial without µP's width scaling: its base width is its own width (m = 1)."""
        return self.base_width == self.width and self.width != self.proxy_width

    @property
    def width_mult(self) -> float:
        return self.width / self.base_width

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def base_width(family: FamilyParams) -> int:
    """The µP base width the sweep tunes at: ``mup.base_width`` (the proxy's width when unset)."""
    return family.mup.base_width or family.sweep.proxy.d_model


def check_sweep(family: FamilyParams) -> None:
    """What the sweep needs beyond what params.yaml validation already checks: one line naming the key."""
    sweep = family.sweep
    if family.mup.base_width is not None and family.mup.base_width != sweep.proxy.d_model:
        raise ConfigError(  # also refused by FamilyParams; kept for params built in code
            f"params.yaml: family.sweep.proxy.d_model = {sweep.proxy.d_model}: must equal "
            f"family.mup.base_width = {family.mup.base_width} (the sweep tunes at the base width, m = 1)"
        )
    if len(sweep.transfer_widths) < 2:
        raise ConfigError(
            f"params.yaml: family.sweep.transfer_widths = {sweep.transfer_widths}: a transfer check needs "
            "at least 2 widths (3 or more to see the curves line up)"
        )


def _trial(family: FamilyParams, width: int, lr: float, init_std: float, output_mult: float) -> Trial:
    sweep = family.sweep
    d_head = sweep.proxy.d_model // sweep.proxy.n_head
    return Trial(
        width=width,
        n_layer=sweep.proxy.n_layer,
        n_head=width // d_head,
        lr=lr,
        init_std=init_std,
        output_mult=output_mult,
        base_width=base_width(family),
        max_steps=sweep.max_steps,
        seed=sweep.seed,
        proxy_width=base_width(family),
    )


def _round3(x: float) -> float:
    """``x`` to 3 significant digits (a random draw as it will be written to params.yaml)."""
    return float(f"{x:.3g}")


def _log_uniform(rng: random.Random, values: list[float]) -> float:
    lo, hi = min(values), max(values)
    if lo == hi:
        return lo
    return _round3(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def random_draws(family: FamilyParams) -> list[tuple[float, float, float]]:
    """``sweep.trials`` distinct (lr, init_std, output_mult) draws, each log-uniform within its list's
    range, from ``random.Random(sweep.seed)``: the same seed gives the same draws on any machine."""
    sweep = family.sweep
    rng = random.Random(sweep.seed)
    draws: list[tuple[float, float, float]] = []
    for _ in range(100 * (sweep.trials or 0)):
        if len(draws) == sweep.trials:
            break
        d = (_log_uniform(rng, sweep.lr), _log_uniform(rng, sweep.init_std), _log_uniform(rng, sweep.output_mult))
        if d not in draws:
            draws.append(d)
    return draws


def plan_search(family: FamilyParams) -> list[Trial]:
    """The search's trials on the proxy (grid order: lr, then init_std, then output_mult)."""
    check_sweep(family)
    sweep = family.sweep
    width = sweep.proxy.d_model
    if sweep.search == "random":
        combos = random_draws(family)
    else:
        combos = [(lr, s, o) for lr in sweep.lr for s in sweep.init_std for o in sweep.output_mult]
    return [_trial(family, width, lr, s, o) for lr, s, o in combos]


def plan_transfer(family: FamilyParams, chosen: Trial, *, unscaled: bool = False) -> list[Trial]:
    """Each transfer width over the lr grid (``sweep.lr``, plus the chosen lr when a random search
    found it between them) with the chosen init std and output multiplier.

    ``unscaled``: the comparison the µP papers draw beside it, the same model and values without
    µP's width scaling (m = 1 at every width: init, hidden LR and logits not scaled with width, as
    a standard parameterization would leave them); at the base width it is the µP trial itself."""
    lrs = sorted({*family.sweep.lr, chosen.lr})
    plan = [
        _trial(family, w, lr, chosen.init_std, chosen.output_mult) for w in family.sweep.transfer_widths for lr in lrs
    ]
    if unscaled:
        plan = [replace(t, base_width=t.width) for t in plan]
    return plan


# ---------------------------------------------------------------------------------------------- keys


def trial_params(params: Params, trial: Trial, threads: int | None = None) -> Params:
    """The trial's params: the family's member recipe (``family.defaults`` under the µP keys of
    ``family.mup``), the trial's shape and values, ``sweep.max_steps`` steps with one validation and
    one checkpoint at the end, ``threads`` torch threads."""
    family = params.family
    spec = MemberSpec(
        parameterization="mup",
        n_layer=trial.n_layer,
        d_model=trial.width,
        n_head=trial.n_head,
        mup_base_width=trial.base_width,
        lr=trial.lr,
        init_std=trial.init_std,
        output_mult=trial.output_mult,
    )
    one = family.model_copy(update={"members": {trial.id: spec}})
    try:
        model, train = member_sections(one, trial.id, params.train)
    except ValueError as exc:
        raise ConfigError(f"params.yaml: family.sweep: trial {trial.id}: {exc}") from None
    train = train.model_copy(
        update={
            "max_steps": trial.max_steps,
            "seed": trial.seed,
            "eval_interval": trial.max_steps,
            "checkpoint_interval": trial.max_steps,
            "keep_checkpoints": 1,
            "log_interval": max(1, trial.max_steps // 30),
            "threads": threads,
            "on_divergence": "error",  # a diverged trial is recorded as such (trials.py), not a member's stop
        }
    )
    sections = {k: getattr(params, k) for k in type(params).model_fields}
    sections.update(model=model, train=train, family=type(params.family)())  # a trial has no family
    return Params.model_validate(sections)


def trial_key(params: Params, trial: Trial, tokens_digest: str) -> str:
    """What makes a finished trial reusable: the resolved model and recipe, and the data."""
    p = trial_params(params, trial)
    blob = {
        "model": p.model.model_dump(),
        "recipe": asdict(p.recipe()),
        "train": p.train.model_dump(exclude={"threads", "run_name"}),
        "data": tokens_digest,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tokens_digest(tokens_dir: Path) -> str:
    index = tokens_dir / "index.json"
    if not index.is_file():
        raise DataError(
            f"{index}: no tokenized data; run `make family` or `cd family && dvc repro tokenize` first "
            "(the sweep trains on the family's tokens)"
        )
    return hashlib.sha256(index.read_bytes()).hexdigest()[:16]


def sweep_key(params: Params, digest: str) -> str:
    """A short id of what the sweep tunes (sweep, µP, member defaults, data): names its parent run."""
    fam = params.family
    blob = {
        "sweep": fam.sweep.model_dump(),
        "mup_base_width": base_width(fam),
        "embeddings_scale": fam.mup.embeddings_scale,
        "defaults": fam.defaults.model_dump(),
        "data": digest,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:12]
