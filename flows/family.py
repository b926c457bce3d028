"""Prefect flow: train a model family smallest to largest, forecasting each next member before it trains.

The Cerebras-GPT card's method: "We trained models from smallest to largest and fit a power law as
we went along. The power law was helpful for extrapolating the validation loss of the next largest
model we trained and provided confidence about whether the training run was going well." For each
member of params.yaml's ``family:`` (smallest first):

1. with 2 or more members trained before it, fit the law to them (the pure power law below 5
   points, ``a·C^b + c`` from 5 on; the log line says which) and forecast the member's loss with a
   prediction interval, and its task accuracies by the two-step method — *before* it trains: a
   log line, a Prefect artifact, metrics on the family's MLflow parent run;
2. train and evaluate it (``dvc repro member-export@<name>``, or ``member-evaluate@<name>`` with
   ``--through evaluate``), its log streamed, so a finished member is skipped by DVC and a rerun
   of the flow resumes where it stopped (the forecasts are recomputed from the same points: the
   same numbers);
3. compare: a member outside its interval (or worse than the next smaller member) is flagged — a
   WARNING log line, a task run in the state ``Flagged``, the MLflow tag ``cgpt.family.flag`` on
   its run and the parent, a line in the artifact.

Finally ``dvc repro scaling`` refits the law over every member (``family/scaling/``) and the flow
ends with the artifact ``cgpt-family`` (forecast vs actual per member) — in the state ``Flagged``
when any member was flagged. The logic lives in :mod:`cgpt.family`; this file only orchestrates.

    python flows/family.py                     # the family in params.yaml, on Prefect's ephemeral server
    python flows/family.py --through evaluate  # skip the members' Hugging Face exports

Members train with their own params (``family.defaults`` and the member's keys, over the project's
``train:`` loop keys), so ``train.distributed`` (ddp/fsdp ranks, docs/distributed.md), ``precision`` and
``device`` reach every member through params.yaml, not through this flow.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Literal

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline machines: no telemetry calls
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # a busy machine starts it slowly
from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.states import Completed, State  # noqa: E402

from cgpt.config import Params, load_params  # noqa: E402
from cgpt.core.errors import CgptError, ConfigError  # noqa: E402
from cgpt.core.project import Project  # noqa: E402
from cgpt.core.runtime import fail  # noqa: E402
from cgpt.data.tokens import vocab_size_for  # noqa: E402
from cgpt.family.forecast import Forecast, Outcome, forecast_next, grade, point_member  # noqa: E402
from cgpt.family.members import FamilyMember, family_key, family_members  # noqa: E402
from cgpt.family.params import family_tokens_spec  # noqa: E402
from cgpt.family.points import read_point  # noqa: E402
from cgpt.scaling.next_member import Member  # noqa: E402
from cgpt.tracking.family import open_family_run, record_forecast, record_outcome  # noqa: E402
from cgpt.tracking.runs import Tracker, finishing  # noqa: E402
from flows.experiment_report import artifact_key  # noqa: E402
from flows.pipeline import dvc, repro_state, stream  # noqa: E402

Through = Literal["evaluate", "export"]


@task(task_run_name="dvc repro {target}", cache_policy=NO_CACHE)
def reproduce(target: str, project: str, force: bool = False) -> State:
    """``dvc repro <target>`` (a stage and whatever it needs), streamed; a state named ``Up to date``
    when DVC ran nothing (its result: 'ran' or 'up to date')."""
    args = ["repro", target] + (["--force"] if force else [])
    return repro_state(stream(dvc(Path(project), *args), f"dvc repro {target}"))


@task(task_run_name="forecast {member.name}", cache_policy=NO_CACHE)
def forecast(member: FamilyMember, trained: list[Member], params: Params, parent: Tracker) -> Forecast | None:
    """Forecast ``member`` from the members trained before it, and record the forecast before it trains."""
    logger = get_run_logger()
    fc = forecast_next(trained, member.compute, member.name, params.family.fit)
    if fc is None:
        logger.info(
            "%s: no forecast (%d smaller member%s trained; a law needs 2)",
            member.name,
            len(trained),
            "" if len(trained) == 1 else "s",
        )
        return None
    logger.info(fc.line())
    if fc.accuracy_line():
        logger.info(fc.accuracy_line())
    record_forecast(parent, fc)
    create_markdown_artifact(
        key=artifact_key(f"family-forecast-{member.name}"),
        markdown=forecast_markdown(fc),
        description=f"The forecast for {member.name}, made before it trained",
    )
    return fc


@task(task_run_name="check {name}", cache_policy=NO_CACHE)
def check(
    name: str, fc: Forecast | None, smaller: Member | None, project: str, params: Params, parent: Tracker
) -> State:
    """Grade the trained member against its forecast; a flagged member's task ends in the state ``Flagged``."""
    root = Path(project)
    point = read_point(root, name)
    fit = params.family.fit
    outcome = grade(point_member(point, fit.metric, fit.shots), fc, smaller)
    record_outcome(root, parent, params, outcome, point)
    logger = get_run_logger()
    if outcome.flagged:
        logger.warning(outcome.line())
        return Completed(name="Flagged", message=outcome.line(), data=outcome)
    logger.info(outcome.line())
    return Completed(message=outcome.line(), data=outcome)


def forecast_markdown(fc: Forecast) -> str:
    p = fc.forecast.loss
    interval = f"[{p.low:.4f}, {p.high:.4f}] ({p.level:.0%} prediction interval)" if p.has_interval else p.note
    lines = [
        f"# Forecast for {fc.name}, before training",
        "",
        f"* {fc.metric} cross-entropy: **{p.loss:.4f}** {interval}",
        f"* law: {fc.law}: `{fc.forecast.loss_fit.equation()}`, fitted on {', '.join(fc.from_members)}",
        f"* training compute: {fc.forecast.compute:.3g} FLOPs",
    ]
    if fc.forecast.accuracy:
        lines += ["", "| task | predicted accuracy | range from the loss interval |", "|---|---|---|"]
        for t, a in fc.forecast.accuracy.items():
            rng = f"{a.low:.3f} – {a.high:.3f}" if a.low is not None else "–"
            lines.append(f"| {t} | {a.accuracy:.3f} | {rng} |")
    lines += [f"* note: {n}" for n in fc.notes]
    return "\n".join(lines) + "\n"


def family_markdown(key: str, outcomes: list[Outcome], law: str) -> str:
    """The flow's summary: each member's forecast against its actual loss, and the flags."""
    rows = ["| member | forecast | interval | actual | inside | flags | law |", "|---|---|---|---|---|---|---|"]
    for o in outcomes:
        c = o.check
        interval = f"[{c.low:.4f}, {c.high:.4f}]" if c and c.low is not None else "–"
        inside = "–" if c is None or c.inside is None else ("yes" if c.inside else "**no**")
        forecast_cell = f"{c.predicted:.4f}" if c else "–"
        flags = ", ".join(o.flags) or ""
        law_cell = o.forecast.law if o.forecast else "–"
        rows.append(f"| {o.name} | {forecast_cell} | {interval} | {o.loss:.4f} | {inside} | {flags} | {law_cell} |")
    flagged = [o.line() for o in outcomes if o.flagged]
    text = [f"# cgpt family {key}", "", "\n".join(rows), "", f"Final law: `{law}` (`family/scaling/`)."]
    if flagged:
        text += ["", "## Flagged", ""] + [f"* {line}" for line in flagged]
    return "\n".join(text) + "\n"


@flow(name="cgpt-family", log_prints=True)
def family(project: str = ".", through: Through = "export", force: bool = False) -> Any:
    """Train params.yaml's family smallest first, forecasting each member before it trains and
    checking it after; then refit the law (``dvc repro scaling``). Returns a summary dict (the flow
    run's state is ``Flagged`` when a member was)."""
    if through not in ("evaluate", "export"):
        raise ConfigError(f"through = {through!r}: expected evaluate or export")
    proj = Project.at(project)
    root, params = proj.root, load_params(proj.params_file)
    if len(params.family.members) < 2:
        raise ConfigError("params.yaml: family.members lists fewer than 2 members; nothing to scale")
    logger = get_run_logger()
    family_dir = str(proj.family)  # the family's own DVC project (family/dvc.yaml)
    reproduce("clean", str(root), force)  # the corpus, the single model's project's
    reproduce("tokenize", family_dir, force)  # the members' sizes depend on the family's vocabulary
    vocab_size, _ = vocab_size_for(family_tokens_spec(params).tokenizer, proj.family_tokens)
    members = family_members(params, vocab_size, root)
    key = family_key(params)
    logger.info(
        "family %s: %d members, smallest first: %s",
        key,
        len(members),
        ", ".join(f"{m.name} ({m.n_params:,} params, {m.compute:.3g} FLOPs)" for m in members),
    )
    parent = open_family_run(root, params)
    trained: list[Member] = []
    outcomes: list[Outcome] = []
    with finishing(parent):
        for m in members:
            fc = forecast(m, list(trained), params, parent)
            reproduce(f"member-{through}@{m.name}", family_dir, force)
            state = check(m.name, fc, trained[-1] if trained else None, str(root), params, parent, return_state=True)
            outcome: Outcome = state.result()
            outcomes.append(outcome)
            if outcome.in_law:  # a diverged member, or one worse than the smaller, stays out of later forecasts
                fit = params.family.fit
                trained.append(point_member(read_point(root, m.name), fit.metric, fit.shots))
        reproduce("scaling", family_dir, force)
    law = _final_law(proj)
    logger.info("law over %d members: %s", len(members), law)
    create_markdown_artifact(
        key="cgpt-family",
        markdown=family_markdown(key, outcomes, law),
        description="Each member's forecast (made before it trained) against its actual loss",
    )
    flagged = [o.name for o in outcomes if o.flagged]
    result = {"family": key, "law": law, "members": [o.to_dict() for o in outcomes], "flagged": flagged}
    if flagged:
        return Completed(name="Flagged", message=f"flagged: {', '.join(flagged)}", data=result)
    return result


def _final_law(project: Project) -> str:
    fit = json.loads((project.family_scaling / "fit.json").read_text(encoding="utf-8"))
    return (fit.get("fit") or {}).get("equation", "none")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", default=".", help="project root (holds dvc.yaml and params.yaml; default: here)")
    ap.add_argument("--through", choices=["evaluate", "export"], default="export", help="last stage per member")
    ap.add_argument("--force", action="store_true", help="re-run the members' stages even when up to date")
    args = ap.parse_args(argv)
    try:
        params = load_params(Project.at(args.project).params_file)
        if len(params.family.members) < 2:
            raise ConfigError("params.yaml: family.members lists fewer than 2 members; nothing to scale")
    except CgptError as exc:
        fail(str(exc))
    family(project=args.project, through=args.through, force=args.force)


if __name__ == "__main__":
    main()
