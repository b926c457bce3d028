"""The µP sweep: short trials on a proxy width, the best by validation loss, and the transfer check.

Under µP the best learning rate, init std and output multiplier of a model of width d are those
of its base width (m = d / base = 1), so they can be tuned on a cheap proxy and reused by every
µP member of the family (spec section 1.4; Yang et al. 2022, "Tensor Programs V"). This module
is the computation; ``flows/mup_sweep.py`` fans the trials out as Prefect tasks.

1. :func:`plan_search`: the trials of ``family.sweep`` on the proxy (d_model = ``mup.base_width``):
   the grid lr x init_std x output_mult, or ``trials`` seeded log-uniform draws (3 significant
   digits, so the value written to params.yaml is the value that trained).
2. :func:`run_trial`: one trial is a real training run of a µP model (the project's loop, data and
   recipe: ``family.defaults`` with the µP keys, ``sweep.max_steps`` steps, ``sweep.seed``) in
   ``runs/sweep/<trial-id>/``, tracked as an MLflow run that is a child of the sweep's parent run.
   A finished trial (``trial.json`` for the same configuration) is not trained again, so a killed
   sweep resumes and the transfer check reuses the search's runs at the base width. A trial whose
   loss diverges is a result (val loss = inf), not a failure of the sweep.
3. :func:`choose`: the lowest final validation loss; ties go to the smaller lr, then init std, then
   output multiplier (a deterministic rule; smaller values are the safer side).
4. :func:`plan_transfer`: for every ``transfer_widths`` width (the proxy's depth and head width),
   the lr grid with the chosen init std and output multiplier. µP transfers when the curves'
   minima line up (:func:`transfer_summary`, ``transfer.png``).
5. :func:`write_chosen_params`: ``family.mup.lr``, ``init_std``, ``output_mult`` into params.yaml,
   a round trip that keeps every comment and every other key, written atomically.

Outputs (``family/mup/``, deterministic bytes for the same params, data and threads per trial):
``sweep.csv``/``.md`` (every search trial), ``chosen.json``, ``transfer.csv``/``.md``,
``transfer.json`` (each width's optimum) and ``transfer.png``/``.svg``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from yaml import safe_load as yaml_safe_load

from cgpt.config import PARAMS_FILE, Params, parse_params
from cgpt.errors import ConfigError, DataError, TrainingError
from cgpt.family.params import FamilyParams, MemberSpec, member_sections
from cgpt.fsutil import read_json_if_valid, write_json_atomic, write_text_atomic
from cgpt.scaling.plots import plot_mup_transfer
from cgpt.scaling.tables import write_table
from cgpt.tracking.runs import (
    RUN_FILE,
    Tracker,
    client_for,
    disabled,
    experiment_id,
    finishing,
    open_keyed_run,
    provenance_tags,
)

SWEEP_DIR = Path("family") / "mup"
TRIALS_DIR = Path("runs") / "sweep"
TRIAL_FILE = "trial.json"
KIND_TAG = "cgpt.kind"
SWEEP_TAG = "cgpt.sweep"
PARENT_TAG = "mlflow.parentRunId"
#: the keys the sweep writes into params.yaml (``family.mup.<key>``), in this order
CHOSEN_KEYS = ("lr", "init_std", "output_mult")

Phase = Literal["search", "transfer"]


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


@dataclass(frozen=True)
class TrialResult:
    """A finished trial: its final validation loss (inf when it diverged) and last training loss."""

    trial: Trial
    val_loss: float
    train_loss: float
    steps: int
    diverged: bool
    run_id: str | None = None

    def row(self) -> dict[str, Any]:
        t = self.trial
        return {
            "trial": t.id,
            "width": t.width,
            "n_layer": t.n_layer,
            "n_head": t.n_head,
            "lr": t.lr,
            "init_std": t.init_std,
            "output_mult": t.output_mult,
            "steps": self.steps,
            "seed": t.seed,
            "val_loss": self.val_loss if not self.diverged else math.inf,
            "train_loss": self.train_loss,
            "diverged": self.diverged,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "trial": self.trial.to_dict(),
            "val_loss": _json_float(self.val_loss),
            "train_loss": _json_float(self.train_loss),
            "steps": self.steps,
            "diverged": self.diverged,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], run_id: str | None = None) -> TrialResult:
        return cls(
            trial=Trial(**data["trial"]),
            val_loss=_float(data["val_loss"]),
            train_loss=_float(data["train_loss"]),
            steps=int(data["steps"]),
            diverged=bool(data["diverged"]),
            run_id=run_id,
        )


def _json_float(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)  # JSON has no inf/nan: "inf", "nan"


def _float(x: float | str) -> float:
    return float(x)


# ---------------------------------------------------------------------------------------------- plans


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


# ---------------------------------------------------------------------------------------------- one trial


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
        }
    )
    sections = {k: getattr(params, k) for k in type(params).model_fields}
    sections.update(model=model, train=train, family=FamilyParams())
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
        raise DataError(f"{index}: no tokenized data; run `dvc repro tokenize` first (the sweep trains on data/tokens)")
    return hashlib.sha256(index.read_bytes()).hexdigest()[:16]


def run_trial(
    root: Path,
    params: Params,
    trial: Trial,
    *,
    parent_run_id: str | None = None,
    threads: int | None = None,
    progress: bool = False,
) -> TrialResult:
    """Train one trial in ``runs/sweep/<id>/`` (or return its recorded result), tracked as a child
    MLflow run of ``parent_run_id``."""
    from cgpt.train.loop import setup_from_params, train

    root = Path(root)
    tokens = root / "data" / "tokens"
    key = trial_key(params, trial, tokens_digest(tokens))
    run_dir = root / TRIALS_DIR / trial.id
    done = read_json_if_valid(run_dir / TRIAL_FILE)
    marker = read_json_if_valid(run_dir / RUN_FILE)
    run_id = marker.get("run_id") if isinstance(marker, dict) else None
    if isinstance(done, dict) and done.get("key") == key:
        if parent_run_id is not None and run_id is not None:
            _adopt(root, params, run_id, parent_run_id)  # a later sweep's parent adopts the finished trial
        return TrialResult.from_json(done, run_id)
    p = trial_params(params, trial, threads)
    setup = setup_from_params(p, tokens)
    tracker = _open_trial_run(root, params, trial, key, run_dir, parent_run_id)
    tracker.log_params({"sweep": {**trial.to_dict(), "key": key}, "recipe": asdict(setup.recipe)})
    diverged = False
    with finishing(tracker):
        try:
            result = train(setup, tokens, run_dir, tracker=tracker, progress=progress)
            val, loss, steps = result.summary.val_loss, result.summary.train_loss, result.summary.steps
        except TrainingError as exc:
            if "loss became" not in str(exc):
                raise
            tracker.set_tags({"cgpt.sweep.diverged": "true", "cgpt.sweep.error": str(exc)})
            diverged, val, loss, steps = True, math.inf, math.inf, trial.max_steps
        tracker.log_metrics(
            {"sweep/val_loss": val, "sweep/train_loss": loss, "sweep/diverged": float(diverged)}, step=steps
        )
    out = TrialResult(trial, val, loss, steps, diverged or not math.isfinite(val), tracker.run_id)
    write_json_atomic(run_dir / TRIAL_FILE, {**out.to_json(), "key": key})
    return out


def _open_trial_run(
    root: Path, params: Params, trial: Trial, key: str, run_dir: Path, parent_run_id: str | None
) -> Tracker:
    if not params.tracking.enabled:
        return disabled()
    client = client_for(root)
    exp_id = experiment_id(client, params.tracking.experiment, root)
    tags = {
        KIND_TAG: "mup-trial",
        "cgpt.sweep.width": str(trial.width),
        "cgpt.sweep.key": key,
        **provenance_tags(root),
    }
    if parent_run_id is not None:
        tags[PARENT_TAG] = parent_run_id
    run = client.create_run(exp_id, run_name=trial.id, tags=tags)
    write_json_atomic(run_dir / RUN_FILE, {"run_id": run.info.run_id, "key": key})
    return Tracker(client, run.info.run_id, fresh=True)


def _adopt(root: Path, params: Params, run_id: str, parent_run_id: str) -> None:
    if not params.tracking.enabled:
        return
    with contextlib.suppress(Exception):  # the run is in another store or was deleted: the result stands
        client_for(root).set_tag(run_id, PARENT_TAG, parent_run_id)


# ---------------------------------------------------------------------------------------------- choice, outputs


def _order(r: TrialResult) -> tuple[float, float, float, float]:
    loss = r.val_loss if not r.diverged and math.isfinite(r.val_loss) else math.inf
    return (loss, r.trial.lr, r.trial.init_std, r.trial.output_mult)


def choose(results: list[TrialResult]) -> TrialResult:
    """The lowest final validation loss; ties: the smaller lr, init std, output multiplier."""
    if not results:
        raise TrainingError("the µP sweep has no trials to choose from")
    best = min(results, key=_order)
    if best.diverged or not math.isfinite(best.val_loss):
        raise TrainingError(
            f"every one of the {len(results)} µP sweep trials diverged; lower family.sweep.lr (smallest: "
            f"{min(r.trial.lr for r in results):g})"
        )
    return best


def results_table(results: list[TrialResult], best: TrialResult | None = None) -> pd.DataFrame:
    """One row per trial, best first (then the order of :func:`choose`), with its rank."""
    rows = [r.row() for r in sorted(results, key=_order)]
    df = pd.DataFrame(rows)
    df.insert(0, "rank", range(1, len(df) + 1))
    if best is not None:
        df["chosen"] = df["trial"] == best.trial.id
    return df


def chosen_values(best: TrialResult, family: FamilyParams, n_trials: int) -> dict[str, Any]:
    """``chosen.json``: the values the family's µP members take, and where they came from."""
    sweep = family.sweep
    return {
        "lr": best.trial.lr,
        "init_std": best.trial.init_std,
        "output_mult": best.trial.output_mult,
        "val_loss": best.val_loss,
        "trial": best.trial.id,
        "base_width": best.trial.base_width,
        "proxy": sweep.proxy.model_dump(),
        "search": sweep.search,
        "trials": n_trials,
        "max_steps": sweep.max_steps,
        "seed": sweep.seed,
        "rule": "lowest final validation loss; ties: smaller lr, then init_std, then output_mult",
    }


def write_search(root: Path, results: list[TrialResult], best: TrialResult, family: FamilyParams) -> dict[str, Any]:
    """``sweep.csv``/``.md`` and ``chosen.json`` in ``family/mup/``; returns the chosen values."""
    out = Path(root) / SWEEP_DIR
    write_table(results_table(results, best), out, "sweep")
    chosen = chosen_values(best, family, len(results))
    write_json_atomic(out / "chosen.json", chosen)
    return chosen


def transfer_summary(results: list[TrialResult], chosen_lr: float) -> dict[str, Any]:
    """Each width's best lr and loss, and how far (in lr-grid steps) it sits from the chosen lr:
    ``holds`` when every width's optimum is within one grid step (the µP claim, at grid resolution)."""
    lrs = sorted({r.trial.lr for r in results})
    widths: dict[str, Any] = {}
    for w in sorted({r.trial.width for r in results}):
        mine = [r for r in results if r.trial.width == w]
        best = min(mine, key=_order)
        ok = not best.diverged and math.isfinite(best.val_loss)
        steps = abs(lrs.index(best.trial.lr) - lrs.index(chosen_lr)) if chosen_lr in lrs else None
        widths[str(w)] = {
            "best_lr": best.trial.lr if ok else None,
            "best_val_loss": best.val_loss if ok else None,
            "grid_steps_from_chosen": steps if ok else None,
            "loss_at_chosen_lr": next(
                (_json_float(r.val_loss) for r in mine if r.trial.lr == chosen_lr and not r.diverged), None
            ),
        }
    holds = all(v["grid_steps_from_chosen"] is not None and v["grid_steps_from_chosen"] <= 1 for v in widths.values())
    return {"chosen_lr": chosen_lr, "lr_grid": lrs, "widths": widths, "holds": holds}


def transfer_table(results: list[TrialResult]) -> pd.DataFrame:
    """One row per (width, lr), with each width's optimum marked."""
    rows = []
    for r in sorted(results, key=lambda r: (r.trial.width, r.trial.lr)):
        row = r.row()
        best = min((x for x in results if x.trial.width == r.trial.width), key=_order)
        row["best_for_width"] = r.trial.id == best.trial.id and not best.diverged
        rows.append(row)
    return pd.DataFrame(rows)


def write_transfer(
    root: Path, results: list[TrialResult], chosen_lr: float, *, stem: str = "transfer"
) -> dict[str, Any]:
    """``<stem>.csv``/``.md``, ``<stem>.json`` and ``<stem>.png``/``.svg``; returns the summary.
    (``stem="transfer_unscaled"``: the comparison without µP's width scaling.)"""
    out = Path(root) / SWEEP_DIR
    write_table(transfer_table(results), out, stem)
    summary = transfer_summary(results, chosen_lr)
    write_json_atomic(out / f"{stem}.json", summary)
    curves: dict[int, list[tuple[float, float]]] = {}
    for r in results:
        curves.setdefault(r.trial.width, []).append((r.trial.lr, r.val_loss if not r.diverged else math.nan))
    t = results[0].trial
    what = "without µP width scaling (m = 1 at every width)" if stem != "transfer" else "µP transfer"
    title = (
        f"{what}: val loss vs lr after {t.max_steps} steps "
        f"(init_std {t.init_std:g}, output_mult {t.output_mult:g}, base width {t.proxy_width})"
    )
    plot_mup_transfer(curves, out / stem, title=title)
    return summary


def markdown_report(
    chosen: dict[str, Any],
    search_md: str,
    transfer: dict[str, Any] | None = None,
    unscaled: dict[str, Any] | None = None,
) -> str:
    """The flow's artifact: the chosen values, the search table, each width's optimum (with and,
    given ``unscaled``, without µP's width scaling)."""
    lines = [
        "# µP sweep",
        "",
        f"Chosen (trial `{chosen['trial']}`, val loss {chosen['val_loss']:.4f}): "
        f"**lr {chosen['lr']:g}, init_std {chosen['init_std']:g}, output_mult {chosen['output_mult']:g}** "
        f"at base width {chosen['base_width']} ({chosen['trials']} trials, {chosen['max_steps']} steps each).",
        "",
        "## Trials (best first)",
        "",
        search_md.strip(),
    ]
    for heading, summary in (("Transfer (µP)", transfer), ("Without µP width scaling (m = 1)", unscaled)):
        if summary is None:
            continue
        lines += ["", f"## {heading}: best lr per width", "", "| width | best lr | val loss | grid steps from chosen |"]
        lines.append("|---|---|---|---|")
        for w, v in summary["widths"].items():
            loss = f"{v['best_val_loss']:.4f}" if v["best_val_loss"] is not None else "-"
            lines.append(f"| {w} | {v['best_lr']} | {loss} | {v['grid_steps_from_chosen']} |")
        verdict = "holds" if summary["holds"] else "does NOT hold"
        lines += ["", f"The optimum {verdict} at grid resolution (every width within one lr step of the chosen lr)."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- MLflow parent


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


def open_sweep_run(root: Path, params: Params) -> Tracker:
    """The sweep's parent run (found by its key's tag, else created), marked RUNNING; finish it when done."""
    root = Path(root)
    key = sweep_key(params, tokens_digest(root / "data" / "tokens")) if params.tracking.enabled else ""
    return open_keyed_run(
        root,
        params.tracking,
        kind="mup-sweep",
        key_tag=SWEEP_TAG,
        key=key,
        run_name=f"mup-sweep-{key}",
        params={"sweep": params.family.sweep.model_dump(), "mup_base_width": base_width(params.family)},
    )


def record_sweep(
    parent: Tracker,
    root: Path,
    chosen: dict[str, Any],
    transfer: dict[str, Any] | None,
    unscaled: dict[str, Any] | None = None,
) -> None:
    """The chosen values and each width's optimum on the parent, and ``family/mup/`` as its artifacts."""
    if not parent.enabled:
        return
    metrics = {f"chosen/{k}": float(chosen[k]) for k in (*CHOSEN_KEYS, "val_loss")}
    for section, summary in (("transfer", transfer), ("unscaled", unscaled)):
        if summary is None:
            continue
        for w, v in summary["widths"].items():
            if v["best_lr"] is not None:
                metrics[f"{section}/w{w}/best_lr"] = float(v["best_lr"])
                metrics[f"{section}/w{w}/best_val_loss"] = float(v["best_val_loss"])
        metrics[f"{section}/holds"] = 1.0 if summary["holds"] else 0.0
    parent.log_metrics(metrics)
    parent.set_tags({f"cgpt.sweep.chosen.{k}": f"{chosen[k]:g}" for k in CHOSEN_KEYS})
    parent.flush()
    parent.log_artifacts(Path(root) / SWEEP_DIR, "mup")


# ---------------------------------------------------------------------------------------------- params.yaml


def write_chosen_params(params_file: Path, chosen: dict[str, Any]) -> dict[str, Any]:
    """Set ``family.mup.lr``, ``init_std``, ``output_mult`` in ``params_file`` to the chosen values.

    A ruamel.yaml round trip keeps comments, key order, flow-style mappings and quoting; every
    other key is left as it was. The new text is validated as params before it replaces the file
    (atomically), so a failed write never leaves a broken params.yaml. Returns the values before."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    params_file = Path(params_file)
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long lines
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )  # ruamel writes an empty value for null; params.yaml spells it out
    text = params_file.read_text(encoding="utf-8")
    data = yaml.load(text)
    if data is None:
        data = CommentedMap()
    if not isinstance(data, dict):
        raise ConfigError(f"{params_file}: expected a mapping of sections, got {type(data).__name__}")
    family = data.setdefault("family", CommentedMap())
    if family is None:
        family = data["family"] = CommentedMap()
    mup = family.get("mup")
    if mup is None:
        mup = family["mup"] = CommentedMap()
    before = {k: mup.get(k) for k in CHOSEN_KEYS}
    for k in CHOSEN_KEYS:
        mup[k] = float(chosen[k])
    buf = io.StringIO()
    yaml.dump(data, buf)
    new = buf.getvalue()
    parse_params(yaml_safe_load(new), f"{params_file} (with the sweep's values)", root=params_file.resolve().parent)
    write_text_atomic(params_file, new)
    return before


def default_threads(workers: int) -> int:
    """Torch threads per trial: this machine's cores shared by the ``workers`` trials at a time."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, workers))


__all__ = [
    "CHOSEN_KEYS",
    "PARAMS_FILE",
    "SWEEP_DIR",
    "TRIALS_DIR",
    "Trial",
    "TrialResult",
    "check_sweep",
    "choose",
    "default_threads",
    "markdown_report",
    "open_sweep_run",
    "plan_search",
    "plan_transfer",
    "record_sweep",
    "run_trial",
    "trial_params",
    "write_chosen_params",
    "write_search",
    "write_transfer",
]
