"""Stage tokenize: ``data/clean/`` -> ``data/tokens/`` (tokenizer.json, token shards, index.json)."""

from __future__ import annotations

from typing import Any

from cgpt.core.project import Project
from cgpt.data.tokenize.pack import tokenize_corpus
from cgpt.data.tokenize.params import TokenizeParams
from cgpt.stages.data_stats import DataStageParams, run_data_stage


class StageParams(DataStageParams):
    """What the tokenize stage reads of params.yaml: its section (and ``tracking:``)."""

    tokenize: TokenizeParams = TokenizeParams()


def run(project: Project) -> dict[str, Any]:
    return run_data_stage(
        project, StageParams, "tokenize", lambda section: tokenize_corpus(section, project.clean, project.tokens)
    )
