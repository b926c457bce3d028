"""The family's MLflow parent run and the tags that make a member's model run its child.

Kept apart from :mod:`cgpt.family.tracking` (which records forecasts and fits) so that a member's
train stage, which only needs its parent, does not depend on the fitting code.
"""

from __future__ import annotations

from pathlib import Path

from cgpt.config import Params
from cgpt.family.members import family_key
from cgpt.fsutil import read_json_if_valid
from cgpt.tracking.runs import RUN_FILE, Tracker, open_keyed_run

KIND_TAG = "cgpt.kind"
FAMILY_TAG = "cgpt.family"
MEMBER_TAG = "cgpt.family.member"
FLAG_TAG = "cgpt.family.flag"
PARENT_TAG = "mlflow.parentRunId"


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
    """The MLflow run of member ``name``'s model (``runs/<name>/mlflow_run.json``), if it has one."""
    info = read_json_if_valid(root / "runs" / name / RUN_FILE)
    return info.get("run_id") if isinstance(info, dict) else None
