"""Stage ``tokenize`` of the family's project (``family/dvc.yaml``): ``data/clean/`` -> ``family/tokens/``.

The family may tokenize the corpus its own way (``family.tokenizer``, e.g. ``kind: bytes``) so that
its members can be sized for a scaling study while the single model keeps its BPE; the split, the
shard size and the parallelism are ``tokenize:``'s, so both tokenizations hold the same documents
in val and test. With ``family.tokenizer: null`` it is the single model's tokenization, again.
Its statistics go to ``family/metrics/tokenize.json``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from cgpt.core.project import Project
from cgpt.data.tokenize.pack import tokenize_corpus
from cgpt.data.tokenize.params import TokenizeParams, TokenizerParams
from cgpt.stages.data_stats import DataStageParams, run_data_stage


class FamilyTokenizer(BaseModel):
    """The one key of ``family:`` this stage reads (the rest of the section is the members' stages')."""

    model_config = ConfigDict(extra="ignore")

    tokenizer: TokenizerParams | None = None


class StageParams(DataStageParams):
    """What the family's tokenize stage reads of params.yaml: ``tokenize:`` and ``family.tokenizer``
    (and ``tracking:``). ``tokenize`` holds the family's tokenizer once validated."""

    tokenize: TokenizeParams = TokenizeParams()
    family: FamilyTokenizer = FamilyTokenizer()

    @model_validator(mode="after")
    def _family_tokenizer(self) -> StageParams:
        # after validation, so a mistake in family.tokenizer is named as such, not as tokenize.tokenizer
        if self.family.tokenizer is not None:
            self.tokenize = self.tokenize.model_copy(update={"tokenizer": self.family.tokenizer})
        return self


def run(project: Project) -> dict[str, Any]:
    family = project.for_family()
    return run_data_stage(
        family, StageParams, "tokenize", lambda section: tokenize_corpus(section, family.clean, family.tokens)
    )
