"""Stage ``scaling``: the family's law from every member's point, each member's forecast from the
smaller ones, the table and the plots (:mod:`cgpt.family.law`), and the same on the family's
MLflow parent run (:mod:`cgpt.tracking.family`).

With fewer than two members (``family.members: {}``: no family) it writes outputs that say so and
succeeds, so a single-model project's ``dvc repro`` is unaffected (dvc.yaml cannot make a stage
conditional on params)."""

from __future__ import annotations

from cgpt.core.locks import writing
from cgpt.core.project import Project
from cgpt.core.sections import Sections
from cgpt.data.tokenize.params import TokensSpec
from cgpt.data.tokens import vocab_size_for
from cgpt.family.law import compute, write_empty, write_outputs
from cgpt.family.members import family_members
from cgpt.family.params import FamilyParams, family_tokens_spec
from cgpt.tracking.family import open_family_run, record_family
from cgpt.tracking.params import TrackingParams
from cgpt.tracking.runs import finishing
from cgpt.train.params import TrainParams


class StageParams(Sections):
    """What the scaling stage reads of params.yaml: ``family:``, the ``train:`` loop keys every
    member shares, the tokenizer (the members' vocabulary before data/tokens exists; the family's
    identity) and ``tracking:``."""

    family: FamilyParams = FamilyParams()
    train: TrainParams = TrainParams()
    tokenize: TokensSpec = TokensSpec()
    tracking: TrackingParams = TrackingParams()


def run(project: Project) -> dict[str, object]:
    """Holds the lock of ``family/`` (:mod:`cgpt.core.locks`) while it works."""
    with writing(project.root / "family"):  # Project.family
        return _run(project)


def _run(project: Project) -> dict[str, object]:
    params = project.load(StageParams)
    vocab_size, _ = vocab_size_for(family_tokens_spec(params).tokenizer, project.family_tokens)
    members = family_members(params, vocab_size, project.root)
    if len(members) < 2:  # no family (members: {}): the stage stays, so dvc.yaml need not change
        write_empty(project.root, len(members))
        print(f"scaling: {len(members)} family member(s) in params.yaml, nothing to fit (family.members)")
        return {"fit": None, "flagged": []}
    result = compute(project.root, params, [m.name for m in members])
    write_outputs(project.root, params, result)
    print(f"law ({result.fit.form}, {result.fit.n_points} members): {result.fit.equation()}")
    for outcome in result.outcomes:
        print(outcome.line())
    parent = open_family_run(project.root, params)
    with finishing(parent):
        record_family(project.root, parent, params, result, {m.name: m.describe() for m in members})
        parent.log_artifacts(project.family_scaling, "scaling")
    return {"fit": result.fit.to_dict(), "flagged": [o.name for o in result.flagged]}
