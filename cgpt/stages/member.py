"""Stages ``member-train@<name>``, ``member-evaluate@<name>``, ``member-export@<name>``: one family member.

Each runs the single-model stage function (:mod:`cgpt.stages.train`, ``evaluate``, ``export``) with
the member's derived params (:func:`cgpt.family.members.member_params`), so a member's outputs are
exactly a single model's, in ``runs/<name>/``. Besides:

* train makes the member's MLflow run a child of the family's parent run (created if needed);
* evaluate writes the member's point of the scaling law, ``family/points/<name>.json``.
"""

from __future__ import annotations

from cgpt.errors import ConfigError
from cgpt.family.members import resolve_member, vocab_size_for
from cgpt.family.points import write_point
from cgpt.project import Project
from cgpt.stages import stage_function
from cgpt.tracking.family import child_tags, open_family_run
from cgpt.tracking.runs import finishing

MEMBER_STAGES = ("train", "evaluate", "export")


def run(project: Project, stage: str, name: str) -> object:
    if stage not in MEMBER_STAGES:
        raise ConfigError(f"unknown member stage {stage!r}; expected one of {', '.join(MEMBER_STAGES)}")
    params = project.params()
    if name not in params.family.members:
        known = ", ".join(params.family.members) or "none"
        raise ConfigError(f"params.yaml: family.members has no member {name!r} (members: {known})")
    member = resolve_member(params, name, vocab_size_for(params, project.tokens), project.root)
    fn = stage_function(stage)
    if stage == "train":
        parent = open_family_run(project.root, params)
        with finishing(parent):
            tags = child_tags(parent, params, name)
        return fn(project, member.params, tags=tags)
    result = fn(project, member.params)
    if stage == "evaluate":
        write_point(project.root, member, project.run_dir(name))
    return result
