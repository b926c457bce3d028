"""Stages ``member-train@<name>``, ``member-evaluate@<name>``, ``member-export@<name>``: one family member.

Each runs the single-model stage function (:mod:`cgpt.stages.train`, ``evaluate``, ``export``) with
the member's derived params (:func:`cgpt.family.members.member_params`), so a member's outputs are
exactly a single model's, in ``family/runs/<name>/`` (the family's DVC project, ``family/dvc.yaml``). Besides:

* train makes the member's MLflow run a child of the family's parent run (created if needed);
* evaluate writes the member's point of the scaling law, ``family/points/<name>.json``.
"""

from __future__ import annotations

from functools import cache

from pydantic import create_model

from cgpt.core.errors import ConfigError
from cgpt.core.locks import writing
from cgpt.core.project import Project
from cgpt.core.sections import Sections
from cgpt.data.tokenize.params import TokensSpec
from cgpt.data.tokens import vocab_size_for
from cgpt.family.members import member_params, resolve_member
from cgpt.family.params import FamilyParams, family_tokens_spec
from cgpt.family.points import write_point
from cgpt.stages import stage_function, stage_params
from cgpt.tracking.family import child_tags, open_family_run
from cgpt.tracking.params import TrackingParams
from cgpt.tracking.runs import finishing
from cgpt.tracking.store import check_tracking

MEMBER_STAGES = ("train", "evaluate", "export")


@cache
def member_view(stage: str) -> type[Sections]:
    """What a member's ``stage`` reads of params.yaml: the single-model stage's sections but
    ``model:`` (a member's shape is its own), plus ``family:``, the tokenizer (the members'
    vocabulary, the family's identity) and ``tracking:`` (the family's parent run)."""
    own = {k: (f.annotation, f) for k, f in stage_params(stage).model_fields.items() if k != "model"}
    own.setdefault("tokenize", (TokensSpec, TokensSpec()))
    own.setdefault("tracking", (TrackingParams, TrackingParams()))
    return create_model(f"Member{stage.title()}Params", __base__=Sections, family=(FamilyParams, FamilyParams()), **own)


def run(project: Project, stage: str, name: str) -> object:
    if stage not in MEMBER_STAGES:
        raise ConfigError(f"unknown member stage {stage!r}; expected one of {', '.join(MEMBER_STAGES)}")
    params = project.load(member_view(stage))
    check_tracking(project.root, params.tracking)
    if name not in params.family.members:
        known = ", ".join(params.family.members) or "none"
        raise ConfigError(f"params.yaml: family.members has no member {name!r} (members: {known})")
    project = project.for_family()  # family/tokens, family/runs/<name>
    vocab_size, _ = vocab_size_for(family_tokens_spec(params).tokenizer, project.tokens)
    own = member_params(params, name, vocab_size, project.root, view=stage_params(stage))
    fn = stage_function(stage)
    # the member's run folder and its point below (the single-model stage re-takes the lock: re-entrant)
    with writing(project.run_dir(name)):
        if stage == "train":
            parent = open_family_run(project.root, params)
            with finishing(parent):
                tags = child_tags(parent, params, name)
            return fn(project, own, tags=tags)
        result = fn(project, own)
        if stage == "evaluate":
            write_point(project.root, resolve_member(params, name, vocab_size, project.root), project.run_dir(name))
        return result
