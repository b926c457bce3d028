"""The family in MLflow: one parent run per family, the members' model runs as its children, and
what is recorded on them.

* The parent (experiment ``tracking.experiment``, run name ``family-<key>``, tags ``cgpt.kind=family``
  and ``cgpt.family=<key>``; the key is :func:`cgpt.family.members.family_key`) is found by its tag,
  or created, by whoever needs it first: a member's train stage, the ``scaling`` stage or the
  family flow. It holds the forecasts made before each member trained (``forecast/<member>/...``),
  the fit (``fit/a``, ``fit/b``, ``fit/c`` and their standard errors) and, as artifacts, the
  ``scaling`` stage's folder (fit.json, predictions, table, plots).
* Each member's run is the model run its train stage creates (:func:`cgpt.tracking.runs.open_model_run`:
  curves, evaluation, export, exactly like the single model's), made a child of the parent with
  MLflow's ``mlflow.parentRunId`` tag and tagged ``cgpt.family.member``. The ``scaling`` stage
  re-adopts every member, so a member trained for an earlier version of the family moves under
  the current parent.
* On each child the same names, so the compare view lines the members up: ``family.params``,
  ``family.compute``, ``family.forecast``, ``family.forecast_low``, ``family.forecast_high``,
  ``family.actual``, ``family.inside`` and the tag ``cgpt.family.flag`` (``none`` or the flags).
  Dots, not ``/``: MLflow would make a ``family`` chart section of them, drawn before the member's
  ``train/...`` curves (see :mod:`cgpt.tracking.runs`, "Names").
* One point per metric: a value already logged with the same number is not sent again, so a
  resumed flow or a re-run stage does not double the record (and the first timestamp of a
  forecast stays the time it was made).

The forecasts, outcomes and fits are taken as they come (duck-typed), not imported: a member's
train stage needs only its parent run and tags, so it does not depend on the fitting code.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cgpt.core.fsutil import read_json_if_valid
from cgpt.core.project import Project
from cgpt.family.members import family_key
from cgpt.tracking.runs import PARENT_TAG, RUN_FILE, Tracker, open_keyed_run

if TYPE_CHECKING:  # the whole file's schema, or any stage's view of it with the sections read here
    from cgpt.config import Params

FAMILY_TAG = "cgpt.family"
MEMBER_TAG = "cgpt.family.member"
FLAG_TAG = "cgpt.family.flag"


def open_family_run(root: Path, params: Params) -> Tracker:
    """The family's parent run (found by its key's tag, else created), marked RUNNING; finish it when done."""
    key = family_key(params)
    return open_keyed_run(
        root,
        params.tracking,
        kind="family",
        key_tag=FAMILY_TAG,
        key=key,
        run_name=f"family-{key}",
        tags={"cgpt.family.members": ",".join(params.family.members)},
        params={
            "family": {
                "tokens_per_param": params.family.tokens_per_param,
                "fit": params.family.fit.model_dump(),
                "members": list(params.family.members),
            }
        },
    )


def child_tags(parent: Tracker, params: Params, name: str) -> dict[str, str]:
    """Tags that make a member's model run a child of the family's parent run."""
    if not parent.enabled:
        return {}
    return {PARENT_TAG: str(parent.run_id), FAMILY_TAG: family_key(params), MEMBER_TAG: name}


def member_run_id(root: Path, name: str) -> str | None:
    """The MLflow run of member ``name``'s model (``family/runs/<name>/mlflow_run.json``), if it has one."""
    info = read_json_if_valid(Project(root).for_family().run_dir(name) / RUN_FILE)
    return info.get("run_id") if isinstance(info, dict) else None


def log_new(tracker: Tracker, run_id: str | None, metrics: dict[str, float]) -> None:
    """Log the metrics whose latest value in ``run_id`` differs (one point per value, however often called)."""
    if not tracker.enabled or run_id is None:
        return
    from mlflow.entities import Metric

    latest = tracker.client.get_run(run_id).data.metrics
    ts = int(time.time() * 1000)
    fresh = [
        Metric(k, float(v), ts, 0)
        for k, v in metrics.items()
        if v is not None and math.isfinite(v) and latest.get(k) != float(v)
    ]
    if fresh:
        tracker.client.log_batch(run_id, metrics=fresh)


def record_forecast(parent: Tracker, forecast: Any) -> None:
    """The forecast of a member (a :class:`cgpt.family.forecast.Forecast`), on the parent, before the member
    trains: metrics and a JSON artifact."""
    if not parent.enabled:
        return
    p = forecast.forecast.loss
    name, metric = forecast.name, forecast.metric
    values = {
        f"forecast/{name}/{metric}_xent": p.loss,
        f"forecast/{name}/low": p.low,
        f"forecast/{name}/high": p.high,
        f"forecast/{name}/n_members": float(len(forecast.from_members)),
    }
    values.update({f"forecast/{name}/acc/{t}": a.accuracy for t, a in forecast.forecast.accuracy.items()})
    log_new(parent, parent.run_id, values)
    parent.log_text(json.dumps(forecast.to_dict(), indent=2, sort_keys=True), f"forecasts/{name}.json")


def record_outcome(root: Path, parent: Tracker, params: Params, outcome: Any, describe: dict[str, Any]) -> None:
    """A graded member (a :class:`cgpt.family.forecast.Outcome`): adopt its run as a child, log the
    comparison on it and on the parent, set the flag tags."""
    if not parent.enabled:
        return
    child = member_run_id(root, outcome.name)
    c = outcome.check
    flag = ",".join(outcome.flags) or "none"
    metric = params.family.fit.metric
    if child is not None:
        parent.client.log_batch(
            child,
            tags=[_tag(k, v) for k, v in {**child_tags(parent, params, outcome.name), FLAG_TAG: flag}.items()],
        )
        log_new(
            parent,
            child,
            {
                "family.params": float(describe["params"]),
                "family.compute": float(describe["compute"]),
                "family.tokens": float(describe["tokens"]),
                "family.actual": outcome.loss,
                "family.forecast": c.predicted if c else None,
                "family.forecast_low": c.low if c else None,
                "family.forecast_high": c.high if c else None,
                "family.inside": (1.0 if c.inside else 0.0) if c and c.inside is not None else None,
                "family.accuracy_mae": outcome.accuracy.mae if outcome.accuracy else None,
            },
        )
    log_new(parent, parent.run_id, {f"actual/{outcome.name}/{metric}_xent": outcome.loss})
    if outcome.flags:
        run = parent.client.get_run(parent.run_id)
        flagged = [n for n in run.data.tags.get("cgpt.family.flagged", "").split(",") if n]
        if outcome.name not in flagged:
            flagged.append(outcome.name)
        parent.set_tags(
            {FLAG_TAG: ",".join(sorted({*outcome.flags, *_flags(run)})), "cgpt.family.flagged": ",".join(flagged)}
        )


def record_family(
    root: Path, parent: Tracker, params: Params, scaling: Any, describe: dict[str, dict[str, Any]]
) -> None:
    """The ``scaling`` stage's result (a :class:`cgpt.family.law.FamilyScaling`) on the parent: the fit,
    every member's outcome (children adopted), the flags recomputed from scratch, and the
    ``family/scaling`` folder as artifacts."""
    if not parent.enabled:
        return
    fit = scaling.fit
    se = fit.stderr or {}
    values = {"fit/a": fit.a, "fit/b": fit.b, "fit/c": fit.c, "fit/n_points": float(fit.n_points)}
    values.update({f"fit/se_{k}": v for k, v in se.items() if k in ("a", "b", "c")})
    values["fit/rms_residual"] = fit.rms_residual
    log_new(parent, parent.run_id, values)
    parent.set_tags({"cgpt.family.form": fit.form, "cgpt.family.law": fit.equation()})
    for outcome in scaling.outcomes:
        record_outcome(root, parent, params, outcome, describe[outcome.name])
    flagged = [o for o in scaling.outcomes if o.flags]
    parent.set_tags(
        {
            FLAG_TAG: ",".join(sorted({f for o in flagged for f in o.flags})) or "none",
            "cgpt.family.flagged": ",".join(o.name for o in flagged),
        }
    )


def _flags(run: Any) -> list[str]:
    return [f for f in run.data.tags.get(FLAG_TAG, "").split(",") if f and f != "none"]


def _tag(key: str, value: str) -> Any:
    from mlflow.entities import RunTag

    return RunTag(key, value)
