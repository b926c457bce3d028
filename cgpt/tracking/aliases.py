"""Registration policy: which registered version a user should load, by alias.

MLflow numbers versions in registration order, so ``models:/cgpt/latest`` is simply the newest version,
often a throw-away experiment that is worse than what came before. cgpt therefore keeps two aliases:

* ``@champion`` — the model to use (``models:/cgpt@champion``). It moves only (a) by an explicit
  ``cgpt promote <version>``, or (b) when a newly registered version has a *lower validation cross-entropy*
  than the champion **on the same validation data** (same token-data digest ``cgpt.data.tokens``: a score on
  other data, e.g. another tokenizer, is not comparable, so it never moves the champion by itself). The first
  version registered under this policy becomes the champion.
* ``@latest-exp`` — the version the newest DVC experiment (``dvc exp run``) exported, to try an
  experiment's model without making it the champion.

Each version also carries its score (``cgpt.val_xent``), its DVC experiment (``dvc.exp_name``) and its
commit (``mlflow.source.git.commit``) as tags (the latter two set by the export stage).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from cgpt.core.errors import CgptError

CHAMPION = "champion"
LATEST_EXP = "latest-exp"
SCORE_TAG = "cgpt.val_xent"  # the version's validation cross-entropy (nats/token): lower is better
DATA_TAG = "cgpt.data.tokens"  # digest of the token data it was scored on
#: MLflow's answers for "that alias or version does not exist" (any other error is a real one)
_MISSING = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


@dataclass(frozen=True)
class AliasMove:
    """One alias decision, for the stage's log: where ``alias`` points now and why."""

    alias: str
    version: str | None
    moved: bool
    reason: str

    def __str__(self) -> str:
        verb = "->" if self.moved else "stays at"
        return f"@{self.alias} {verb} version {self.version}: {self.reason}"


def _alias_version(client: Any, name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in _MISSING:  # no such alias (yet)
            return None
        raise  # a store that failed must not make the new version the champion


def _score(version: Any) -> float | None:
    try:
        value = float(version.tags.get(SCORE_TAG, "nan"))
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def champion_decision(new: Any, champion: Any | None) -> tuple[bool, str]:
    """Whether registered version ``new`` takes ``@champion`` from ``champion`` (both MLflow ModelVersions;
    ``champion`` None: there is none), and why, in words."""
    if champion is None:
        return True, "the first version registered under the alias policy"
    if str(champion.version) == str(new.version):
        return False, "already the champion"
    new_score, old_score = _score(new), _score(champion)
    if new_score is None:
        return False, f"version {new.version} has no validation cross-entropy to compare"
    if old_score is None:
        return False, f"the champion has no validation cross-entropy; promote explicitly (cgpt promote {new.version})"
    if new.tags.get(DATA_TAG) != champion.tags.get(DATA_TAG):
        return False, (
            f"version {new.version} was scored on other token data than the champion (not comparable); "
            f"promote explicitly (cgpt promote {new.version})"
        )
    if new_score < old_score:
        return True, f"val xent {new_score:.4f} < the champion's {old_score:.4f} (version {champion.version})"
    return False, f"val xent {new_score:.4f} is not better than the champion's {old_score:.4f}"


def apply_registration_policy(client: Any, name: str, version: str, *, score: float | None) -> list[AliasMove]:
    """After registering ``version`` of ``name``: record its ``score`` (val xent) as a tag, point
    ``@latest-exp`` at it when this process runs a DVC experiment (``DVC_EXP_NAME``: a plain ``dvc repro``
    re-exporting weights an experiment once registered leaves the alias alone), and move ``@champion``
    when it is better."""
    if score is not None and math.isfinite(score):
        client.set_model_version_tag(name, version, SCORE_TAG, f"{score:.6f}")
    new = client.get_model_version(name, version)
    moves = []
    exp_name = os.environ.get("DVC_EXP_NAME", "").strip()
    if exp_name:
        client.set_registered_model_alias(name, LATEST_EXP, version)
        moves.append(AliasMove(LATEST_EXP, version, True, f"registered by DVC experiment {exp_name}"))
    champion = _alias_version(client, name, CHAMPION)
    better, reason = champion_decision(new, champion)
    if better:
        client.set_registered_model_alias(name, CHAMPION, version)
    moves.append(AliasMove(CHAMPION, version if better else getattr(champion, "version", None), better, reason))
    return moves


def promote(client: Any, name: str, version: str) -> AliasMove:
    """The explicit way to move ``@champion`` (``cgpt promote``), whatever the scores say."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code not in _MISSING:
            raise
        raise CgptError(
            f"registered model {name!r} has no version {version!r} (see the MLflow UI's Models tab)"
        ) from None
    before = _alias_version(client, name, CHAMPION)
    client.set_registered_model_alias(name, CHAMPION, version)
    was = f" (was version {before.version})" if before is not None else ""
    return AliasMove(CHAMPION, version, True, f"promoted explicitly{was}")
